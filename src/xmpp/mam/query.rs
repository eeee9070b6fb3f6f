//! A MAM query (XEP-0313 §4, with the `#extended` fields): the form and the `<set/>`
//! read into what the store's archive answers.

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::rsm::{self, RSM_NS, RsmError};
use super::{DATA_NS, MAM_NS, clock};
use crate::store::archive::{ArchiveQuery, bare};

/// A query, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub query_id: Option<String>,
    pub archive: ArchiveQuery,
    /// `<flip-page/>` (`#extended`): the page's messages newest first.
    pub flip: bool,
}

/// Why a query is refused: the error's type and condition, and a text for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error_type: &'static str,
    pub condition: &'static str,
    pub text: String,
}

fn bad(text: impl Into<String>) -> Refusal {
    Refusal {
        error_type: "modify",
        condition: "bad-request",
        text: text.into(),
    }
}

/// An id the client names: it must be in the archive, and one that is not a number
/// cannot be (XEP-0313 §6.2: `item-not-found`).
fn archive_id(value: &str) -> Result<u64, Refusal> {
    value.trim().parse().map_err(|_| Refusal {
        error_type: "cancel",
        condition: "item-not-found",
        text: format!("no message with the id {value:?} in this archive"),
    })
}

/// Reads `query` (the `<query xmlns='urn:xmpp:mam:2'/>` of an IQ set) for `user`; a
/// page holds at most `max_page` messages whatever the client asks.
pub fn parse(query: &Element, user: &str, max_page: usize) -> Result<Request, Refusal> {
    let mut q = ArchiveQuery {
        user: user.to_string(),
        high: u64::MAX,
        max: max_page,
        ..Default::default()
    };
    if let Some(form) = query.get_child("x", DATA_NS) {
        read_form(form, &mut q)?;
    }
    if let Some(set) = query.get_child("set", RSM_NS) {
        let r = rsm::parse(set).map_err(|e| match e {
            RsmError::BadMax => bad("<max/> is not a number"),
            RsmError::Index => Refusal {
                error_type: "cancel",
                condition: "feature-not-implemented",
                text: "paging by <index/> is not offered; page with <after/> or <before/>".into(),
            },
        })?;
        if let Some(m) = r.max {
            q.max = m.min(max_page);
        }
        if let Some(after) = r.after {
            let id = archive_id(&after)?;
            q.must_exist.push(id);
            q.low = q.low.max(id.saturating_add(1));
        }
        if let Some(before) = r.before {
            q.from_end = true;
            if let Some(before) = before {
                let id = archive_id(&before)?;
                q.must_exist.push(id);
                q.high = q.high.min(id.saturating_sub(1));
            }
        }
    }
    Ok(Request {
        query_id: query.attr("queryid").map(str::to_string),
        archive: q,
        flip: query.has_child("flip-page", MAM_NS),
    })
}

fn read_form(form: &Element, q: &mut ArchiveQuery) -> Result<(), Refusal> {
    for field in form.children().filter(|c| c.is("field", DATA_NS)) {
        let var = field.attr("var").unwrap_or("");
        let values: Vec<String> = field
            .children()
            .filter(|c| c.is("value", DATA_NS))
            .map(|v| v.text())
            .collect();
        let value = values.first().map(|v| v.trim()).unwrap_or("");
        if value.is_empty() && var != "ids" {
            continue;
        }
        let time = |v: &str| {
            clock::parse_stamp(v).ok_or_else(|| bad(format!("{var}: {v:?} is not a XEP-0082 time")))
        };
        match var {
            "FORM_TYPE" if value == MAM_NS => {}
            "FORM_TYPE" => return Err(bad(format!("FORM_TYPE {value:?} is not {MAM_NS}"))),
            "with" => {
                let jid: Jid = crate::jid::parse(value)
                    .ok_or_else(|| bad(format!("with: {value:?} is not a JID")))?;
                let jid = jid.to_string();
                q.with = Some(bare(&jid).to_string());
                if jid.contains('/') {
                    q.with_full = Some(jid);
                }
            }
            "start" => q.low = q.low.max(time(value)?),
            "end" => q.high = q.high.min(time(value)?),
            "after-id" => {
                let id = archive_id(value)?;
                q.must_exist.push(id);
                q.low = q.low.max(id.saturating_add(1));
            }
            "before-id" => {
                let id = archive_id(value)?;
                q.must_exist.push(id);
                q.high = q.high.min(id.saturating_sub(1));
            }
            "ids" => {
                for v in &values {
                    q.ids.push(archive_id(v)?);
                }
                // Asked for by id, so none may be missing from the answer silently.
                q.must_exist.extend(q.ids.iter().copied());
            }
            other => {
                return Err(bad(format!(
                    "the field {other:?} is not one this archive offers"
                )));
            }
        }
    }
    Ok(())
}

/// The form a client gets for `<query/>` in an IQ get (XEP-0313 §5.1): the fields this
/// archive filters on.
pub fn form() -> Element {
    let field = |var: &str, kind: &str| {
        let mut f = Element::builder("field", DATA_NS).build();
        crate::xmpp::stanza::set_attr(&mut f, "var", var);
        crate::xmpp::stanza::set_attr(&mut f, "type", kind);
        f
    };
    let mut form_type = field("FORM_TYPE", "hidden");
    form_type.append_child(Element::builder("value", DATA_NS).append(MAM_NS).build());
    let mut x = Element::builder("x", DATA_NS).build();
    crate::xmpp::stanza::set_attr(&mut x, "type", "form");
    x.append_child(form_type);
    x.append_child(field("with", "jid-single"));
    x.append_child(field("start", "text-single"));
    x.append_child(field("end", "text-single"));
    x.append_child(field("after-id", "text-single"));
    x.append_child(field("before-id", "text-single"));
    x.append_child(field("ids", "text-multi"));
    let mut q = Element::builder("query", MAM_NS).build();
    q.append_child(x);
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(inner: &str) -> Element {
        format!("<query xmlns='{MAM_NS}' queryid='q1'>{inner}</query>")
            .parse()
            .unwrap()
    }

    fn form(fields: &str) -> String {
        format!(
            "<x xmlns='{DATA_NS}' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM_NS}</value></field>{fields}</x>"
        )
    }

    fn field(var: &str, value: &str) -> String {
        format!("<field var='{var}'><value>{value}</value></field>")
    }

    #[test]
    fn an_empty_query_is_the_first_page_of_everything() {
        let r = parse(&query(""), "juliet", 50).unwrap();
        assert_eq!(r.query_id.as_deref(), Some("q1"));
        assert_eq!((r.archive.low, r.archive.high), (0, u64::MAX));
        assert_eq!(r.archive.max, 50);
        assert!(!r.archive.from_end && !r.flip);
    }

    #[test]
    fn with_start_end_and_ids_narrow_the_range() {
        let f = form(&format!(
            "{}{}{}{}",
            field("with", "Romeo@Montague.lit/Orchard"),
            field("start", "2010-06-07T00:00:00Z"),
            field("end", "2010-07-07T13:23:54Z"),
            field("after-id", "1275868800000005"),
        ));
        let r = parse(&query(&f), "juliet", 50).unwrap().archive;
        assert_eq!(r.with.as_deref(), Some("romeo@montague.lit"));
        assert_eq!(r.with_full.as_deref(), Some("romeo@montague.lit/Orchard"));
        assert_eq!(r.low, 1_275_868_800_000_006);
        assert_eq!(r.high, 1_278_509_034_000_000);
        assert_eq!(r.must_exist, [1_275_868_800_000_005]);
    }

    #[test]
    fn rsm_pages_and_the_cap_on_max() {
        let q = query(&format!(
            "<set xmlns='{RSM_NS}'><max>500</max><before>100</before></set><flip-page/>"
        ));
        let r = parse(&q, "juliet", 50).unwrap();
        assert_eq!(r.archive.max, 50);
        assert_eq!(r.archive.high, 99);
        assert!(r.archive.from_end && r.flip);
        assert_eq!(r.archive.must_exist, [100]);
    }

    #[test]
    fn bad_input_is_refused_with_its_reason() {
        let refuse = |inner: &str| parse(&query(inner), "juliet", 50).unwrap_err();
        assert_eq!(
            refuse(&form(&field("start", "noon"))).condition,
            "bad-request"
        );
        assert_eq!(
            refuse(&form(&field("colour", "red"))).condition,
            "bad-request"
        );
        assert_eq!(refuse(&form(&field("with", "@@"))).condition, "bad-request");
        assert_eq!(
            refuse(&form(&field("after-id", "abc"))).condition,
            "item-not-found"
        );
        assert_eq!(
            refuse(&format!("<set xmlns='{RSM_NS}'><index>2</index></set>")).condition,
            "feature-not-implemented"
        );
        let other = format!(
            "<x xmlns='{DATA_NS}' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:1</value></field></x>"
        );
        assert_eq!(refuse(&other).condition, "bad-request");
    }
}
