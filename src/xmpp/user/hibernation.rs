//! A session without a connection (XEP-0198 hibernation): a record in its user actor,
//! no task. Stanzas for it queue up in its unacked queue until it is resumed or its
//! timeout ends it (the push module's, for push-linked sessions, D14).
//!
//! D23: every chat or normal message waiting here has a stored copy, so a crash loses
//! none of them (the next start moves the copies to offline storage). The copies are
//! ordinary durable writes asked for as the messages arrive, so a burst shares the
//! store's group commits. The push module hears of a message only once its copy is
//! stored: a phone is never woken for a message a crash could still lose.

use std::collections::VecDeque;
use std::time::Instant;

use actix::prelude::*;
use xmpp_parsers::minidom::Element;

use super::super::stanza;
use super::record::{EndKind, Entry, Hibernation, Link, Pending};
use super::state::{Shared, User};
use super::stream::queued;
use crate::push::machine::Event;
use crate::push::{PushExecutor, QueuedStanza, SessionId, StanzaKey, TimerOwner};
use crate::store::{Change, Write};

/// Whether offline storage takes this stanza when its session ends (see `end`): only
/// those get a stored copy while they wait (D23). Other stanzas are bounced or dropped
/// at the session's end, which after a crash has happened already.
fn kept_offline(s: &Element) -> bool {
    s.name() == "message" && matches!(s.attr("type").unwrap_or("normal"), "chat" | "normal")
}

impl User {
    /// The connection of session `i` is gone and it can be resumed.
    pub(super) fn hibernate(&mut self, i: usize, received: u32, ctx: &mut Context<Self>) {
        self.next_conn += 1;
        let epoch = self.next_conn;
        let e = &mut self.sessions[i];
        let id = e.id;
        let unacked = e.sm.as_ref().map(|sm| queued(sm, id)).unwrap_or_default();
        e.link = Link::Hibernated(Box::new(Hibernation {
            since: Instant::now(),
            received,
            epoch,
            owner: None,
            timer: None,
            announced: false,
            pending: VecDeque::new(),
        }));
        self.shared.gauges.hibernated(true);
        // What the connection left unacknowledged, stored in one write before the
        // module may publish for it.
        let write = keep_queued(
            &self.shared,
            &self.name,
            e,
            unacked.iter().map(|q| (q.key.seq, &q.stanza)),
        );
        self.in_flight += 1;
        let queue = unacked;
        match write {
            Some(w) => {
                ctx.spawn(w.into_actor(self).map(move |(), act, ctx| {
                    act.announce(id, epoch, queue, ctx);
                }));
            }
            None => self.announce(id, epoch, queue, ctx),
        }
        self.account();
    }

    /// Tells the push module of the hibernation once the unacked messages' copies are
    /// stored, unless it ended meanwhile (a resumption before the store answered: the
    /// module must not hold, nor push for, a session that is back). Its answer says who
    /// ends the hibernation: the module (for a push-linked session, D14) or the host's
    /// normal timeout.
    fn announce(
        &mut self,
        id: SessionId,
        epoch: u64,
        queue: Vec<QueuedStanza>,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight -= 1;
        if self.hibernation_mut(id, epoch).is_some() {
            let normal = self.shared.cfg.smacks_hibernation_time;
            let owner = PushExecutor::hibernated(self, id, normal, queue, ctx);
            // Looked up again: feeding the machine took the whole actor.
            if let Some(h) = self.hibernation_mut(id, epoch) {
                tracing::info!(?owner, "connection lost: session hibernated");
                h.owner = Some(owner);
                h.announced = true;
                if owner == TimerOwner::Host {
                    h.timer = Some(ctx.run_later(normal, move |act, ctx| {
                        if act.hibernation_mut(id, epoch).is_some() {
                            tracing::info!("hibernation timed out");
                            act.end_session(id, EndKind::Timeout, ctx);
                            act.report_if_idle(ctx);
                        }
                    }));
                }
                self.flush_pending(id, ctx);
            }
        }
        self.after_store_request(ctx);
    }

    fn hibernation_mut(&mut self, id: SessionId, epoch: u64) -> Option<&mut Hibernation> {
        match &mut self.entry_mut(id)?.link {
            Link::Hibernated(h) if h.epoch == epoch => Some(h),
            _ => None,
        }
    }

    /// The push module ended the hibernation it held (D14); ignored when the session
    /// was resumed meanwhile, or is the host's to end.
    pub(super) fn module_expired(&mut self, id: SessionId, ctx: &mut Context<Self>) {
        let held = self.entry_mut(id).is_some_and(
            |e| matches!(&e.link, Link::Hibernated(h) if h.owner == Some(TimerOwner::Module)),
        );
        if held {
            tracing::info!("hibernation ended by the push module");
            self.end_session(id, EndKind::Timeout, ctx);
            self.report_if_idle(ctx);
        }
    }

    /// A stanza for the hibernated session `i`: into its unacked queue, with a stored
    /// copy when it is a message offline storage would keep (D23).
    pub(super) fn queue_hibernated(
        &mut self,
        i: usize,
        stanza: Element,
        ctx: &mut Context<Self>,
    ) -> Result<(), Element> {
        let e = &mut self.sessions[i];
        let id = e.id;
        let Some(sm) = &mut e.sm else {
            return Err(stanza);
        };
        let Some(seq) = sm.on_sent(&stanza) else {
            tracing::info!(user = %self.name, "smacks_max_queue_size reached while hibernated: session ends");
            e.spill.push(stanza);
            self.end_session(id, EndKind::QueueFull, ctx);
            self.account();
            return Ok(());
        };
        let write = keep_queued(&self.shared, &self.name, e, [(seq, &stanza)]);
        let Link::Hibernated(h) = &mut e.link else {
            return Ok(());
        };
        let epoch = h.epoch;
        h.pending.push_back(Pending {
            stored: write.is_none(),
            stanza: QueuedStanza {
                key: StanzaKey { session: id, seq },
                stanza,
            },
        });
        match write {
            Some(w) => {
                self.in_flight += 1;
                ctx.spawn(w.into_actor(self).map(move |(), act, ctx| {
                    act.in_flight -= 1;
                    if let Some(h) = act.hibernation_mut(id, epoch)
                        && let Some(p) = h.pending.iter_mut().find(|p| p.stanza.key.seq == seq)
                    {
                        p.stored = true;
                    }
                    act.flush_pending(id, ctx);
                    act.after_store_request(ctx);
                }));
            }
            None => self.flush_pending(id, ctx),
        }
        self.account();
        Ok(())
    }

    /// Tells the push module of the queued stanzas whose copies are stored, in order.
    pub(super) fn flush_pending(&mut self, id: SessionId, ctx: &mut Context<Self>) {
        let Some(Link::Hibernated(h)) = self.entry_mut(id).map(|e| &mut e.link) else {
            return;
        };
        if !h.announced {
            return;
        }
        let mut ready = Vec::new();
        while h.pending.front().is_some_and(|p| p.stored) {
            if let Some(p) = h.pending.pop_front() {
                ready.push(p.stanza);
            }
        }
        for stanza in ready {
            self.push_event(Event::StanzaQueued(stanza), ctx);
        }
        self.account();
    }
}

/// The answer to a write of stored copies, logged when it failed.
type Written = futures::future::LocalBoxFuture<'static, ()>;

/// D23: asks the store, at once and in one durable write, to keep copies of the queued
/// messages among `stanzas` (delay-stamped, as offline storage keeps them), and returns
/// the wait for its answer. The copies go as the client acknowledges them, or as the
/// session ends. Their deletion is durable too, though nobody waits for it: it costs a
/// commit per acknowledgement that lets copies go (about one per resumption), shared
/// with whatever else commits then, and it keeps a crash from bringing back, as offline
/// messages, what the client had acknowledged (a duplicate remains possible in the time
/// of that commit).
fn keep_queued<'a>(
    shared: &Shared,
    user: &str,
    e: &mut Entry,
    stanzas: impl IntoIterator<Item = (u64, &'a Element)>,
) -> Option<Written> {
    let sm = e.sm.as_mut()?;
    let mut through = 0;
    let changes: Vec<Change> = stanzas
        .into_iter()
        .filter(|(_, s)| kept_offline(s))
        .map(|(seq, s)| {
            through = through.max(seq);
            Change::PutQueued {
                user: user.to_string(),
                session: sm.id.clone(),
                seq,
                stanza: String::from(&stanza::delay_stamped(s, &shared.cfg.domain)),
            }
        })
        .collect();
    if changes.is_empty() {
        return None;
    }
    let (store, owner, session) = (shared.store.clone(), user.to_string(), sm.id.clone());
    sm.stored_through(through, move || {
        Box::new(move |up_to| {
            store.do_send(Write {
                changes: vec![Change::DeleteQueued {
                    user: owner.clone(),
                    session: session.clone(),
                    up_to,
                }],
                durable: true,
            });
        })
    });
    // Through a clone of the address: a clone is never parked, so the request joins the
    // store's queue now, behind everything asked before it, even past the mailbox's soft
    // capacity (the store's own bound, `store_max_pending`, still holds).
    let write = shared.store.clone().send(Write {
        changes,
        durable: true,
    });
    Some(Box::pin(async move {
        match write.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "queued message not stored: a crash would lose it")
            }
            Err(_) => tracing::error!("store gone: a queued message was not stored"),
        }
    }))
}
