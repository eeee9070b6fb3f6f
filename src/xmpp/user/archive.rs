//! A message for this user goes into their archive (XEP-0313) as it arrives, named with
//! its stanza-id (XEP-0359) in every copy delivered.
//!
//! The push module hears of it (the archive path, §8.7) only while the user has an
//! online session, where the message is delivered live and has no other stored copy:
//! then the archive copy is written durably first (sharing the group commit), because a
//! phone woken by a push catches up from the archive, and a wake-up is never for a
//! message a crash could still lose. Without an online session the message goes to a
//! hibernated session's queue or to offline storage, whose own durable commits wake the
//! phones; its archive copy then rides the next durable commit, at no fsync of its own.
//!
//! Every archive write first takes a place at the archive gate (`store_max_pending`
//! places, see `store::ArchiveGate`); with none free the actor waits for one and takes
//! no further stanza meanwhile, so a store that falls behind slows the senders instead
//! of losing messages or holding ever more of them.
//!
//! A message the archive preferences keep out is delivered without a stanza-id of
//! ours: the actor holds the preferences (read when it starts, set through it) and, for
//! the `roster` default, the roster's JIDs, so it knows what the store will keep.

use actix::prelude::*;
use xmpp_parsers::minidom::Element;

use super::super::mam::{archiving, clock};
use super::committed::Committed;
use super::record::Link;
use super::state::User;
use crate::push::machine::Event;
use crate::store::archive::ArchivePrefs;
use crate::store::{
    Archive, ArchivePermit, Change, LoadArchivePrefs, LoadRoster, StoreError, Write,
};

impl User {
    /// Archives `stanza` when it is archived at all; gives back what is delivered.
    pub(super) fn archive_incoming(&mut self, stanza: Element, ctx: &mut Context<Self>) -> Element {
        if stanza.name() != "message" {
            return stanza;
        }
        let peer = stanza.attr("from").unwrap_or_default().to_string();
        // A stanza-id of ours only on what the archive will hold (XEP-0359 §6).
        if !archiving::archivable(&stanza) || !self.archive_filter.archives(&peer) {
            return archiving::without_stanza_id(stanza, &self.bare);
        }
        let id = clock::next_id();
        let stamped = archiving::with_stanza_id(&stanza, &self.bare, id);
        let change = archiving::change(
            &self.name,
            &peer,
            false,
            &stamped,
            id,
            self.shared.cfg.archive_max_messages_per_user,
        );
        let online = self
            .sessions
            .iter()
            .any(|e| e.available() && matches!(e.link, Link::Connected(_)));
        // Read now, when the message is delivered: the presence it met decides.
        let pushed = online.then(|| (stamped.clone(), self.all_online_away()));
        self.with_archive_room(ctx, move |act, permit, _| {
            act.archive(change, permit, pushed)
        });
        stamped
    }

    /// Runs `then` with a place at the archive gate: at once when one is free.
    /// Otherwise the store is `store_max_pending` archive writes behind, and this actor
    /// takes no further stanza until a place is given back: the message is archived
    /// all the same, and a sender flooding this user meets the mailbox's bound (its
    /// stanzas bounce `resource-constraint`) instead of an archive with holes.
    fn with_archive_room(
        &mut self,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, ArchivePermit, &mut Context<Self>) + 'static,
    ) {
        if let Some(permit) = self.shared.archive_gate.try_enter() {
            then(self, permit, ctx);
            return;
        }
        tracing::debug!(user = %self.name, "archive writes at store_max_pending: waiting for room");
        let gate = self.shared.archive_gate.clone();
        self.in_flight += 1;
        ctx.wait(async move { gate.enter().await }.into_actor(self).map(
            move |permit, act, ctx| {
                act.in_flight -= 1;
                match permit {
                    Some(permit) => then(act, permit, ctx),
                    None => tracing::error!(
                        user = %act.name,
                        "the archive gate is closed: a message not archived"
                    ),
                }
                act.after_store_request(ctx);
            },
        ));
    }

    /// Hands one archive change to the store. With `pushed` (an online session took the
    /// message) the write is durable and the push module hears of the message once it
    /// is committed ([`Committed`]); otherwise it rides the next durable commit.
    fn archive(&mut self, change: Change, permit: ArchivePermit, pushed: Option<(Element, bool)>) {
        let Some((stanza, all_away)) = pushed else {
            archiving::save(&self.shared.store, &self.name, change, permit);
            return;
        };
        let write = self.shared.store.send(Archive {
            change,
            durable: true,
            permit,
        });
        // The answer comes back on the actor's own stream of them (`committed`), not as
        // a future spawned in its context: actix polls every such future at each
        // wake-up, and a burst holds up to `store_max_pending` of them, which made each
        // message cost more than the one before. Nor through the mailbox, whose bound
        // is the router's to fill.
        let tx = self.committed.clone();
        self.in_flight += 1;
        actix::spawn(async move {
            let result = write.await.unwrap_or(Err(StoreError::Closed));
            let _ = tx.send(Committed {
                result,
                stanza,
                all_away,
            });
        });
    }

    /// Takes the store's answers to durable archive writes from now on.
    pub(super) fn read_committed(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(self.committed_rx.clone().into_stream());
    }

    /// Acts on the answers that came meanwhile. Called for each stanza the router
    /// brings: actix empties an actor's mailbox before it polls the actor's streams, so
    /// under a steady flood the stream alone would hold every answer (and its stanza)
    /// until the flood ends, more the longer it lasts.
    pub(super) fn take_committed(&mut self, ctx: &mut Context<Self>) {
        while let Ok(answer) = self.committed_rx.try_recv() {
            self.committed(answer, ctx);
        }
    }

    fn committed(&mut self, msg: Committed, ctx: &mut Context<Self>) {
        self.in_flight -= 1;
        match msg.result {
            Ok(()) => self.push_event(
                Event::Archived {
                    stanza: msg.stanza,
                    user_has_sessions: true,
                    all_away: msg.all_away,
                },
                ctx,
            ),
            Err(e) => {
                tracing::warn!(user = %self.name, error = %e, "message not archived: no archive push")
            }
        }
        self.after_store_request(ctx);
    }
}

impl StreamHandler<Committed> for User {
    fn handle(&mut self, msg: Committed, ctx: &mut Context<Self>) {
        self.committed(msg, ctx);
    }

    /// The actor holds the sending end, so the stream ends only with the actor.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

/// A message one of the user's sessions sent went into the archive (outgoing): the push
/// module hears of it, as its own outgoing messages never wake the user's phones (D15)
/// but a call answered here stops the other devices ringing (D17).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SentArchived {
    pub stanza: Element,
}

impl Handler<SentArchived> for User {
    type Result = ();

    fn handle(&mut self, msg: SentArchived, ctx: &mut Context<Self>) {
        self.push_event(
            Event::Archived {
                stanza: msg.stanza,
                user_has_sessions: true,
                // The user's own outgoing message never wakes their own phones (D15);
                // only a call signal goes out, and to every registration anyway.
                all_away: false,
            },
            ctx,
        );
    }
}

impl User {
    /// Reads the archive preferences (and the roster, when they need it) before any
    /// message is decided: every other message waits until then.
    pub(super) fn read_archive_prefs(&mut self, ctx: &mut Context<Self>) {
        let load = self.shared.store.send(LoadArchivePrefs {
            user: self.name.clone(),
        });
        ctx.wait(load.into_actor(self).map(|res, act, ctx| match res {
            Ok(Ok(prefs)) => {
                if act.archive_filter.set_prefs(prefs) {
                    act.read_roster_for_archive(ctx);
                }
            }
            // The store still applies them at each write; only the stamp may then be
            // on a message it keeps out.
            _ => tracing::error!(user = %act.name, "cannot read the archive preferences"),
        }));
    }

    fn read_roster_for_archive(&mut self, ctx: &mut Context<Self>) {
        let load = self.shared.store.send(LoadRoster {
            user: self.name.clone(),
        });
        ctx.wait(load.into_actor(self).map(|res, act, _| match res {
            Ok(Ok(rows)) => act
                .archive_filter
                .set_roster(rows.into_iter().map(|(jid, _)| jid)),
            _ => tracing::error!(user = %act.name, "cannot read the roster for the archive preferences"),
        }));
    }
}

/// A session sets the user's archive preferences (XEP-0441): they go to the store
/// through this actor, in order with its archive writes, so the actor's copy and the
/// store agree on every message. Answers whether they are stored (durably).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct SetArchivePrefs {
    pub prefs: ArchivePrefs,
}

impl Handler<SetArchivePrefs> for User {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: SetArchivePrefs, ctx: &mut Context<Self>) -> Self::Result {
        if self.archive_filter.set_prefs(Some(msg.prefs.clone())) {
            self.read_roster_for_archive(ctx);
        }
        let write = self.shared.store.send(Write {
            changes: vec![Change::PutArchivePrefs {
                user: self.name.clone(),
                prefs: msg.prefs,
            }],
            durable: true,
        });
        self.in_flight += 1;
        Box::pin(write.into_actor(self).map(|res, act, ctx| {
            act.in_flight -= 1;
            let ok = matches!(res, Ok(Ok(())));
            if !ok {
                // The store may hold the old ones: read back what it holds.
                tracing::error!(user = %act.name, "archive preferences not stored");
                act.read_archive_prefs(ctx);
            }
            act.after_store_request(ctx);
            ok
        }))
    }
}
