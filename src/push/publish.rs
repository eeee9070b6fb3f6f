//! What exactly goes on the wire to the app server (spec §6, with D1), and what its answer
//! means (spec §9, with D10, D11, D19).
//!
//! The IQ keeps Prosody's shape element for element, because the app servers in the field
//! were written against it: `from` the bare domain, a 64-hex id, `<item>` without id, the
//! summary form `type='form'` with five typed fields in a fixed order, and the client's
//! publish-options copied verbatim. It is written as text (see [`publish_xml`]) rather
//! than through xmpp-parsers' `DataForm`/`PublishOptions`, which would re-serialize the
//! client's form and decide on their own which `type` attributes to write.

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;

use super::registration::Registration;
use super::rules;
use super::tigase::notice::Notice;
use super::tigase::{element, encrypt, payload};
use super::xml_text::escape;
use crate::config::Config;

const PUSH_SUMMARY: &str = "urn:xmpp:push:summary";

/// The values of one notification's summary form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// `last-message-sender`: the full `from` of the triggering (outer) stanza.
    pub sender: Option<String>,
    /// `last-message-body`: the real body, the placeholder, or nothing.
    pub body: Option<String>,
    /// What the Tigase extensions need of the stanza; read only when a registration that
    /// gets this publish enabled one of them.
    pub notice: Option<Box<Notice>>,
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
        Summary {
            sender,
            body,
            notice: None,
        }
    }

    /// The summary with what the Tigase extensions need of `stanza` (`None`: a ping).
    pub fn with_notice(mut self, stanza: Option<&Element>, important: bool, cfg: &Config) -> Self {
        self.notice = stanza.map(|s| {
            Box::new(Notice::of(
                s,
                important,
                self.sender.as_deref(),
                self.body.as_deref(),
                cfg,
            ))
        });
        self
    }

    /// What the body value is, for the log (never the text itself): `"message"` (the
    /// real body, with `push_notification_with_body`), `"placeholder"` or `"none"`.
    pub fn body_kind(&self, cfg: &Config) -> &'static str {
        match (&self.body, cfg.push_notification_with_body) {
            (None, _) => "none",
            (Some(_), true) => "message",
            (Some(_), false) => "placeholder",
        }
    }
}

fn field(out: &mut String, var: &str, kind: &str, value: Option<&str>) {
    out.push_str("<field type='");
    out.push_str(kind);
    out.push_str("' var='");
    out.push_str(var);
    match value {
        Some(v) => {
            out.push_str("'><value>");
            escape(out, v);
            out.push_str("</value></field>");
        }
        None => out.push_str("'/>"),
    }
}

/// The summary form of XEP-0357 in Prosody's shape.
fn summary_form(out: &mut String, summary: &Summary) {
    out.push_str("<x xmlns='");
    out.push_str(ns::DATA_FORMS);
    out.push_str("' type='form'>");
    field(out, "FORM_TYPE", "hidden", Some(PUSH_SUMMARY));
    field(out, "message-count", "text-single", Some("1"));
    field(out, "pending-subscription-count", "text-single", None);
    field(
        out,
        "last-message-sender",
        "jid-single",
        summary.sender.as_deref(),
    );
    field(
        out,
        "last-message-body",
        "text-single",
        summary.body.as_deref(),
    );
    out.push_str("</x>");
}

/// The publish IQ for one registration (spec §6.1), serialized. A registration with the
/// Tigase extensions gets their elements in the notification, and with encryption the
/// encrypted payload instead of the summary form; its IV is drawn here, fresh each time.
///
/// Written as text, not built as a minidom tree: the tree cost most of a publish's CPU
/// and about 16 KB of memory while it waited for the app server's connection (profiled
/// with the load benchmark). The root carries no namespace declaration, so it takes the
/// default namespace of the stream that carries it (`jabber:component:accept` to a
/// component, `jabber:server` over server-to-server). The client's publish-options form
/// is copied verbatim from its stored text, which was checked to be one element when it
/// was stored and again when it was loaded.
pub fn publish_xml(domain: &str, reg: &Registration, summary: &Summary, id: &str) -> String {
    let encrypts = reg
        .record
        .extensions
        .as_ref()
        .is_some_and(|e| e.encrypt.is_some());
    let iv = if encrypts {
        let iv = encrypt::fresh_iv();
        if iv.is_none() {
            tracing::error!(
                "no randomness for an encryption IV: notification sent without payload"
            );
        }
        iv
    } else {
        None
    };
    publish_xml_with_iv(domain, reg, summary, id, iv)
}

/// [`publish_xml`] with the IV given (`None` for a registration that encrypts: the
/// notification goes without any payload, never unencrypted).
pub fn publish_xml_with_iv(
    domain: &str,
    reg: &Registration,
    summary: &Summary,
    id: &str,
    iv: Option<[u8; encrypt::IV_LEN]>,
) -> String {
    let options = reg.record.publish_options.as_deref();
    let mut out = String::with_capacity(640 + options.map_or(0, str::len));
    out.push_str("<iq type='set' from='");
    escape(&mut out, domain);
    out.push_str("' to='");
    escape(&mut out, reg.jid.as_str());
    out.push_str("' id='");
    escape(&mut out, id);
    out.push_str("'><pubsub xmlns='");
    out.push_str(ns::PUBSUB);
    out.push_str("'><publish");
    if let Some(node) = reg.node() {
        out.push_str(" node='");
        escape(&mut out, node);
        out.push('\'');
    }
    out.push_str("><item><notification xmlns='");
    out.push_str(ns::PUSH);
    out.push_str("'>");
    let extensions = reg.record.extensions.as_deref();
    let notice = summary.notice.as_deref();
    match extensions.and_then(|e| e.encrypt.as_ref()) {
        // The spec: no summary form beside the encrypted payload, so nothing readable
        // reaches the app server.
        Some(settings) => {
            let plain = payload::fit(notice, settings.max_size);
            if let Some((iv, sealed)) =
                iv.and_then(|iv| Some((iv, encrypt::seal(&settings.key, &iv, &plain)?)))
            {
                let voip = notice
                    .and_then(|n| n.call.as_ref())
                    .is_some_and(|c| c.rings());
                element::encrypted(&mut out, &iv, &sealed, voip);
            }
        }
        None => summary_form(&mut out, summary),
    }
    if let (Some(ext), Some(n)) = (extensions, notice) {
        if ext.priority && n.high_priority() {
            element::high_priority(&mut out);
        }
        if ext.jingle
            && let Some(call) = &n.call
        {
            element::jingle(&mut out, call);
        }
    }
    out.push_str("</notification></item></publish>");
    if let Some(options) = options {
        out.push_str("<publish-options>");
        out.push_str(options);
        out.push_str("</publish-options>");
    }
    out.push_str("</pubsub></iq>");
    out
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

/// A route for a new user's push state: random, so that an answer to a publish made
/// before a restart, or by an actor since stopped, is unlikely to find a live route (and
/// the machine behind it matches the whole id anyway). The caller checks for clashes
/// among live routes.
pub fn new_route() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
    }
    u64::from_le_bytes(b)
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
    let from = iq.attr("from").and_then(crate::jid::parse::<Jid>);
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

    /// The publish log line used to say with_body=true for the placeholder.
    #[test]
    fn the_log_tells_a_placeholder_from_a_real_body() {
        let msg: Element =
            "<message xmlns='jabber:client' from='r@x/y'><body>secret text</body></message>"
                .parse()
                .unwrap();
        let cfg = Config::default();
        assert_eq!(
            Summary::of(Some(&msg), true, &cfg).body_kind(&cfg),
            "placeholder"
        );
        assert_eq!(Summary::of(Some(&msg), false, &cfg).body_kind(&cfg), "none");
        let with_body = Config {
            push_notification_with_body: true,
            ..Config::default()
        };
        assert_eq!(
            Summary::of(Some(&msg), true, &with_body).body_kind(&with_body),
            "message"
        );
    }
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
                extensions: None,
                last_s2s_failure: None,
            },
        )
        .unwrap()
    }

    const OPTIONS: &str = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>eruio234vzxc2kla-91</value></field></x>";

    /// The capture of spec/prosody-publishes.md, "Important message", with the line breaks
    /// removed and the client namespace.
    const PROSODY_IMPORTANT: &str = r#"<iq xmlns="jabber:client" type="set" id="ID" to="push-5.client.example" from="example.com"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="yxs32uqsflafdk3iuqo"><item><notification xmlns="urn:xmpp:push:0"><x xmlns="jabber:x:data" type="form"><field type="hidden" var="FORM_TYPE"><value>urn:xmpp:push:summary</value></field><field type="text-single" var="message-count"><value>1</value></field><field type="text-single" var="pending-subscription-count" /><field type="jid-single" var="last-message-sender" /><field type="text-single" var="last-message-body"><value>New Message!</value></field></x></notification></item></publish><publish-options><x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE"><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var="secret"><value>eruio234vzxc2kla-91</value></field></x></publish-options></pubsub></iq>"#;

    /// The publish as a client-namespace element, as a stream would read it.
    fn parse(xml: &str) -> Element {
        let wrapped = format!("<iq xmlns='jabber:client'{}", &xml["<iq".len()..]);
        wrapped.parse().unwrap()
    }

    #[test]
    fn values_are_escaped() {
        let summary = Summary {
            sender: Some("a'b@example.org/<x>".into()),
            body: Some("1 < 2 & \"3\" > 0".into()),
            ..Summary::default()
        };
        let iq = parse(&publish_xml(
            "example.com",
            &reg(Some("n'<&"), None),
            &summary,
            "ID",
        ));
        let pubsub = iq.get_child("pubsub", ns::PUBSUB).unwrap();
        let publish = pubsub.get_child("publish", ns::PUBSUB).unwrap();
        assert_eq!(publish.attr("node"), Some("n'<&"));
        let text = String::from(&iq);
        assert!(text.contains("1 &lt; 2 &amp;"), "{text}");
        let form = publish
            .get_child("item", ns::PUBSUB)
            .and_then(|i| i.get_child("notification", ns::PUSH))
            .and_then(|n| n.get_child("x", ns::DATA_FORMS))
            .unwrap();
        let values: Vec<String> = form
            .children()
            .filter_map(|f| f.get_child("value", ns::DATA_FORMS).map(|v| v.text()))
            .collect();
        assert_eq!(values[2], "a'b@example.org/<x>");
        assert_eq!(values[3], "1 < 2 & \"3\" > 0");
    }

    /// fuzz/ `enable` found a node with a tab reaching the app server with a space.
    #[test]
    fn white_space_in_node_and_body_survives_the_wire() {
        let node = "\tse-node-1 \r\n";
        let summary = Summary {
            sender: Some("a@b/\tr".into()),
            body: Some("line 1\r\nline 2\r".into()),
            ..Summary::default()
        };
        let el = parse(&publish_xml(
            "example.com",
            &reg(Some(node), None),
            &summary,
            "i",
        ));
        let publish = el
            .get_child("pubsub", ns::PUBSUB)
            .and_then(|p| p.get_child("publish", ns::PUBSUB))
            .unwrap();
        assert_eq!(publish.attr("node"), Some(node));
        let values: Vec<String> = publish
            .get_child("item", ns::PUBSUB)
            .and_then(|i| i.get_child("notification", ns::PUSH))
            .and_then(|n| n.get_child("x", ns::DATA_FORMS))
            .unwrap()
            .children()
            .filter_map(|f| f.get_child("value", ns::DATA_FORMS).map(|v| v.text()))
            .collect();
        assert!(
            values.contains(&"line 1\r\nline 2\r".to_string()),
            "{values:?}"
        );
        assert!(values.contains(&"a@b/\tr".to_string()), "{values:?}");
    }

    #[test]
    fn matches_prosody_capture() {
        let summary = Summary {
            sender: None,
            body: Some("New Message!".into()),
            notice: None,
        };
        let iq = parse(&publish_xml(
            "example.com",
            &reg(Some("yxs32uqsflafdk3iuqo"), Some(OPTIONS)),
            &summary,
            "ID",
        ));
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
        let iq = parse(&publish_xml(
            "example.com",
            &reg(None, None),
            &Summary::default(),
            "ID",
        ));
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
                body: Some("New Message!".into()),
                notice: None,
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
                body: Some("hi".into()),
                notice: None,
            }
        );
        assert_eq!(Summary::of(None, false, &cfg), Summary::default());
    }

    fn tigase_reg(ext: crate::store::PushExtensions) -> Registration {
        let mut r = reg(Some("n1"), None);
        r.record.extensions = Some(Box::new(ext));
        r
    }

    fn notification(xml: &str) -> Element {
        let iq = parse(xml);
        iq.get_child("pubsub", ns::PUBSUB)
            .and_then(|p| p.get_child("publish", ns::PUBSUB))
            .and_then(|p| p.get_child("item", ns::PUBSUB))
            .and_then(|i| i.get_child("notification", ns::PUSH))
            .unwrap()
            .clone()
    }

    /// The spec's layout: `<encrypted iv='base64(IV)'>base64(ciphertext ‖ tag)</encrypted>`,
    /// no summary form; opened here with the key, which checks the tag.
    #[test]
    fn encrypted_payload_layout() {
        use aes_gcm::aead::Aead;
        use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;

        let key = [9u8; 16];
        let r = tigase_reg(crate::store::PushExtensions {
            encrypt: Some(crate::store::EncryptSettings {
                key,
                max_size: None,
            }),
            ..Default::default()
        });
        let cfg = Config::default();
        let m: Element = "<message xmlns='jabber:client' type='chat' from='romeo@example.net/desk'><body>Wherefore</body></message>".parse().unwrap();
        let summary = Summary::of(Some(&m), true, &cfg).with_notice(Some(&m), true, &cfg);
        let iv = [3u8; 12];
        let n = notification(&publish_xml_with_iv(
            "example.com",
            &r,
            &summary,
            "ID",
            Some(iv),
        ));
        assert!(n.get_child("x", ns::DATA_FORMS).is_none());
        let enc = n.get_child("encrypted", "tigase:push:encrypt:0").unwrap();
        assert_eq!(STANDARD.decode(enc.attr("iv").unwrap()).unwrap(), iv);
        assert_eq!(enc.attr("type"), None);
        let sealed = STANDARD.decode(enc.text()).unwrap();
        let plain = Aes128Gcm::new(&key.into())
            .decrypt(Nonce::from_slice(&iv), sealed.as_slice())
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"unread": 1, "sender": "romeo@example.net", "type": "chat", "message": "Wherefore"})
        );
        // Neither the text nor the sender is readable on the wire.
        let wire = publish_xml_with_iv("example.com", &r, &summary, "ID", Some(iv));
        assert!(
            !wire.contains("Wherefore") && !wire.contains("romeo"),
            "{wire}"
        );
        // Without randomness there is no payload at all, never a plain one.
        let n = notification(&publish_xml_with_iv(
            "example.com",
            &r,
            &summary,
            "ID",
            None,
        ));
        assert_eq!(n.children().count(), 0);
    }

    #[test]
    fn a_proposed_call_rings_with_priority_and_jingle() {
        let r = tigase_reg(crate::store::PushExtensions {
            encrypt: Some(crate::store::EncryptSettings {
                key: [1; 16],
                max_size: None,
            }),
            priority: true,
            jingle: true,
            ..Default::default()
        });
        let cfg = Config::default();
        let call: Element = "<message xmlns='jabber:client' from='romeo@example.net/phone'><propose xmlns='urn:xmpp:jingle-message:0' id='c1'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>".parse().unwrap();
        let summary = Summary::of(Some(&call), true, &cfg).with_notice(Some(&call), true, &cfg);
        let n = notification(&publish_xml("example.com", &r, &summary, "ID"));
        let enc = n.get_child("encrypted", "tigase:push:encrypt:0").unwrap();
        assert_eq!(enc.attr("type"), Some("voip"));
        assert_eq!(
            n.get_child("priority", "tigase:push:priority:0")
                .map(|p| p.text()),
            Some("high".into())
        );
        let j = n.get_child("jingle", "tigase:push:jingle:0").unwrap();
        assert_eq!(
            (j.attr("action"), j.attr("sid")),
            (Some("propose"), Some("c1"))
        );

        let retract: Element = "<message xmlns='jabber:client' from='romeo@example.net/phone'><retract xmlns='urn:xmpp:jingle-message:0' id='c1'/></message>".parse().unwrap();
        let summary =
            Summary::of(Some(&retract), true, &cfg).with_notice(Some(&retract), true, &cfg);
        let n = notification(&publish_xml("example.com", &r, &summary, "ID"));
        let enc = n.get_child("encrypted", "tigase:push:encrypt:0").unwrap();
        assert_eq!(enc.attr("type"), None);
        assert!(n.get_child("priority", "tigase:push:priority:0").is_none());
        let j = n.get_child("jingle", "tigase:push:jingle:0").unwrap();
        assert_eq!(j.attr("action"), Some("retract"));
    }

    /// Priority without encryption: the summary form stays, the mark goes beside it, and
    /// only on important notifications.
    #[test]
    fn priority_beside_the_plain_form() {
        let r = tigase_reg(crate::store::PushExtensions {
            priority: true,
            ..Default::default()
        });
        let cfg = Config::default();
        let m: Element = "<message xmlns='jabber:client' from='r@x/y'><body>b</body></message>"
            .parse()
            .unwrap();
        let summary = Summary::of(Some(&m), true, &cfg).with_notice(Some(&m), true, &cfg);
        let n = notification(&publish_xml("example.com", &r, &summary, "ID"));
        assert!(n.get_child("x", ns::DATA_FORMS).is_some());
        assert!(n.get_child("priority", "tigase:push:priority:0").is_some());
        let cs: Element = "<message xmlns='jabber:client' from='r@x/y'><active xmlns='http://jabber.org/protocol/chatstates'/></message>".parse().unwrap();
        let summary = Summary::of(Some(&cs), false, &cfg).with_notice(Some(&cs), false, &cfg);
        let n = notification(&publish_xml("example.com", &r, &summary, "ID"));
        assert!(n.get_child("priority", "tigase:push:priority:0").is_none());
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
