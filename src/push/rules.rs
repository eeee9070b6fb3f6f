//! Does this stanza wake the phone, and is it important? (spec §7, with D16, D17, D18)
//!
//! Importance never decides alone whether a publish is sent (§7.1): it picks the
//! placeholder body, the batch slot, and whether the extended hibernation is cut back.
//! Whether a stanza publishes at all depends on the path it took ([`wakes`]).

use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;

use crate::config::NotifyOn;

const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";
const JMI: [&str; 2] = ["urn:xmpp:jingle-message:0", "urn:xmpp:jingle-message:1"];

/// Encrypted payloads that count as a message although they carry no `<body>`.
const ENCRYPTED: [(&str, &str); 5] = [
    ("encrypted", "eu.siacs.conversations.axolotl"),
    ("encrypted", "urn:xmpp:omemo:0"),
    ("encrypted", "urn:xmpp:omemo:2"),
    ("x", "jabber:x:encrypted"),
    ("openpgp", "urn:xmpp:openpgp:0"),
];

/// Whether `message` carries an end-to-end encrypted payload (its `<body>`, if any, is
/// a fallback text for old clients, never the message).
pub fn is_end_to_end_encrypted(message: &Element) -> bool {
    ENCRYPTED
        .iter()
        .any(|(name, namespace)| message.has_child(*name, *namespace))
}

/// How a stanza reached the push module; each path has its own admission rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Stored offline, or a groupchat message to an absent resource (§8.1, §8.2).
    Offline,
    /// Archived by MAM while the user has sessions (§8.7).
    Archive,
    /// Queued for a hibernated session, in its queue at hibernation, or ack-overdue.
    Smacks,
}

/// Whether `stanza`, arriving by `path`, causes a publish.
pub fn wakes(stanza: &Element, path: Path, notify_on: NotifyOn) -> bool {
    let is_message = stanza.name() == "message";
    // D16: error bounces often copy the original body; they never wake a phone.
    if is_message && stanza.attr("type") == Some("error") {
        return false;
    }
    match path {
        // Headlines are never stored offline (mod_message drops them), so never pushed.
        Path::Offline => is_message && stanza.attr("type") != Some("headline"),
        Path::Archive => is_message,
        Path::Smacks => notify_on == NotifyOn::All || is_important(stanza),
    }
}

/// §7.2 in order, with D16 (errors never important) and D17 (OMEMO 2, JMI v1, call ends).
pub fn is_important(stanza: &Element) -> bool {
    if stanza.name() != "message" || stanza.attr("type") == Some("error") {
        return false;
    }
    let (message, outgoing_carbon) = match carbon_inner(stanza) {
        Some(inner) => (inner, stanza.children().any(|c| c.name() == "sent")),
        None => (stanza, false),
    };
    match message.attr("type") {
        Some("headline") | Some("error") => return false,
        _ => {}
    }
    // A call answered or refused on another device must reach the ringing phone (D17);
    // the user's own outgoing call invitation need not wake the user's phones.
    if outgoing_carbon {
        return has_call_signal(message, &CALL_ENDS);
    }
    if has_call_signal(message, &CALL_SIGNALS) {
        return true;
    }
    if is_end_to_end_encrypted(message) {
        return true;
    }
    if message.attr("type") == Some("groupchat") && message.has_child("subject", ns::DEFAULT_NS) {
        return false;
    }
    body_text(message).is_some_and(|b| !b.is_empty())
}

/// A call that must ring now (§7.3, with D17): pushed from the archive path to every
/// registration, even those whose session is online.
pub fn is_urgent(stanza: &Element) -> bool {
    stanza.name() == "message"
        && stanza.attr("type") != Some("error")
        && has_call_signal(stanza, &CALL_SIGNALS)
}

const CALL_SIGNALS: [&str; 4] = ["propose", "retract", "accept", "reject"];
const CALL_ENDS: [&str; 3] = ["retract", "accept", "reject"];

fn has_call_signal(message: &Element, names: &[&str]) -> bool {
    message
        .children()
        .any(|c| names.contains(&c.name()) && JMI.iter().any(|ns| c.has_ns(*ns)))
}

/// The message inside a carbons v2 wrapper: first child in the carbons namespace, its
/// first `forwarded`-namespace child, that one's `jabber:client` message.
fn carbon_inner(stanza: &Element) -> Option<&Element> {
    // `has_ns` compares in place; `ns()` would allocate a String per child.
    let wrapper = stanza.children().find(|c| c.has_ns(CARBONS))?;
    let forwarded = wrapper.children().find(|c| c.has_ns(FORWARD))?;
    forwarded
        .children()
        .find(|c| c.is("message", ns::DEFAULT_NS))
}

/// The text of the stanza's own `<body>`, or `None` when there is no body or the body has
/// child elements (Prosody's `get_child_text` gives no text then).
pub fn body_text(stanza: &Element) -> Option<String> {
    let body = stanza.get_child("body", ns::DEFAULT_NS)?;
    if body.children().next().is_some() {
        return None;
    }
    Some(body.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.replacen("<message", "<message xmlns='jabber:client'", 1)
            .replacen("<presence", "<presence xmlns='jabber:client'", 1)
            .replacen("<iq", "<iq xmlns='jabber:client'", 1)
            .parse()
            .unwrap()
    }

    #[test]
    fn body_is_important() {
        assert!(is_important(&el(
            "<message type='chat'><body>hi</body></message>"
        )));
        assert!(is_important(&el("<message><body> </body></message>")));
        assert!(!is_important(&el("<message><body/></message>")));
        assert!(!is_important(&el(
            "<message><body>a<b xmlns='x'/></body></message>"
        )));
    }

    #[test]
    fn chat_states_presence_and_iq_are_not() {
        assert!(!is_important(&el(
            "<message><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )));
        assert!(!is_important(&el("<presence/>")));
        assert!(!is_important(&el("<iq type='get' id='1'/>")));
    }

    #[test]
    fn error_messages_are_never_important_and_never_wake() {
        let m = el("<message type='error'><body>bounced</body></message>");
        assert!(!is_important(&m));
        for path in [Path::Offline, Path::Archive, Path::Smacks] {
            assert!(!wakes(&m, path, NotifyOn::All));
        }
    }

    #[test]
    fn headline_is_not_important_and_not_pushed_offline() {
        let m = el("<message type='headline'><body>news</body></message>");
        assert!(!is_important(&m));
        assert!(!wakes(&m, Path::Offline, NotifyOn::All));
        assert!(wakes(&m, Path::Smacks, NotifyOn::All));
    }

    #[test]
    fn encrypted_payloads_are_important() {
        for (name, namespace) in ENCRYPTED {
            let m = el(&format!("<message><{name} xmlns='{namespace}'/></message>"));
            assert!(is_important(&m), "{namespace}");
        }
    }

    #[test]
    fn groupchat_subject_is_not_important() {
        assert!(!is_important(&el(
            "<message type='groupchat'><subject>s</subject><body>b</body></message>"
        )));
        assert!(is_important(&el(
            "<message type='groupchat'><body>b</body></message>"
        )));
    }

    #[test]
    fn carbons() {
        let received = el(
            "<message><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat'><body>hi</body></message></forwarded></received></message>",
        );
        assert!(is_important(&received));
        let sent = el(
            "<message><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat'><body>hi</body></message></forwarded></sent></message>",
        );
        assert!(!is_important(&sent));
        let sent_reject = el(
            "<message><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><reject xmlns='urn:xmpp:jingle-message:1' id='c'/></message></forwarded></sent></message>",
        );
        assert!(is_important(&sent_reject));
    }

    #[test]
    fn calls_are_important_and_urgent() {
        for ns in JMI {
            for what in ["propose", "retract", "accept", "reject"] {
                let m = el(&format!(
                    "<message><{what} xmlns='{ns}' id='c1'/></message>"
                ));
                assert!(is_important(&m) && is_urgent(&m), "{ns} {what}");
            }
        }
        assert!(!is_urgent(&el("<message><body>x</body></message>")));
    }

    #[test]
    fn notify_on_important_filters_smacks_path_only() {
        let p = el("<presence/>");
        assert!(wakes(&p, Path::Smacks, NotifyOn::All));
        assert!(!wakes(&p, Path::Smacks, NotifyOn::Important));
        let cs = el("<message><active xmlns='http://jabber.org/protocol/chatstates'/></message>");
        assert!(wakes(&cs, Path::Offline, NotifyOn::Important));
    }

    #[test]
    fn offline_and_archive_take_messages_only() {
        let p = el("<presence type='subscribe'/>");
        assert!(!wakes(&p, Path::Offline, NotifyOn::All));
        assert!(!wakes(&p, Path::Archive, NotifyOn::All));
    }
}
