//! XEP-0198 for a connected session, on the user actor's side: enabling it, the client's
//! acks, the server's `<r/>` with its deadline, and the one path every stanza to a
//! session takes (counted, queued until acknowledged).

use actix::prelude::*;
use xmpp_parsers::minidom::Element;

use super::super::route::{SESSION_CHANNEL, ToSocket};
use super::super::sm::{SM_NS, SmState};
use super::super::stanza;
use super::record::{EndKind, Link};
use super::state::{NONZA_ROOM, User};
use crate::push::machine::Event;
use crate::push::{QueuedStanza, SessionId, StanzaKey};

/// The client enabled stream management (`<enable/>`, the first one: the socket task
/// answers a second itself).
#[derive(Message)]
#[rtype(result = "()")]
pub struct EnableSm {
    pub id: SessionId,
    pub resume: bool,
}

/// The unacked queue's bound for a session enabling stream management now: the
/// configured one, within what its channel (sized at bind, `new_socket`) holds past the
/// nonzas' room, so that every unacked stanza fits the channel. A limit raised by SIGHUP
/// between a bind and its enable applies only as far as that.
fn queue_bound(configured: usize, channel: Option<usize>) -> usize {
    channel.map_or(configured, |c| configured.min(c.saturating_sub(NONZA_ROOM)))
}

impl Handler<EnableSm> for User {
    type Result = ();

    fn handle(&mut self, msg: EnableSm, _: &mut Context<Self>) {
        let (max_queue, max_secs) = (
            self.shared.live.get().smacks_max_queue_size,
            self.shared.cfg.smacks_hibernation_time.as_secs(),
        );
        let Some(e) = self.entry_mut(msg.id) else {
            return;
        };
        let Link::Connected(socket) = &e.link else {
            return;
        };
        let max_queue = queue_bound(max_queue, socket.tx.capacity());
        let mut enabled = Element::builder("enabled", SM_NS).build();
        // Without resumption the id stays empty: a lost connection ends the session.
        let mut id = String::new();
        if msg.resume {
            id = stanza::random_id();
            stanza::set_attr(&mut enabled, "id", &id);
            stanza::set_attr(&mut enabled, "resume", "true");
            stanza::set_attr(&mut enabled, "max", &max_secs.to_string());
        }
        e.sm = Some(SmState::new(id, max_queue));
        let _ = socket.tx.try_send(ToSocket::Nonza(Box::new(enabled)));
    }
}

/// The client acknowledged `h` stanzas in all (`<a/>`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientAck {
    pub id: SessionId,
    pub h: u32,
}

impl Handler<ClientAck> for User {
    type Result = ();

    fn handle(&mut self, msg: ClientAck, ctx: &mut Context<Self>) {
        let Some(e) = self.entry_mut(msg.id) else {
            return;
        };
        let Some(sm) = &mut e.sm else {
            return;
        };
        if let Err(err) = sm.on_ack(msg.h) {
            tracing::info!(user = %self.name, error = %err, "bad ack: session closed");
            self.end_session(msg.id, EndKind::BadAck, ctx);
            return;
        }
        if let Some(t) = e.ack_timer.take() {
            ctx.cancel_future(t);
        }
        e.ack_overdue_sent = false;
        self.account();
    }
}

/// A stanza for the client from its session's own handling (a reply, an offline
/// message, a keepalive ping): counted and queued like any delivered stanza.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reply {
    pub id: SessionId,
    pub stanza: Element,
}

impl Handler<Reply> for User {
    type Result = ();

    fn handle(&mut self, msg: Reply, ctx: &mut Context<Self>) {
        if let Err(s) = self.write(msg.id, msg.stanza, ctx) {
            // Its own connection cannot take it: the session is ending. A message
            // takes the way of any undeliverable one; a reply is of no use any more.
            if s.name() == "message" {
                self.store_offline(s, ctx);
            }
        }
    }
}

/// The unacked stanzas of a session, keyed for the push module (D13).
pub(super) fn queued(sm: &SmState, session: SessionId) -> Vec<QueuedStanza> {
    sm.unacked()
        .into_iter()
        .map(|(seq, stanza)| QueuedStanza {
            key: StanzaKey { session, seq },
            stanza,
        })
        .collect()
}

impl User {
    /// The one way a stanza reaches a session: written by its socket (counted for
    /// XEP-0198 first), or queued in its record while it hibernates. `Err` gives the
    /// stanza back when the session cannot take it (its channel is full, without
    /// stream management, or it is ending).
    pub(super) fn write(
        &mut self,
        id: SessionId,
        stanza: Element,
        ctx: &mut Context<Self>,
    ) -> Result<(), Element> {
        // XEP-0352: an inactive client's unimportant stanzas wait (csi.rs).
        let Some(stanza) = self.csi_hold(id, stanza, ctx) else {
            return Ok(());
        };
        let max_unacked = self.shared.cfg.smacks_max_unacked_stanzas;
        let ack_delay = self.shared.cfg.smacks_max_ack_delay;
        let Some(i) = self.index_of(id) else {
            return Err(stanza);
        };
        let e = &mut self.sessions[i];
        let socket = match &e.link {
            Link::Closing(_) => return Err(stanza),
            Link::Hibernated(_) => return self.queue_hibernated(i, stanza, ctx),
            Link::Connected(socket) => socket,
        };
        let Some(sm) = &mut e.sm else {
            if socket.tx.len() >= SESSION_CHANNEL {
                return Err(stanza);
            }
            return match socket.tx.try_send(ToSocket::Stanza(Box::new(stanza))) {
                Ok(()) => {
                    self.shared.gauges.queued();
                    Ok(())
                }
                Err(flume::TrySendError::Full(ToSocket::Stanza(s)))
                | Err(flume::TrySendError::Disconnected(ToSocket::Stanza(s))) => Err(*s),
                Err(_) => Ok(()),
            };
        };
        if sm.on_sent(&stanza).is_none() {
            tracing::info!(user = %self.name, "smacks_max_queue_size reached: session closed");
            e.spill.push(stanza);
            self.end_session(id, EndKind::QueueFull, ctx);
            self.account();
            return Ok(());
        }
        // Counted: if the socket is gone, the stanza waits in the unacked queue for the
        // socket's last report (hibernation or the session's end).
        if socket
            .tx
            .try_send(ToSocket::Stanza(Box::new(stanza)))
            .is_ok()
        {
            self.shared.gauges.queued();
        }
        if sm.unacked_len() > max_unacked && e.ack_timer.is_none() {
            let _ = socket.tx.try_send(ToSocket::Nonza(Box::new(
                Element::builder("r", SM_NS).build(),
            )));
            e.ack_timer = Some(ctx.run_later(ack_delay, move |act, ctx| act.ack_overdue(id, ctx)));
        }
        self.account();
        Ok(())
    }

    /// An `<r/>` went unanswered for `smacks_max_ack_delay`: the push module hears of it
    /// once, until the client acks again (it may be asleep behind a live-looking socket).
    pub(super) fn ack_overdue(&mut self, id: SessionId, ctx: &mut Context<Self>) {
        let Some(e) = self.entry_mut(id) else {
            return;
        };
        e.ack_timer = None;
        if e.ack_overdue_sent {
            return;
        }
        e.ack_overdue_sent = true;
        if let Some(sm) = &e.sm {
            let queue = queued(sm, id);
            self.push_event(Event::AckOverdue { session: id, queue }, ctx);
        }
    }
}

/// The socket task ended: the connection was `lost` (hibernate, if resumable), or the
/// stream was closed. `unwritten` is what its channel still held.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SocketEnded {
    pub id: SessionId,
    pub conn: u64,
    pub lost: bool,
    pub unwritten: Vec<Element>,
}

impl Handler<SocketEnded> for User {
    type Result = ();

    fn handle(&mut self, msg: SocketEnded, ctx: &mut Context<Self>) {
        // XEP-0352: what waited is counted (or settled) like what was written.
        self.csi_flush(msg.id, ctx);
        let Some(i) = self.index_of(msg.id) else {
            return;
        };
        let e = &mut self.sessions[i];
        let (Link::Connected(socket) | Link::Closing(socket)) = &e.link else {
            return;
        };
        if socket.conn != msg.conn {
            // A connection replaced by a resumption: the session lives on.
            return;
        }
        let received = socket.received.load(std::sync::atomic::Ordering::Relaxed);
        let closing = matches!(e.link, Link::Closing(_));
        if e.sm.is_none() {
            // Without stream management nothing was counted: what the socket did not
            // write is settled like unacked stanzas.
            e.spill.extend(msg.unwritten);
        }
        if let Some(t) = e.ack_timer.take() {
            ctx.cancel_future(t);
        }
        if closing {
            self.settle(i, received, ctx);
        } else if msg.lost && e.resume_id().is_some() {
            self.hibernate(i, received, ctx);
        } else {
            self.settle(i, received, ctx);
        }
        self.report_if_idle(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_bound_fits_the_channel() {
        assert_eq!(queue_bound(500, Some(508)), 500);
        assert_eq!(queue_bound(3, Some(256)), 3);
        // Raised after the bind: as far as the channel holds.
        assert_eq!(queue_bound(1000, Some(508)), 500);
        assert_eq!(queue_bound(1000, None), 1000);
    }
}
