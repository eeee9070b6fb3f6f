//! Archive preferences (XEP-0441, in the `urn:xmpp:mam:2` namespace): the `<prefs/>`
//! element read into what the store applies at each archive write, and built back.

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::MAM_NS;
use super::query::Refusal;
use crate::store::archive::{ArchivePrefs, PrefsDefault};
use crate::xmpp::stanza;

fn bad(text: String) -> Refusal {
    Refusal {
        error_type: "modify",
        condition: "bad-request",
        text,
    }
}

/// Reads a `<prefs/>` set; each list holds at most `max` JIDs.
pub fn parse(prefs: &Element, max: usize) -> Result<ArchivePrefs, Refusal> {
    let default = match prefs.attr("default") {
        Some("always") => PrefsDefault::Always,
        Some("never") => PrefsDefault::Never,
        Some("roster") => PrefsDefault::Roster,
        other => {
            return Err(bad(format!(
                "default must be always, never or roster, not {other:?}"
            )));
        }
    };
    let list = |name: &str| -> Result<Vec<String>, Refusal> {
        let mut out: Vec<String> = Vec::new();
        let Some(l) = prefs.get_child(name, MAM_NS) else {
            return Ok(out);
        };
        for j in l.children().filter(|c| c.is("jid", MAM_NS)) {
            let text = j.text();
            let jid: Jid = crate::jid::parse(text.trim())
                .ok_or_else(|| bad(format!("{name}: {text:?} is not a JID")))?;
            let bare = jid.to_bare().to_string();
            if !out.contains(&bare) {
                out.push(bare);
            }
            if out.len() > max {
                return Err(Refusal {
                    error_type: "modify",
                    condition: "not-acceptable",
                    text: format!("{name}: more than {max} JIDs (roster_max_items)"),
                });
            }
        }
        Ok(out)
    };
    Ok(ArchivePrefs {
        default,
        always: list("always")?,
        never: list("never")?,
    })
}

/// The `<prefs/>` that says `p`.
pub fn build(p: &ArchivePrefs) -> Element {
    let list = |name: &str, jids: &[String]| {
        let mut l = Element::builder(name, MAM_NS).build();
        for j in jids {
            l.append_child(Element::builder("jid", MAM_NS).append(j.as_str()).build());
        }
        l
    };
    let mut e = Element::builder("prefs", MAM_NS)
        .append(list("always", &p.always))
        .append(list("never", &p.never))
        .build();
    let default = match p.default {
        PrefsDefault::Always => "always",
        PrefsDefault::Never => "never",
        PrefsDefault::Roster => "roster",
    };
    stanza::set_attr(&mut e, "default", default);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefs(inner: &str, default: &str) -> Element {
        format!("<prefs xmlns='{MAM_NS}' default='{default}'>{inner}</prefs>")
            .parse()
            .unwrap()
    }

    #[test]
    fn reads_the_default_and_both_lists_as_bare_jids() {
        let p = parse(
            &prefs(
                "<always><jid>romeo@x/garden</jid><jid>romeo@x</jid></always><never><jid>tybalt@x</jid></never>",
                "roster",
            ),
            10,
        )
        .unwrap();
        assert_eq!(p.default, PrefsDefault::Roster);
        assert_eq!(p.always, ["romeo@x"]);
        assert_eq!(p.never, ["tybalt@x"]);
        let back = parse(&build(&p), 10).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn refuses_a_bad_default_a_bad_jid_and_a_long_list() {
        assert_eq!(
            parse(&prefs("", "sometimes"), 10).unwrap_err().condition,
            "bad-request"
        );
        assert_eq!(
            parse(&prefs("<never><jid>@@</jid></never>", "always"), 10)
                .unwrap_err()
                .condition,
            "bad-request"
        );
        let two = "<always><jid>a@x</jid><jid>b@x</jid></always>";
        assert_eq!(
            parse(&prefs(two, "never"), 1).unwrap_err().condition,
            "not-acceptable"
        );
    }
}
