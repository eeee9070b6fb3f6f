//! XEP-0280 message carbons v2: a session that enabled them gets a copy of the messages
//! its user's other sessions send and receive, so every device shows the whole
//! conversation. The eligibility rules and the wrapping are plain functions; the actor
//! part only picks the sessions.

use actix::prelude::*;
use xmpp_parsers::minidom::Element;

use super::super::stanza;
use super::record::Entry;
use super::state::User;
use crate::push::SessionId;

pub const CARBONS_NS: &str = "urn:xmpp:carbons:2";
const FORWARD_NS: &str = "urn:xmpp:forward:0";
const HINTS_NS: &str = "urn:xmpp:hints";
const MUC_USER_NS: &str = "http://jabber.org/protocol/muc#user";

/// Payloads of instant messaging that make a message without a body worth copying
/// (XEP-0280 §6.1: chat states, receipts, markers, corrections of them).
const IM_PAYLOADS: &[&str] = &[
    "http://jabber.org/protocol/chatstates",
    "urn:xmpp:receipts",
    "urn:xmpp:chat-markers:0",
];

/// Whether `message` is copied to the user's other sessions (XEP-0280 §6.1, with the
/// XEP-0334 `no-copy` hint and `<private/>` as opt-outs).
pub fn eligible(message: &Element) -> bool {
    if message.name() != "message"
        || message.has_child("private", CARBONS_NS)
        || message.has_child("no-copy", HINTS_NS)
        // Already a carbon (or a MAM result): copying it again would loop.
        || message.has_child("received", CARBONS_NS)
        || message.has_child("sent", CARBONS_NS)
        || message.has_child("result", "urn:xmpp:mam:2")
    {
        return false;
    }
    match message.attr("type").unwrap_or("normal") {
        "chat" => true,
        "normal" => {
            message.children().any(|c| c.name() == "body")
                || message
                    .children()
                    .any(|c| IM_PAYLOADS.iter().any(|ns| c.has_ns(*ns)))
        }
        // A private message from a room occupant is a conversation of the user's own.
        "groupchat" | "headline" | "error" => false,
        _ => message.has_child("x", MUC_USER_NS),
    }
}

/// The copy of `message` for `to` (one of the user's sessions): `direction` is
/// `received` or `sent`, sent from the user's bare JID (XEP-0280 §7, §8).
pub fn wrap(message: &Element, direction: &str, bare: &str, to: &str) -> Element {
    let forwarded = Element::builder("forwarded", FORWARD_NS)
        .append(message.clone())
        .build();
    let wrapper = Element::builder(direction, CARBONS_NS)
        .append(forwarded)
        .build();
    let mut copy = Element::builder("message", stanza::CLIENT_NS)
        .append(wrapper)
        .build();
    stanza::set_attr(&mut copy, "from", bare);
    stanza::set_attr(&mut copy, "to", to);
    stanza::set_attr(&mut copy, "type", message.attr("type").unwrap_or("normal"));
    copy
}

/// A session enables (`true`) or disables carbons. Answered once in force.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetCarbons {
    pub id: SessionId,
    pub enabled: bool,
}

impl Handler<SetCarbons> for User {
    type Result = ();

    fn handle(&mut self, msg: SetCarbons, _: &mut Context<Self>) {
        if let Some(e) = self.entry_mut(msg.id) {
            e.flags.carbons = msg.enabled;
        }
    }
}

/// A session sent `stanza` (its `from` stamped): the user's other sessions with carbons
/// get a `sent` copy.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Sent {
    pub id: SessionId,
    pub stanza: Element,
}

impl Handler<Sent> for User {
    type Result = ();

    fn handle(&mut self, msg: Sent, ctx: &mut Context<Self>) {
        if eligible(&msg.stanza) {
            self.copy_to_others(&msg.stanza, "sent", Some(msg.id), ctx);
        }
    }
}

impl User {
    /// A message for this user, to `to_resource` or to the bare JID: every session with
    /// carbons that does not get the message itself gets a `received` copy (XEP-0280
    /// §6: all interested resources). A message for a live resource goes to that
    /// session only; one to the bare JID (or to a resource that is gone) goes to the
    /// available sessions, so a session that enabled carbons but sent no presence still
    /// needs its copy.
    pub(super) fn carbons_for_received(
        &mut self,
        stanza: &Element,
        to_resource: Option<&str>,
        ctx: &mut Context<Self>,
    ) {
        if !eligible(stanza) {
            return;
        }
        let target = to_resource.and_then(|res| {
            self.sessions
                .iter()
                .find(|e| e.live() && e.resource() == res)
                .map(|e| e.id)
        });
        match target {
            Some(id) => self.copy_to(stanza, "received", |e| e.id != id, ctx),
            None => self.copy_to(stanza, "received", |e| !e.available(), ctx),
        }
    }

    fn copy_to_others(
        &mut self,
        stanza: &Element,
        direction: &str,
        except: Option<SessionId>,
        ctx: &mut Context<Self>,
    ) {
        self.copy_to(stanza, direction, |e| Some(e.id) != except, ctx);
    }

    /// A copy for each live session with carbons that `wanted` keeps.
    fn copy_to(
        &mut self,
        stanza: &Element,
        direction: &str,
        wanted: impl Fn(&Entry) -> bool,
        ctx: &mut Context<Self>,
    ) {
        let ids = self.session_ids(|e| e.live() && e.flags.carbons && wanted(e));
        for id in ids {
            let Some(to) = self
                .sessions
                .iter()
                .find(|e| e.id == id)
                .map(|e| e.jid.to_string())
            else {
                continue;
            };
            let copy = wrap(stanza, direction, &self.bare, &to);
            if self.write(id, copy, ctx).is_err() {
                // A copy is not a message of its own: the original was delivered.
                tracing::debug!(user = %self.name, "a session could not take a carbon copy");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(s: &str) -> Element {
        s.parse().unwrap()
    }

    #[test]
    fn chat_and_im_payloads_are_copied() {
        for s in [
            "<message xmlns='jabber:client' type='chat'><body>hi</body></message>",
            "<message xmlns='jabber:client' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "<message xmlns='jabber:client'><body>hi</body></message>",
            "<message xmlns='jabber:client'><received xmlns='urn:xmpp:receipts' id='a'/></message>",
        ] {
            assert!(eligible(&el(s)), "{s}");
        }
    }

    #[test]
    fn private_no_copy_rooms_errors_and_carbons_are_not() {
        for s in [
            "<message xmlns='jabber:client' type='chat'><body>hi</body><private xmlns='urn:xmpp:carbons:2'/></message>",
            "<message xmlns='jabber:client' type='chat'><body>hi</body><no-copy xmlns='urn:xmpp:hints'/></message>",
            "<message xmlns='jabber:client' type='groupchat'><body>hi</body></message>",
            "<message xmlns='jabber:client' type='headline'><body>hi</body></message>",
            "<message xmlns='jabber:client' type='error'><body>hi</body></message>",
            "<message xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></message>",
            "<message xmlns='jabber:client' type='chat'><sent xmlns='urn:xmpp:carbons:2'/></message>",
            "<presence xmlns='jabber:client'/>",
        ] {
            assert!(!eligible(&el(s)), "{s}");
        }
    }

    #[test]
    fn a_copy_forwards_the_message_from_the_bare_jid() {
        let m = el(
            "<message xmlns='jabber:client' type='chat' from='juliet@x/phone' to='romeo@x'><body>hi</body></message>",
        );
        let c = wrap(&m, "sent", "juliet@x", "juliet@x/desk");
        assert_eq!(c.attr("from"), Some("juliet@x"));
        assert_eq!(c.attr("to"), Some("juliet@x/desk"));
        assert_eq!(c.attr("type"), Some("chat"));
        let inner = c
            .get_child("sent", CARBONS_NS)
            .and_then(|s| s.get_child("forwarded", FORWARD_NS))
            .and_then(|f| f.get_child("message", stanza::CLIENT_NS))
            .unwrap();
        assert_eq!(inner.attr("from"), Some("juliet@x/phone"));
    }
}
