//! Delivery to a local user (RFC 6121 §8.5): to one session, to the available ones, or,
//! with none available, to offline storage; a bounce for what cannot be delivered.
//! Nothing is dropped silently (D22).

use std::sync::atomic::Ordering;

use actix::prelude::*;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::super::route::ToSocket;
use super::super::stanza;
use super::record::{Entry, Link, OfflineWait};
use super::state::User;
use crate::push::SessionId;
use crate::push::machine::Event;
use crate::store::{PushOffline, StoreError};

/// Bounces waiting for room in their recipient's channel, server-wide; past it they are
/// dropped with a log line.
const WAITING_BOUNCES: usize = 4096;

/// A stanza for this user (`to` is its parsed address), `from` already stamped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub stanza: Element,
    pub to: Jid,
}

impl Handler<Deliver> for User {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        self.count_router_message(ctx);
        self.take_committed(ctx);
        // XEP-0313: archived (and stamped with its stanza-id) before any copy is sent.
        let stanza = self.archive_incoming(msg.stanza, ctx);
        // XEP-0280: copies for the other sessions of a message to one of them.
        self.carbons_for_received(&stanza, msg.to.resource().map(|r| r.as_str()), ctx);
        self.deliver(stanza, &msg.to, ctx);
        self.report_if_idle(ctx);
    }
}

impl User {
    /// Sends `stanza` to every available session; `false` when none took it.
    pub(super) fn send_to_available(&mut self, stanza: &Element, ctx: &mut Context<Self>) -> bool {
        let ids = self.session_ids(Entry::available);
        let mut taken = false;
        for id in ids {
            taken |= self.write(id, stanza.clone(), ctx).is_ok();
        }
        taken
    }

    pub(super) fn deliver(&mut self, stanza: Element, to: &Jid, ctx: &mut Context<Self>) {
        let name = stanza.name();
        // A full JID with a live session: that session.
        if let Some(res) = to.resource()
            && let Some(id) = self
                .sessions
                .iter()
                .find(|e| e.live() && e.resource() == res.as_str())
                .map(|e| e.id)
        {
            if let Err(s) = self.write(id, stanza, ctx) {
                self.undeliverable(id, s, ctx);
            }
            return;
        }
        // An IQ to a full JID that is gone, or to someone else's bare JID: nobody answers.
        if name == "iq" {
            self.bounce(&stanza, "service-unavailable");
            return;
        }
        let first_available = self.sessions.iter().find(|e| e.available()).map(|e| e.id);
        let kind = stanza.attr("type").unwrap_or("normal");
        if name == "message" {
            if kind == "groupchat" && to.resource().is_some() {
                // Path B: a room writing to an occupant whose device left.
                self.groupchat_missed(stanza, ctx);
                return;
            }
            let Some(first) = first_available else {
                match kind {
                    "chat" | "normal" => self.store_offline(stanza, ctx),
                    "groupchat" => self.groupchat_missed(stanza, ctx),
                    // RFC 6121 §8.5.2.2: headlines and errors to a user with no
                    // available session are not stored.
                    _ => {
                        tracing::debug!(user = %self.name, kind, "message for an absent user dropped")
                    }
                }
                return;
            };
            // Delivered when any session took it; stored (once) when none could.
            if !self.send_to_available(&stanza, ctx) {
                self.undeliverable(first, stanza, ctx);
            }
            return;
        }
        match kind {
            "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" => {
                self.inbound_subscription(stanza, ctx);
            }
            "probe" => self.answer_probe(stanza, ctx),
            // Presence to a bare JID: every available resource.
            _ => {
                self.send_to_available(&stanza, ctx);
            }
        }
    }

    /// A groupchat message that reached no session: the push module hears of it, the
    /// room gets an error (and removes the occupant).
    fn groupchat_missed(&mut self, stanza: Element, ctx: &mut Context<Self>) {
        self.bounce(&stanza, "service-unavailable");
        self.push_event(Event::Offline { stanza, key: None }, ctx);
    }

    /// A stanza for a session that cannot take it (its channel is full, or it is
    /// ending): a chat or normal message goes to offline storage, which bounces only
    /// when it is full (D22); anything else is bounced.
    fn undeliverable(&mut self, id: SessionId, stanza: Element, ctx: &mut Context<Self>) {
        let kind = stanza.attr("type").unwrap_or("normal");
        let waiting_room = self
            .sessions
            .iter()
            .find(|e| e.id == id)
            .and_then(|e| match &e.link {
                // Only a session without stream management has a full channel: nothing it
                // is sent is counted, so a bounce may wait for room there.
                Link::Connected(s) if e.sm.is_none() => Some(s.tx.clone()),
                _ => None,
            });
        if stanza.name() == "message" && matches!(kind, "chat" | "normal") {
            tracing::debug!(user = %self.name, "session cannot take a message: stored offline");
            self.store_offline(stanza, ctx);
        } else if let (Some(tx), "error") = (waiting_room, kind) {
            // A bounce cannot be bounced: it waits for room in the session's channel
            // (a burst of bounces comes from one commit), within a bound of its own.
            self.wait_for_room(&tx, stanza);
        } else {
            self.bounce(&stanza, "resource-constraint");
        }
    }

    fn wait_for_room(&self, tx: &flume::Sender<ToSocket>, stanza: Element) {
        let waiting = self.shared.waiting_bounces.clone();
        if waiting.load(Ordering::Relaxed) >= WAITING_BOUNCES {
            tracing::warn!(user = %self.name, "session too slow to take its bounces: one dropped");
            return;
        }
        waiting.fetch_add(1, Ordering::Relaxed);
        let (tx, user, gauges) = (tx.clone(), self.name.clone(), self.shared.gauges.clone());
        actix::spawn(async move {
            match tx.send_async(ToSocket::Stanza(Box::new(stanza))).await {
                Ok(()) => gauges.queued(),
                Err(_) => tracing::info!(%user, "session ended before it could take a bounce"),
            }
            waiting.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Stores a message for a user with no available session (XEP-0160), stamped with
    /// XEP-0203 delay; once durable the push module hears of it. A missing user or a full
    /// store bounces to the sender: nothing is dropped silently.
    pub(super) fn store_offline(&mut self, stanza: Element, ctx: &mut Context<Self>) {
        let stamped = stanza::delay_stamped(&stanza, &self.shared.cfg.domain);
        let live = self.shared.live.get();
        let fut = self.shared.store.send(PushOffline {
            user: self.name.clone(),
            stanza: String::from(&stamped),
            max: live.offline_max_messages,
            max_bytes: live.offline_max_bytes,
            release: None,
        });
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.offline.push_back(OfflineWait {
            ticket,
            stanza,
            stored: None,
        });
        self.in_flight += 1;
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.in_flight -= 1;
            if let Some(w) = act.offline.iter_mut().find(|w| w.ticket == ticket) {
                w.stored = Some(res.unwrap_or(Err(StoreError::Closed)));
            }
            act.settle_offline(ctx);
            act.after_store_request(ctx);
        }));
    }

    /// Acts on the store's answers about offline messages, in the order they were asked.
    fn settle_offline(&mut self, ctx: &mut Context<Self>) {
        while self.offline.front().is_some_and(|w| w.stored.is_some()) {
            let Some(OfflineWait {
                stanza,
                stored: Some(stored),
                ..
            }) = self.offline.pop_front()
            else {
                break;
            };
            match stored {
                Ok(_) => self.push_event(Event::Offline { stanza, key: None }, ctx),
                Err(StoreError::NoSuchUser) => self.bounce(&stanza, "service-unavailable"),
                Err(StoreError::Full) => {
                    tracing::info!(user = %self.name, "offline storage full: message bounced");
                    self.bounce(&stanza, "resource-constraint")
                }
                Err(e) => {
                    tracing::error!(user = %self.name, error = %e, "offline message not stored: bounced");
                    self.bounce(&stanza, "internal-server-error")
                }
            }
        }
    }

    /// After a store answer was acted on: the actor may be idle now.
    pub(super) fn after_store_request(&mut self, ctx: &mut Context<Self>) {
        self.report_if_idle(ctx);
        self.stop_if_detached(ctx);
    }
}
