//! A session's end for good: its socket is told (and its last report awaited), its
//! unacked messages go to offline storage (keyed, so the push module does not push what
//! it already pushed, D13), other stanzas bounce, and everyone who should hear of it
//! does.

use actix::prelude::*;
use xmpp_parsers::minidom::Element;

use super::super::presence;
use super::super::route::{Route, ToSocket};
use super::super::sm::SmState;
use super::super::sm::handled_count_too_high;
use super::super::stanza::{self, CLIENT_NS};
use super::record::{EndKind, Link};
use super::state::{Shared, User};
use super::to_router::EndedSession;
use crate::push::machine::Event;
use crate::push::{SessionId, StanzaKey};
use crate::store::{PushOffline, QueuedKey, StoreError};

/// Unacked messages asked to be stored at once when a session ends (well within the
/// store's mailbox, so they keep their order).
const OFFLINE_CHUNK: usize = 64;

impl User {
    /// Ends session `id`: a connected one is told to close, and settled on its socket's
    /// last report; a hibernated one is settled now.
    pub(super) fn end_session(&mut self, id: SessionId, kind: EndKind, ctx: &mut Context<Self>) {
        let Some(i) = self.index_of(id) else {
            return;
        };
        let e = &mut self.sessions[i];
        match &e.link {
            Link::Connected(socket) => {
                let order = match kind {
                    EndKind::BadAck => ToSocket::Fail(Box::new(handled_count_too_high())),
                    EndKind::Conflict => ToSocket::Close("conflict"),
                    EndKind::Shutdown => ToSocket::Close("system-shutdown"),
                    EndKind::Revoked => ToSocket::Close("not-authorized"),
                    EndKind::QueueFull | EndKind::Timeout => ToSocket::Close("resource-constraint"),
                };
                // A full channel still ends: the socket reads its channel to the end.
                if let Err(flume::TrySendError::Full(order)) = socket.tx.try_send(order) {
                    let tx = socket.tx.clone();
                    actix::spawn(async move {
                        let _ = tx.send_async(order).await;
                    });
                }
                e.link = Link::Closing(socket.clone());
            }
            Link::Hibernated(h) => {
                let received = h.received;
                self.settle(i, received, ctx);
            }
            Link::Closing(_) => {}
        }
    }

    /// Session `i` is over: out of the user's sessions at once, then its leftovers are
    /// settled in the background.
    pub(super) fn settle(&mut self, i: usize, received: u32, ctx: &mut Context<Self>) {
        let Some(id) = self.sessions.get(i).map(|e| e.id) else {
            return;
        };
        self.flush_pending(id, ctx);
        // Found again: feeding the push module may change the sessions.
        let Some(i) = self.index_of(id) else {
            return;
        };
        let mut e = self.sessions.remove(i);
        if let Link::Hibernated(h) = &mut e.link
            && let Some(t) = h.timer.take()
        {
            ctx.cancel_future(t);
        }
        self.shared.gauges.unbound(e.hibernated());
        self.account();
        let mut leftovers: Vec<(u64, Element)> =
            e.sm.as_mut().map(SmState::drain).unwrap_or_default();
        leftovers.extend(e.spill.drain(..).map(|s| (0, s)));
        let ended = Ended {
            id: e.id,
            bare: self.bare.clone(),
            user: self.name.clone(),
            jid: e.jid.to_string(),
            was_available: e.presence.is_some(),
            sm: e.sm.take(),
            received,
        };
        let shared = self.shared.clone();
        self.in_flight += 1;
        ctx.spawn(
            ended
                .settle(leftovers, shared)
                .into_actor(self)
                .map(move |stored, act, ctx| {
                    act.in_flight -= 1;
                    // The module hears of the stored messages (keyed, D13), then of the
                    // end, so it still has this session's marks while it decides.
                    for (stanza, key) in stored {
                        act.push_event(Event::Offline { stanza, key }, ctx);
                    }
                    act.push_event(Event::Closed { session: id }, ctx);
                    act.after_store_request(ctx);
                }),
        );
        tracing::info!(jid = %e.jid, "session ended");
    }
}

/// What is left of an ended session.
struct Ended {
    id: SessionId,
    user: String,
    bare: String,
    jid: String,
    was_available: bool,
    sm: Option<SmState>,
    received: u32,
}

impl Ended {
    /// Stores, bounces or drops the leftovers; returns the messages stored offline, for
    /// the push module.
    async fn settle(
        mut self,
        leftovers: Vec<(u64, Element)>,
        shared: Shared,
    ) -> Vec<(Element, Option<StanzaKey>)> {
        let mut stored_offline = Vec::new();
        let mut to_store = Vec::new();
        for (seq, s) in leftovers {
            let kind = s.attr("type").unwrap_or("normal");
            let is_message = s.name() == "message";
            if is_message && matches!(kind, "chat" | "normal") {
                let key = (seq > 0).then_some(StanzaKey {
                    session: self.id,
                    seq,
                });
                to_store.push((s, key, self.stored_copy(seq)));
            } else if is_message && matches!(kind, "groupchat" | "headline") {
                // Neither is stored or bounced (RFC 6121 §8.5.2: a room re-sends history,
                // a headline is of the moment).
                tracing::debug!(
                    kind,
                    "unacked groupchat or headline dropped with the session"
                );
            } else if let Some(bounce) = stanza::error_reply(&s, "cancel", "recipient-unavailable")
            {
                shared.route.do_send(Route(bounce));
            } else {
                tracing::debug!("unacked error stanza dropped with the session");
            }
        }
        // Stored in chunks asked for at once, in order: they share the store's group
        // commits instead of waiting for an fsync each. A message's stored copy (D23) goes
        // in the same commit that stores it offline (or refuses it: it is then bounced).
        let mut unsettled = false;
        let live = shared.live.get();
        while !to_store.is_empty() {
            let rest = to_store.split_off(to_store.len().min(OFFLINE_CHUNK));
            let chunk = std::mem::replace(&mut to_store, rest);
            let requests = chunk.iter().map(|(s, _, release)| {
                shared.store.send(PushOffline {
                    user: self.user.clone(),
                    stanza: String::from(&stanza::delay_stamped(s, &shared.cfg.domain)),
                    max: live.offline_max_messages,
                    max_bytes: live.offline_max_bytes,
                    release: release.clone(),
                })
            });
            let results = futures::future::join_all(requests).await;
            for ((s, key, release), stored) in chunk.into_iter().zip(results) {
                let stored = stored.unwrap_or(Err(StoreError::Closed));
                unsettled |= release.is_some()
                    && matches!(&stored, Err(e) if !matches!(e, StoreError::Full | StoreError::NoSuchUser));
                stored_offline.extend(self.after_offline(s, key, stored, &shared));
            }
        }
        if unsettled && let Some(sm) = &mut self.sm {
            // A failed write left stored copies of messages that were bounced instead.
            sm.release_rest();
        }
        if let Some(sm) = &self.sm
            && !sm.id.is_empty()
        {
            shared.ended.do_send(EndedSession {
                user: self.user.clone(),
                id: sm.id.clone(),
                h: self.received,
            });
        }
        if self.was_available {
            let mut unavailable = Element::builder("presence", CLIENT_NS).build();
            stanza::set_attr(&mut unavailable, "type", "unavailable");
            stanza::set_attr(&mut unavailable, "from", &self.jid);
            presence::unavailable(
                &unavailable,
                &self.user,
                &self.bare,
                &shared.store,
                &shared.route,
            )
            .await;
        }
        stored_offline
    }

    /// Where the stanza `seq` of the session has a stored copy (D23), if it may have one.
    fn stored_copy(&self, seq: u64) -> Option<QueuedKey> {
        let sm = self.sm.as_ref()?;
        (seq > 0 && sm.is_stored(seq)).then(|| QueuedKey {
            session: sm.id.clone(),
            seq,
        })
    }

    /// What becomes of an unacked message offered to offline storage: stored (returned,
    /// for the push module to hear of it, keyed, D13), or bounced to its sender (D22).
    fn after_offline(
        &self,
        mut s: Element,
        key: Option<StanzaKey>,
        stored: Result<u64, StoreError>,
        shared: &Shared,
    ) -> Option<(Element, Option<StanzaKey>)> {
        match stored {
            Ok(_) => {
                // The bare JID, as a message to an absent resource is stored for the user.
                stanza::set_attr(&mut s, "to", &self.bare);
                Some((s, key))
            }
            Err(e) => {
                // D22: past offline storage's limit the sender learns it, like any full
                // store.
                let (kind, condition) = match e {
                    StoreError::Full => ("wait", "resource-constraint"),
                    StoreError::NoSuchUser => ("cancel", "service-unavailable"),
                    _ => ("wait", "internal-server-error"),
                };
                tracing::info!(error = %e, condition, "unacked message not stored offline: bounced");
                if let Some(b) = stanza::error_reply(&s, kind, condition) {
                    shared.route.do_send(Route(b));
                }
                None
            }
        }
    }
}
