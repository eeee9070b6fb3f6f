//! What a stanza tells the device, for the encrypted payload and the extensions' elements:
//! who sent it, its text, its kind, and the call it signals. Read once per stanza and
//! shared by every registration that publishes it.

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use crate::config::Config;
use crate::push::rules;

const JMI: [&str; 2] = ["urn:xmpp:jingle-message:0", "urn:xmpp:jingle-message:1"];
const RTP: &str = "urn:xmpp:jingle:apps:rtp:1";

/// The payload's `type` (the spec's four values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Groupchat,
    Call,
    Subscribe,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::Groupchat => "groupchat",
            Kind::Call => "call",
            Kind::Subscribe => "subscribe",
        }
    }
}

/// A Jingle Message Initiation signal (XEP-0353).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `propose`, `retract`, `accept`, `reject` or `proceed`.
    pub action: String,
    pub sid: String,
    /// The `media` of each proposed RTP description, in order, without repeats.
    pub media: Vec<String>,
}

impl Call {
    /// A call starting: the one signal that rings (iOS `voip`, `high` priority).
    pub fn rings(&self) -> bool {
        self.action == "propose"
    }
}

/// What one stanza tells the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notice {
    pub kind: Option<Kind>,
    /// Bare JID; the full JID for a call, which the device answers at that resource.
    pub sender: Option<String>,
    /// The text to show: the body, or the important placeholder for an end-to-end
    /// encrypted message. Not yet cut to any `max-size`.
    pub message: Option<String>,
    /// A groupchat message's sender's nickname (the resource of its `from`).
    pub nickname: Option<String>,
    pub call: Option<Call>,
    /// The stanza is important (spec §7.2): what `tigase:push:priority:0` marks `high`.
    pub important: bool,
    /// Its sender's bare JID, for the filters, whatever the payload may show.
    pub from_bare: Option<String>,
    /// A groupchat message's own text, for the groupchat filter's mentions, whatever the
    /// payload may show.
    pub groupchat_text: Option<String>,
}

impl Notice {
    /// Reads `stanza`. With `push_encrypted_with_body` (the default) the sender and the
    /// text are the real ones, since only the device can read them; without it they are
    /// `shown_sender` and `shown_body`, what the plain summary form would carry.
    pub fn of(
        stanza: &Element,
        important: bool,
        shown_sender: Option<&str>,
        shown_body: Option<&str>,
        cfg: &Config,
    ) -> Notice {
        let from = stanza.attr("from").and_then(crate::jid::parse::<Jid>);
        let call = call_of(stanza);
        let kind = match (stanza.name(), stanza.attr("type")) {
            ("message", Some("groupchat")) => Some(Kind::Groupchat),
            ("message", Some("error")) => None,
            ("message", _) if call.is_some() => Some(Kind::Call),
            ("message", _) => Some(Kind::Chat),
            ("presence", Some("subscribe")) => Some(Kind::Subscribe),
            _ => None,
        };
        // The spec's `sender` is the bare JID, except for a call, which the device
        // answers at the caller's full JID.
        let as_sender = |f: &Jid| {
            if kind == Some(Kind::Call) {
                f.to_string()
            } else {
                f.to_bare().to_string()
            }
        };
        let (sender, message) = if cfg.push_encrypted_with_body {
            let sender = from.as_ref().map(as_sender);
            let message = if rules::is_end_to_end_encrypted(stanza) {
                Some(cfg.push_notification_important_body.clone()).filter(|b| !b.is_empty())
            } else {
                rules::body_text(stanza).filter(|b| !b.is_empty())
            };
            (sender, message)
        } else {
            // The plain form's `last-message-sender` is the full JID (Prosody's); the
            // payload keeps the spec's form of the same sender.
            let sender = shown_sender.map(|s| match crate::jid::parse::<Jid>(s) {
                Some(j) => as_sender(&j),
                None => s.to_string(),
            });
            (sender, shown_body.map(str::to_string))
        };
        let nickname = (kind == Some(Kind::Groupchat))
            .then(|| {
                from.as_ref()
                    .and_then(|f| f.resource())
                    .map(|r| r.to_string())
            })
            .flatten();
        let groupchat_text = (kind == Some(Kind::Groupchat))
            .then(|| rules::body_text(stanza))
            .flatten();
        Notice {
            kind,
            sender,
            message,
            nickname,
            call,
            important,
            from_bare: from.map(|f| f.to_bare().to_string()),
            groupchat_text,
        }
    }

    /// Whether the high priority mark applies: important, and for a call only when it
    /// starts (the spec forbids `high` on any other call signal).
    pub fn high_priority(&self) -> bool {
        match &self.call {
            Some(call) => call.rings(),
            None => self.important,
        }
    }
}

fn call_of(stanza: &Element) -> Option<Call> {
    if stanza.name() != "message" {
        return None;
    }
    let signal = stanza
        .children()
        .find(|c| JMI.iter().any(|ns| c.has_ns(*ns)))?;
    let sid = signal.attr("id")?.to_string();
    let mut media: Vec<String> = Vec::new();
    for d in signal.children().filter(|c| c.is("description", RTP)) {
        if let Some(m) = d.attr("media")
            && !media.iter().any(|x| x == m)
        {
            media.push(m.to_string());
        }
    }
    Some(Call {
        action: signal.name().to_string(),
        sid,
        media,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    fn cfg() -> Config {
        Config::default()
    }

    #[test]
    fn chat_has_bare_sender_and_the_real_body_by_default() {
        let m = el(
            "<message xmlns='jabber:client' type='chat' from='romeo@example.net/desk'><body>Hi</body></message>",
        );
        let n = Notice::of(&m, true, None, Some("New Message!"), &cfg());
        assert_eq!(n.kind, Some(Kind::Chat));
        assert_eq!(n.sender.as_deref(), Some("romeo@example.net"));
        assert_eq!(n.message.as_deref(), Some("Hi"));
        assert!(n.high_priority());
    }

    #[test]
    fn the_admin_can_keep_sender_and_body_out() {
        let m = el(
            "<message xmlns='jabber:client' from='romeo@example.net/desk'><body>Hi</body></message>",
        );
        let c = Config {
            push_encrypted_with_body: false,
            ..cfg()
        };
        let n = Notice::of(&m, true, None, Some("New Message!"), &c);
        assert_eq!(n.sender, None);
        assert_eq!(n.message.as_deref(), Some("New Message!"));
        assert_eq!(n.from_bare.as_deref(), Some("romeo@example.net"));
    }

    /// With `push_notification_with_sender` the plain form shows the full JID; the
    /// payload still carries the bare one the spec asks for (the full one for a call).
    #[test]
    fn a_shown_sender_is_bare_in_the_payload() {
        let c = Config {
            push_encrypted_with_body: false,
            ..cfg()
        };
        let m = el(
            "<message xmlns='jabber:client' from='romeo@example.net/desk'><body>Hi</body></message>",
        );
        let n = Notice::of(&m, true, Some("romeo@example.net/desk"), None, &c);
        assert_eq!(n.sender.as_deref(), Some("romeo@example.net"));
        let call = el(
            "<message xmlns='jabber:client' from='romeo@example.net/phone'><propose xmlns='urn:xmpp:jingle-message:0' id='c1'/></message>",
        );
        let n = Notice::of(&call, true, Some("romeo@example.net/phone"), None, &c);
        assert_eq!(n.sender.as_deref(), Some("romeo@example.net/phone"));
    }

    #[test]
    fn groupchat_has_the_nickname() {
        let m = el(
            "<message xmlns='jabber:client' type='groupchat' from='room@muc.example/nurse'><body>x</body></message>",
        );
        let n = Notice::of(&m, true, None, None, &cfg());
        assert_eq!(n.kind, Some(Kind::Groupchat));
        assert_eq!(n.sender.as_deref(), Some("room@muc.example"));
        assert_eq!(n.nickname.as_deref(), Some("nurse"));
    }

    #[test]
    fn omemo_fallback_body_is_not_shown() {
        let m = el(
            "<message xmlns='jabber:client' from='r@x/y'><encrypted xmlns='eu.siacs.conversations.axolotl'/><body>I sent you an OMEMO encrypted message</body></message>",
        );
        let n = Notice::of(&m, true, None, None, &cfg());
        assert_eq!(n.message.as_deref(), Some("New Message!"));
    }

    #[test]
    fn a_proposed_call() {
        let m = el(
            "<message xmlns='jabber:client' from='romeo@example.net/phone'><propose xmlns='urn:xmpp:jingle-message:0' id='c1'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'/><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>",
        );
        let n = Notice::of(&m, true, None, None, &cfg());
        assert_eq!(n.kind, Some(Kind::Call));
        assert_eq!(n.sender.as_deref(), Some("romeo@example.net/phone"));
        let call = n.call.clone().unwrap();
        assert_eq!((call.action.as_str(), call.sid.as_str()), ("propose", "c1"));
        assert_eq!(call.media, ["audio", "video"]);
        assert!(n.high_priority());
    }

    #[test]
    fn a_retracted_call_is_never_high() {
        let m = el(
            "<message xmlns='jabber:client' from='romeo@example.net/phone'><retract xmlns='urn:xmpp:jingle-message:1' id='c1'/></message>",
        );
        let n = Notice::of(&m, true, None, None, &cfg());
        assert_eq!(n.kind, Some(Kind::Call));
        assert!(!n.call.unwrap().rings());
        let n = Notice::of(&m, true, None, None, &cfg());
        assert!(!n.high_priority());
    }

    #[test]
    fn subscription_request() {
        let p = el("<presence xmlns='jabber:client' type='subscribe' from='romeo@example.net'/>");
        let n = Notice::of(&p, false, None, None, &cfg());
        assert_eq!(n.kind, Some(Kind::Subscribe));
        assert!(!n.high_priority());
    }
}
