//! What exactly goes on the wire to the app server (spec §6, with D1), and what its answer
//! means (spec §9, with D10, D11, D19).
//!
//! The IQ keeps Prosody's shape element for element, because the app servers in the field
//! were written against it: `from` the bare domain, a 64-hex id, `<item>` without id, the
//! summary form `type='form'` with five typed fields in a fixed order, and the client's
//! publish-options copied verbatim. It is built with minidom's builder rather than
//! xmpp-parsers' `DataForm`/`PublishOptions`, which would re-serialize the client's form
//! and decide on their own which `type` attributes to write.

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::rxml::NcName;
use xmpp_parsers::minidom::{Element, ElementBuilder};
use xmpp_parsers::ns;

use super::registration::Registration;
use super::rules;
use crate::config::Config;

const PUSH_SUMMARY: &str = "urn:xmpp:push:summary";

/// The values of one notification's summary form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// `last-message-sender`: the full `from` of the triggering (outer) stanza.
    pub sender: Option<String>,
    /// `last-message-body`: the real body, the placeholder, or nothing.
    pub body: Option<String>,
}

impl Summary {
    /// The summary for a triggering stanza (`None` for a ping, §6.2), following §6.3 with
    /// D1: an empty placeholder means no value.
    pub fn of(stanza: Option<&Element>, important: bool, cfg: &Config) -> Summary {
        let Some(stanza) = stanza else {
            return Summary::default();
        };
        let sender = cfg
            .push_notification_with_sender
            .then(|| stanza.attr("from").map(str::to_string))
            .flatten();
        let body = if cfg.push_notification_with_body {
            rules::body_text(stanza).filter(|b| !b.is_empty())
        } else if important && !cfg.push_notification_important_body.is_empty() {
            Some(cfg.push_notification_important_body.clone())
        } else {
            None
        };
        Summary { sender, body }
    }
}

fn name(s: &'static str) -> NcName {
    // Every caller passes a literal XML name, so this cannot fail at run time.
    NcName::try_from(s).expect("literal is a valid XML name")
}

fn field(var: &'static str, kind: &'static str, value: Option<&str>) -> ElementBuilder {
    let mut b = Element::builder("field", ns::DATA_FORMS)
        .attr(name("type"), kind)
        .attr(name("var"), var);
    if let Some(v) = value {
        b = b.append(Element::builder("value", ns::DATA_FORMS).append(v));
    }
    b
}

/// The publish IQ for one registration (spec §6.1).
pub fn publish_iq(domain: &str, reg: &Registration, summary: &Summary, id: &str) -> Element {
    let form = Element::builder("x", ns::DATA_FORMS)
        .attr(name("type"), "form")
        .append(field("FORM_TYPE", "hidden", Some(PUSH_SUMMARY)))
        .append(field("message-count", "text-single", Some("1")))
        .append(field("pending-subscription-count", "text-single", None))
        .append(field(
            "last-message-sender",
            "jid-single",
            summary.sender.as_deref(),
        ))
        .append(field(
            "last-message-body",
            "text-single",
            summary.body.as_deref(),
        ));
    let notification = Element::builder("notification", ns::PUSH).append(form);
    let item = Element::builder("item", ns::PUBSUB).append(notification);
    let mut publish = Element::builder("publish", ns::PUBSUB);
    if let Some(node) = reg.node() {
        publish = publish.attr(name("node"), node);
    }
    let mut pubsub = Element::builder("pubsub", ns::PUBSUB).append(publish.append(item));
    if let Some(options) = reg.publish_options() {
        pubsub = pubsub.append(Element::builder("publish-options", ns::PUBSUB).append(options));
    }
    Element::builder("iq", ns::DEFAULT_NS)
        .attr(name("type"), "set")
        .attr(name("from"), domain)
        .attr(name("to"), reg.jid.to_string())
        .attr(name("id"), id)
        .append(pubsub)
        .build()
}

/// A fresh publish id: 64 lowercase hex characters like Prosody's. The first 16 carry the
/// `route` of the user's push actor so the answer finds its way back without a global
/// table; the other 48 are random, so ids never repeat and cannot be guessed.
pub fn new_publish_id(route: u64) -> String {
    let mut random = [0u8; 24];
    if getrandom::fill(&mut random).is_err() {
        // The OS random source failing is not something a push can recover from; an id
        // from the clock still keeps ids unique, which is all correlation needs.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        random[..16].copy_from_slice(&nanos.to_le_bytes());
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(64);
    for b in route.to_be_bytes().iter().chain(random.iter()) {
        id.push(HEX[usize::from(b >> 4)] as char);
        id.push(HEX[usize::from(b & 0x0f)] as char);
    }
    id
}

/// The route encoded in a publish id, if it is one of ours.
pub fn route_of(id: &str) -> Option<u64> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(&id[..16], 16).ok()
}

/// An app server's answer to a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub id: String,
    pub from: Option<Jid>,
    pub outcome: Outcome,
}

/// What the answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Error {
        error_type: String,
        condition: String,
        text: Option<String>,
    },
}

impl Outcome {
    /// Whether this answer counts towards `push_max_errors` (§9.1): every error type but
    /// `wait` does; the condition does not matter.
    pub fn counts_as_error(&self) -> bool {
        matches!(self, Outcome::Error { error_type, .. } if error_type != "wait")
    }
}

/// Reads an IQ `result` or `error`; `None` for anything else.
pub fn read_response(iq: &Element) -> Option<Response> {
    if iq.name() != "iq" {
        return None;
    }
    let id = iq.attr("id")?.to_string();
    let from = iq.attr("from").and_then(|f| f.parse::<Jid>().ok());
    let outcome = match iq.attr("type")? {
        "result" => Outcome::Success,
        "error" => {
            let error = iq.children().find(|c| c.name() == "error");
            let error_type = error
                .and_then(|e| e.attr("type"))
                .unwrap_or("cancel")
                .to_string();
            let stanzas = "urn:ietf:params:xml:ns:xmpp-stanzas";
            let condition = error
                .and_then(|e| {
                    e.children()
                        .find(|c| c.has_ns(stanzas) && c.name() != "text")
                })
                .map(|c| c.name().to_string())
                .unwrap_or_else(|| "undefined-condition".into());
            let text = error
                .and_then(|e| e.get_child("text", stanzas))
                .map(|t| t.text());
            Outcome::Error {
                error_type,
                condition,
                text,
            }
        }
        _ => return None,
    };
    Some(Response { id, from, outcome })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RegistrationRecord;

    fn reg(node: Option<&str>, options: Option<&str>) -> Registration {
        Registration::from_record(
            "x".into(),
            RegistrationRecord {
                jid: "push-5.client.example".into(),
                node: node.map(str::to_string),
                publish_options: options.map(str::to_string),
                enabled_at_us: 1,
                client: "phone".into(),
                language: None,
                error_count: 0,
                last_success: None,
                last_error: None,
                last_timeout: None,
            },
        )
        .unwrap()
    }

    const OPTIONS: &str = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>eruio234vzxc2kla-91</value></field></x>";

    /// The capture of spec/prosody-publishes.md, "Important message", with the line breaks
    /// removed and the client namespace.
    const PROSODY_IMPORTANT: &str = r#"<iq xmlns="jabber:client" type="set" id="ID" to="push-5.client.example" from="example.com"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="yxs32uqsflafdk3iuqo"><item><notification xmlns="urn:xmpp:push:0"><x xmlns="jabber:x:data" type="form"><field type="hidden" var="FORM_TYPE"><value>urn:xmpp:push:summary</value></field><field type="text-single" var="message-count"><value>1</value></field><field type="text-single" var="pending-subscription-count" /><field type="jid-single" var="last-message-sender" /><field type="text-single" var="last-message-body"><value>New Message!</value></field></x></notification></item></publish><publish-options><x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE"><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var="secret"><value>eruio234vzxc2kla-91</value></field></x></publish-options></pubsub></iq>"#;

    #[test]
    fn matches_prosody_capture() {
        let summary = Summary {
            sender: None,
            body: Some("New Message!".into()),
        };
        let iq = publish_iq(
            "example.com",
            &reg(Some("yxs32uqsflafdk3iuqo"), Some(OPTIONS)),
            &summary,
            "ID",
        );
        let expected: Element = PROSODY_IMPORTANT.parse().unwrap();
        assert_eq!(iq, expected);
        // Field order is part of the contract, and Element equality checks it.
        let form = String::from(&iq);
        let order: Vec<usize> = [
            "FORM_TYPE",
            "message-count",
            "pending-subscription-count",
            "last-message-sender",
            "last-message-body",
        ]
        .iter()
        .map(|f| form.find(f).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn no_node_no_attribute_no_options_no_element() {
        let iq = publish_iq("example.com", &reg(None, None), &Summary::default(), "ID");
        let publish = iq
            .get_child("pubsub", ns::PUBSUB)
            .and_then(|p| p.get_child("publish", ns::PUBSUB))
            .unwrap();
        assert!(publish.attr("node").is_none());
        assert!(
            !iq.get_child("pubsub", ns::PUBSUB)
                .unwrap()
                .has_child("publish-options", ns::PUBSUB)
        );
    }

    #[test]
    fn summary_rules() {
        let mut cfg = Config::default();
        let m: Element = "<message xmlns='jabber:client' from='romeo@example.org/desk'><body>hi</body></message>".parse().unwrap();
        assert_eq!(
            Summary::of(Some(&m), true, &cfg),
            Summary {
                sender: None,
                body: Some("New Message!".into())
            }
        );
        assert_eq!(Summary::of(Some(&m), false, &cfg), Summary::default());
        cfg.push_notification_important_body = String::new();
        assert_eq!(Summary::of(Some(&m), true, &cfg), Summary::default());
        cfg.push_notification_with_body = true;
        cfg.push_notification_with_sender = true;
        assert_eq!(
            Summary::of(Some(&m), true, &cfg),
            Summary {
                sender: Some("romeo@example.org/desk".into()),
                body: Some("hi".into())
            }
        );
        assert_eq!(Summary::of(None, false, &cfg), Summary::default());
    }

    #[test]
    fn ids_are_64_hex_unique_and_carry_the_route() {
        let a = new_publish_id(0xdead_beef);
        let b = new_publish_id(0xdead_beef);
        assert_eq!(a.len(), 64);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert_ne!(a, b);
        assert_eq!(route_of(&a), Some(0xdead_beef));
        assert_eq!(route_of("short"), None);
    }

    #[test]
    fn responses() {
        let ok: Element = "<iq xmlns='jabber:client' type='result' id='i' from='p.example'/>"
            .parse()
            .unwrap();
        let r = read_response(&ok).unwrap();
        assert_eq!(r.outcome, Outcome::Success);
        assert_eq!(r.from, Some("p.example".parse().unwrap()));
        let err: Element = "<iq xmlns='jabber:client' type='error' id='i' from='p.example'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>slow</text></error></iq>".parse().unwrap();
        let r = read_response(&err).unwrap();
        assert!(!r.outcome.counts_as_error());
        assert_eq!(
            r.outcome,
            Outcome::Error {
                error_type: "wait".into(),
                condition: "resource-constraint".into(),
                text: Some("slow".into())
            }
        );
        let cancel: Element = "<iq xmlns='jabber:client' type='error' id='i'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>".parse().unwrap();
        assert!(read_response(&cancel).unwrap().outcome.counts_as_error());
        let set: Element = "<iq xmlns='jabber:client' type='set' id='i'><x xmlns='y'/></iq>"
            .parse()
            .unwrap();
        assert!(read_response(&set).is_none());
    }
}
