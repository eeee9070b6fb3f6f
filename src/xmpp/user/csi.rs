//! XEP-0352 client state indication, as Prosody's `mod_csi_simple` does it: while a
//! session says it is inactive (a phone with its screen off), stanzas that need not wake
//! it (presence, chat states, receipts) wait in a bounded buffer; an important one
//! flushes the buffer ahead of itself, and so does going active, a full buffer, or the
//! connection's end. Important is what the push module calls important, so a phone is
//! woken for the same stanzas either way.

use actix::prelude::*;
use xmpp_parsers::minidom::Element;

use super::record::Link;
use super::state::User;
use crate::push::SessionId;
use crate::push::rules;

pub const CSI_NS: &str = "urn:xmpp:csi:0";

/// Whether an inactive session's `stanza` may wait: presence, and messages the push
/// module does not call important. Never an IQ: its sender waits for the answer.
pub fn may_wait(stanza: &Element) -> bool {
    match stanza.name() {
        "presence" => true,
        "message" => !rules::is_important(stanza),
        _ => false,
    }
}

/// The client said `<active/>` (`true`) or `<inactive/>`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetClientState {
    pub id: SessionId,
    pub active: bool,
}

impl Handler<SetClientState> for User {
    type Result = ();

    fn handle(&mut self, msg: SetClientState, ctx: &mut Context<Self>) {
        let Some(e) = self.entry_mut(msg.id) else {
            return;
        };
        e.flags.csi.inactive = !msg.active;
        if msg.active {
            self.csi_flush(msg.id, ctx);
        }
    }
}

impl User {
    /// The CSI step of every write to a session: `None` when `stanza` waits in the
    /// buffer, otherwise the stanza to write now, after the buffer was flushed ahead of
    /// it when it is important (or the buffer full).
    pub(super) fn csi_hold(
        &mut self,
        id: SessionId,
        stanza: Element,
        ctx: &mut Context<Self>,
    ) -> Option<Element> {
        let max = self.shared.live.get().csi_queue_size;
        let Some(e) = self.entry_mut(id) else {
            return Some(stanza);
        };
        let csi = &mut e.flags.csi;
        if !csi.inactive || csi.flushing || !matches!(e.link, Link::Connected(_)) {
            return Some(stanza);
        }
        if may_wait(&stanza) && csi.len() < max {
            csi.hold(stanza);
            self.account();
            return None;
        }
        self.csi_flush(id, ctx);
        Some(stanza)
    }

    /// Writes what waits for the session, oldest first. A message it cannot take goes
    /// the way of any undeliverable one (offline storage); presence and chat states are
    /// of no use any more and are dropped with a log line.
    pub(super) fn csi_flush(&mut self, id: SessionId, ctx: &mut Context<Self>) {
        let Some(e) = self.entry_mut(id) else {
            return;
        };
        if e.flags.csi.is_empty() {
            return;
        }
        let held = e.flags.csi.take();
        e.flags.csi.flushing = true;
        for s in held {
            if let Err(s) = self.write(id, s, ctx) {
                if s.name() == "message" && matches!(s.attr("type"), None | Some("chat" | "normal"))
                {
                    self.store_offline(s, ctx);
                } else {
                    tracing::debug!(user = %self.name, "a held stanza could not be written");
                }
            }
        }
        if let Some(e) = self.entry_mut(id) {
            e.flags.csi.flushing = false;
        }
        self.account();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(s: &str) -> Element {
        s.parse().unwrap()
    }

    #[test]
    fn presence_and_chat_states_wait_messages_and_iqs_do_not() {
        assert!(may_wait(&el("<presence xmlns='jabber:client'/>")));
        assert!(may_wait(&el(
            "<message xmlns='jabber:client' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )));
        assert!(!may_wait(&el(
            "<message xmlns='jabber:client' type='chat'><body>hi</body></message>"
        )));
        assert!(!may_wait(&el(
            "<message xmlns='jabber:client'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>"
        )));
        assert!(!may_wait(&el(
            "<iq xmlns='jabber:client' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"
        )));
    }
}
