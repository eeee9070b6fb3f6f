//! The extensions a client adds to its `<enable/>`: an `<encrypt/>` with its key, a
//! `<priority/>`, a `<jingle/>`, the `<muted/>`, `<groupchat/>` and `<ignore-unknown/>`
//! filters, and the enable's own `away` attribute. Anything else inside the enable is
//! left alone, as XEP-0357 asks of unknown children.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use xmpp_parsers::minidom::Element;

use crate::store::{EncryptSettings, PushExtensions, RoomRule};

pub const NS_ENCRYPT: &str = "tigase:push:encrypt:0";
pub const NS_PRIORITY: &str = "tigase:push:priority:0";
pub const NS_JINGLE: &str = "tigase:push:jingle:0";
pub const NS_MUTED: &str = "tigase:push:filter:muted:0";
pub const NS_GROUPCHAT: &str = "tigase:push:filter:groupchat:0";
pub const NS_IGNORE_UNKNOWN: &str = "tigase:push:filter:ignore-unknown:0";
/// Enabled with an attribute of the `<enable/>` itself (`away='true'`), not a child.
pub const NS_AWAY: &str = "tigase:push:away:0";

/// The one algorithm the encrypt extension defines and the one built here.
pub const ALG_AES_128_GCM: &str = "aes-128-gcm";

/// Why the extensions of an `<enable/>` are refused; the text goes into the error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    /// `alg` names something other than `aes-128-gcm`: `feature-not-implemented`.
    #[error("Unknown encryption algorithm")]
    Algorithm,
    /// The key is not base64 for 16 bytes: `bad-request`.
    #[error("Invalid encryption key")]
    Key,
    /// `max-size` is not a positive number: `bad-request`.
    #[error("Invalid max-size")]
    MaxSize,
    /// A muted item's `jid` is missing or not a JID: `bad-request`.
    #[error("Invalid muted JID")]
    Muted,
    /// A groupchat room without a valid `jid`, an unknown `allow`, or `mentioned`
    /// without `nick`: `bad-request`.
    #[error("Invalid groupchat rule")]
    Room,
}

/// The text of the `not-acceptable` reply to filters naming more JIDs than
/// `push_max_filter_jids` (checked where the configuration is known, when the enable is
/// handled).
pub const TOO_MANY_FILTER_JIDS: &str = "Too many filter JIDs";

/// The extensions in `enable`, `None` when it carries none (a plain XEP-0357 enable).
pub fn parse(enable: &Element) -> Result<Option<PushExtensions>, ExtensionError> {
    let mut ext = PushExtensions::default();
    let mut any = false;
    if let Some(encrypt) = enable.get_child("encrypt", NS_ENCRYPT) {
        ext.encrypt = Some(encrypt_settings(encrypt)?);
        any = true;
    }
    if enable.has_child("priority", NS_PRIORITY) {
        ext.priority = true;
        any = true;
    }
    if enable.has_child("jingle", NS_JINGLE) {
        ext.jingle = true;
        any = true;
    }
    if let Some(muted) = enable.get_child("muted", NS_MUTED) {
        ext.muted = muted_jids(muted)?;
        any = true;
    }
    if let Some(groupchat) = enable.get_child("groupchat", NS_GROUPCHAT) {
        ext.groupchat = Some(room_rules(groupchat)?);
        any = true;
    }
    if enable.has_child("ignore-unknown", NS_IGNORE_UNKNOWN) {
        ext.ignore_unknown = true;
        any = true;
    }
    // XML booleans: "true" or "1" (XEP-0357's enable is read the same way elsewhere).
    if matches!(enable.attr("away").map(str::trim), Some("true" | "1")) {
        ext.away = true;
        any = true;
    }
    Ok(any.then_some(ext))
}

fn encrypt_settings(encrypt: &Element) -> Result<EncryptSettings, ExtensionError> {
    if !encrypt
        .attr("alg")
        .is_some_and(|a| a.eq_ignore_ascii_case(ALG_AES_128_GCM))
    {
        return Err(ExtensionError::Algorithm);
    }
    // Clients wrap the text in white space (the spec's own example does).
    let text: String = encrypt
        .text()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let key: [u8; 16] = STANDARD
        .decode(text.as_bytes())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or(ExtensionError::Key)?;
    let max_size = match encrypt.attr("max-size") {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(ExtensionError::MaxSize)?,
        ),
    };
    Ok(EncryptSettings { key, max_size })
}

fn muted_jids(muted: &Element) -> Result<Vec<String>, ExtensionError> {
    let mut out = Vec::new();
    // As long as the enable, which the stanza size limit bounds; push_max_filter_jids
    // is checked when the enable is handled.
    for item in muted.children().filter(|c| c.name() == "item") {
        let jid = item
            .attr("jid")
            .and_then(crate::jid::parse::<xmpp_parsers::jid::Jid>)
            .ok_or(ExtensionError::Muted)?;
        out.push(jid.to_bare().to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The rooms that may publish; a room marked `never` is left out, as Siskin leaves it
/// out itself. A room listed twice keeps its last rule.
fn room_rules(groupchat: &Element) -> Result<Vec<RoomRule>, ExtensionError> {
    let mut rules: Vec<RoomRule> = Vec::new();
    for room in groupchat.children().filter(|c| c.name() == "room") {
        let jid = room
            .attr("jid")
            .and_then(crate::jid::parse::<xmpp_parsers::jid::Jid>)
            .ok_or(ExtensionError::Room)?
            .to_bare()
            .to_string();
        let mention = match room.attr("allow") {
            Some("always") => None,
            Some("mentioned") => Some(
                room.attr("nick")
                    .filter(|n| !n.is_empty())
                    .ok_or(ExtensionError::Room)?
                    .to_string(),
            ),
            Some("never") => {
                rules.retain(|r| r.room != jid);
                continue;
            }
            _ => return Err(ExtensionError::Room),
        };
        rules.retain(|r| r.room != jid);
        rules.push(RoomRule { room: jid, mention });
    }
    rules.sort_by(|a, b| a.room.cmp(&b.room));
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enable(inner: &str) -> Element {
        format!("<enable xmlns='urn:xmpp:push:0' jid='push.example'>{inner}</enable>")
            .parse()
            .unwrap()
    }

    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODw==";

    #[test]
    fn plain_enable_has_no_extensions() {
        assert_eq!(parse(&enable("")), Ok(None));
        assert_eq!(parse(&enable("<x xmlns='jabber:x:data'/>")), Ok(None));
    }

    #[test]
    fn encrypt_key_and_max_size() {
        let e = parse(&enable(&format!(
            "<encrypt xmlns='tigase:push:encrypt:0' alg='aes-128-gcm' max-size='2000'>\n  {KEY_B64}\n</encrypt>"
        )))
        .unwrap()
        .unwrap();
        let enc = e.encrypt.unwrap();
        assert_eq!(enc.key, core::array::from_fn::<u8, 16, _>(|i| i as u8));
        assert_eq!(enc.max_size, Some(2000));
        assert!(!e.priority && !e.jingle);
    }

    #[test]
    fn bad_encrypt_is_refused() {
        let cases = [
            ("alg='aes-256-gcm'", KEY_B64, ExtensionError::Algorithm),
            ("", KEY_B64, ExtensionError::Algorithm),
            ("alg='aes-128-gcm'", "AAEC", ExtensionError::Key),
            ("alg='aes-128-gcm'", "not base64!", ExtensionError::Key),
            (
                "alg='aes-128-gcm' max-size='0'",
                KEY_B64,
                ExtensionError::MaxSize,
            ),
            (
                "alg='aes-128-gcm' max-size='-5'",
                KEY_B64,
                ExtensionError::MaxSize,
            ),
        ];
        for (attrs, key, want) in cases {
            let got = parse(&enable(&format!(
                "<encrypt xmlns='tigase:push:encrypt:0' {attrs}>{key}</encrypt>"
            )));
            assert_eq!(got, Err(want), "{attrs} {key}");
        }
    }

    #[test]
    fn priority_jingle_and_muted() {
        let e = parse(&enable(
            "<priority xmlns='tigase:push:priority:0'/><jingle xmlns='tigase:push:jingle:0'/>\
             <muted xmlns='tigase:push:filter:muted:0'><item jid='b@example.org/r'/><item jid='a@example.org'/><item jid='a@example.org/x'/></muted>",
        ))
        .unwrap()
        .unwrap();
        assert!(e.priority && e.jingle && e.encrypt.is_none());
        assert_eq!(e.muted, ["a@example.org", "b@example.org"]);
    }

    #[test]
    fn groupchat_rules() {
        let e = parse(&enable(
            "<groupchat xmlns='tigase:push:filter:groupchat:0'>\
             <room jid='coven@chat.example' allow='always'/>\
             <room jid='forres@chat.example' allow='mentioned' nick='Juliet'/>\
             <room jid='heath@chat.example' allow='never'/></groupchat>",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            e.groupchat.unwrap(),
            [
                RoomRule {
                    room: "coven@chat.example".into(),
                    mention: None
                },
                RoomRule {
                    room: "forres@chat.example".into(),
                    mention: Some("Juliet".into())
                },
            ]
        );
        // An empty filter: no room publishes.
        let e = parse(&enable(
            "<groupchat xmlns='tigase:push:filter:groupchat:0'/>",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(e.groupchat, Some(Vec::new()));
        for bad in [
            "<room allow='always'/>",
            "<room jid='r@c' allow='sometimes'/>",
            "<room jid='r@c' allow='mentioned'/>",
        ] {
            assert_eq!(
                parse(&enable(&format!(
                    "<groupchat xmlns='tigase:push:filter:groupchat:0'>{bad}</groupchat>"
                ))),
                Err(ExtensionError::Room),
                "{bad}"
            );
        }
    }

    #[test]
    fn ignore_unknown() {
        let e = parse(&enable(
            "<ignore-unknown xmlns='tigase:push:filter:ignore-unknown:0'/>",
        ))
        .unwrap()
        .unwrap();
        assert!(e.ignore_unknown && !e.away && e.muted.is_empty());
        assert_eq!(parse(&enable("<ignore-unknown xmlns='other'/>")), Ok(None));
    }

    #[test]
    fn away_is_an_attribute_of_the_enable() {
        let away = |v: &str| {
            format!("<enable xmlns='urn:xmpp:push:0' jid='push.example' away='{v}'/>")
                .parse::<Element>()
                .unwrap()
        };
        let e = parse(&away("true")).unwrap().unwrap();
        assert!(e.away && e.encrypt.is_none() && !e.priority);
        assert!(parse(&away("1")).unwrap().unwrap().away);
        assert_eq!(parse(&away("false")), Ok(None));
        assert_eq!(parse(&away("maybe")), Ok(None));
        assert!(
            !parse(&enable("<jingle xmlns='tigase:push:jingle:0'/>"))
                .unwrap()
                .unwrap()
                .away
        );
    }

    #[test]
    fn a_muted_item_must_be_a_jid() {
        assert_eq!(
            parse(&enable(
                "<muted xmlns='tigase:push:filter:muted:0'><item jid='a@@b'/></muted>"
            )),
            Err(ExtensionError::Muted)
        );
    }
}
