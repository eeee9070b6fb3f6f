//! What goes into a user's archive, as Prosody's `mod_mam` decides it: messages with a
//! body, an encrypted payload or a call's signal (XEP-0353: propose, retract, accept,
//! reject; the push module's own test), in and out; never errors, headlines
//! or groupchat (a room keeps its own), never what asks not to be stored (XEP-0334).

use xmpp_parsers::minidom::{Element, Node};

use actix::Addr;
use xmpp_parsers::jid::Jid;

use super::SID_NS;
use crate::store::archive::ArchivedMessage;
use crate::store::{Archive, ArchivePermit, Change, Store};
use crate::xmpp::stanza;

const HINTS_NS: &str = "urn:xmpp:hints";
const CARBONS_NS: &str = "urn:xmpp:carbons:2";

/// Payloads that stand for a body: end-to-end encryption (OMEMO, OpenPGP for XMPP,
/// legacy OpenPGP).
const ENCRYPTED: &[(&str, &str)] = &[
    ("encrypted", "eu.siacs.conversations.axolotl"),
    ("encrypted", "urn:xmpp:omemo:2"),
    ("openpgp", "urn:xmpp:openpgp:0"),
    ("x", "jabber:x:encrypted"),
];

/// Whether `message` is archived.
pub fn archivable(message: &Element) -> bool {
    if message.name() != "message" {
        return false;
    }
    if matches!(
        message.attr("type"),
        Some("error" | "headline" | "groupchat")
    ) {
        return false;
    }
    let hint = |name| message.has_child(name, HINTS_NS);
    if hint("no-store") || hint("no-permanent-store") {
        return false;
    }
    // A carbon copy from elsewhere is the other server's business.
    if message.has_child("received", CARBONS_NS) || message.has_child("sent", CARBONS_NS) {
        return false;
    }
    hint("store")
        || message.children().any(|c| c.name() == "body")
        || ENCRYPTED.iter().any(|&(n, ns)| message.has_child(n, ns))
        || crate::push::rules::is_urgent(message)
}

/// The store change that archives `stanza` for `user` under `id`; `peer` is the other
/// side (normalised as a JID when it parses).
pub fn change(
    user: &str,
    peer: &str,
    outgoing: bool,
    stanza: &Element,
    id: u64,
    max: usize,
) -> Change {
    let with = normalised(peer);
    Change::Archive {
        user: user.to_string(),
        id,
        message: ArchivedMessage {
            with,
            outgoing,
            stanza: String::from(stanza),
        },
        max: u64::try_from(max).unwrap_or(u64::MAX),
    }
}

/// The peer as the archive records it: normalised as a JID when it parses.
pub fn normalised(peer: &str) -> String {
    crate::jid::parse::<Jid>(peer).map_or_else(|| peer.to_string(), |j| j.to_string())
}

/// Hands an archive change to the store without waiting for its commit: it rides the
/// next durable commit, at no fsync of its own; a failure is logged (the message itself
/// was delivered or stored). `permit` is the change's place at the archive gate.
pub fn save(store: &Addr<Store>, user: &str, change: Change, permit: ArchivePermit) {
    let fut = store.send(Archive {
        change,
        durable: false,
        permit,
    });
    let user = user.to_string();
    actix::spawn(async move {
        match fut.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(%user, error = %e, "message not archived"),
            Err(_) => tracing::warn!(%user, "message not archived: the store is gone"),
        }
    });
}

/// The message with the stanza-id `id` given by `by` (the archive's owner, a bare JID).
/// A stanza-id with the same `by` from anyone else is removed first: only the archive
/// names its messages (XEP-0359 §6).
pub fn with_stanza_id(message: &Element, by: &str, id: u64) -> Element {
    let mut out = without_stanza_id(message.clone(), by);
    let mut sid = Element::builder("stanza-id", SID_NS).build();
    stanza::set_attr(&mut sid, "by", by);
    stanza::set_attr(&mut sid, "id", &id.to_string());
    out.append_child(sid);
    out
}

/// The message without any stanza-id given by `by`: what a message that is not
/// archived is delivered as, since no id of the archive's can name it.
pub fn without_stanza_id(mut message: Element, by: &str) -> Element {
    let ours = |c: &Element| c.is("stanza-id", SID_NS) && c.attr("by") == Some(by);
    if !message.children().any(ours) {
        return message;
    }
    for node in message.take_nodes() {
        match node {
            Node::Element(c) if ours(&c) => {}
            other => {
                message.append_node(other);
            }
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(s: &str) -> Element {
        s.parse().unwrap()
    }

    #[test]
    fn bodies_encryption_and_calls_are_archived() {
        assert!(archivable(&el(
            "<message xmlns='jabber:client' type='chat'><body>hi</body></message>"
        )));
        assert!(archivable(&el(
            "<message xmlns='jabber:client'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>"
        )));
        assert!(archivable(&el(
            "<message xmlns='jabber:client'><propose xmlns='urn:xmpp:jingle-message:0' id='c'/></message>"
        )));
        assert!(archivable(&el(
            "<message xmlns='jabber:client'><accept xmlns='urn:xmpp:jingle-message:0' id='c'/></message>"
        )));
        assert!(archivable(&el(
            "<message xmlns='jabber:client'><store xmlns='urn:xmpp:hints'/><displayed xmlns='urn:xmpp:chat-markers:0' id='x'/></message>"
        )));
    }

    #[test]
    fn chat_states_errors_rooms_and_no_store_are_not() {
        for s in [
            "<message xmlns='jabber:client' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "<message xmlns='jabber:client' type='error'><body>hi</body></message>",
            "<message xmlns='jabber:client' type='groupchat'><body>hi</body></message>",
            "<message xmlns='jabber:client' type='headline'><body>hi</body></message>",
            "<message xmlns='jabber:client'><body>hi</body><no-store xmlns='urn:xmpp:hints'/></message>",
            "<message xmlns='jabber:client'><received xmlns='urn:xmpp:carbons:2'/></message>",
            "<presence xmlns='jabber:client'/>",
        ] {
            assert!(!archivable(&el(s)), "{s}");
        }
    }

    #[test]
    fn a_forged_stanza_id_of_ours_is_replaced() {
        let m = el(
            "<message xmlns='jabber:client' from='romeo@x/a' id='m1'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='juliet@x' id='forged'/><stanza-id xmlns='urn:xmpp:sid:0' by='room@x' id='r'/></message>",
        );
        let out = with_stanza_id(&m, "juliet@x", 42);
        let ids: Vec<(Option<&str>, Option<&str>)> = out
            .children()
            .filter(|c| c.is("stanza-id", SID_NS))
            .map(|c| (c.attr("by"), c.attr("id")))
            .collect();
        assert_eq!(
            ids,
            [(Some("room@x"), Some("r")), (Some("juliet@x"), Some("42"))]
        );
        assert_eq!(out.attr("id"), Some("m1"));
        assert!(out.has_child("body", "jabber:client"));
    }

    #[test]
    fn a_message_not_archived_keeps_no_stanza_id_of_ours() {
        let m = el(
            "<message xmlns='jabber:client' from='romeo@x/a'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='juliet@x' id='forged'/><stanza-id xmlns='urn:xmpp:sid:0' by='room@x' id='r'/></message>",
        );
        let out = without_stanza_id(m, "juliet@x");
        let by: Vec<Option<&str>> = out
            .children()
            .filter(|c| c.is("stanza-id", SID_NS))
            .map(|c| c.attr("by"))
            .collect();
        assert_eq!(by, [Some("room@x")]);
        assert!(out.has_child("body", "jabber:client"));
    }
}
