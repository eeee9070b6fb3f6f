//! When a user actor stops. It has no state worth keeping once it has no session and no
//! store request in flight, but it may only stop when the router sends it nothing more:
//! a stanza sent to a stopped actor would be lost.
//!
//! The agreement: the actor counts the messages the router sent it; when idle, it
//! reports that count ([`UserIdle`]). The router compares it with its own count of
//! messages sent: equal means none is on its way, so it forgets the actor and sends it
//! [`StopIfIdle`], the last message it will ever send it. Unequal means one is on its
//! way; the actor reports again after handling it.

use actix::prelude::*;

use super::state::User;
use super::to_router::{StopIfIdle, UserIdle};

impl User {
    /// Counts a message from the router (before handling it).
    pub(super) fn count_router_message(&mut self, ctx: &mut Context<Self>) {
        self.from_router += 1;
        self.idle_reported = false;
        // Busy again: the linger starts over when it is next idle.
        if let Some(t) = self.linger.take() {
            ctx.cancel_future(t);
        }
    }

    fn is_idle(&self) -> bool {
        self.sessions.is_empty()
            && self.in_flight == 0
            && (self.stopping || self.push.machine().is_idle())
    }

    /// Called after every change that can leave the actor idle. An idle actor lingers
    /// for `push_user_idle_time` before it reports (at once when the server stops), so
    /// a user who is sent messages now and then is not loaded again for each.
    pub(super) fn report_if_idle(&mut self, ctx: &mut Context<Self>) {
        if !self.is_idle() || self.idle_reported || self.detached {
            return;
        }
        if self.stopping {
            self.report_idle();
        } else if self.linger.is_none() {
            let linger = self.shared.live.get().push_user_idle_time;
            self.linger = Some(ctx.run_later(linger, |act, _| {
                act.linger = None;
                if act.is_idle() && !act.idle_reported && !act.detached {
                    act.report_idle();
                }
            }));
        }
    }

    fn report_idle(&mut self) {
        self.idle_reported = true;
        // The push ledger (last successes, error counts) goes to the store before the
        // router hears of idleness, so it is queued there ahead of the store's `Close`
        // at shutdown, which waits for every user actor to be forgotten.
        self.push.flush_ledger();
        self.shared.idle.do_send(UserIdle {
            user: self.name.clone(),
            generation: self.generation,
            seen: self.from_router,
        });
    }

    /// Stops a detached actor once its last store request is answered.
    pub(super) fn stop_if_detached(&mut self, ctx: &mut Context<Self>) {
        if self.detached && self.is_idle() {
            ctx.stop();
        }
    }
}

impl Handler<StopIfIdle> for User {
    type Result = ();

    fn handle(&mut self, _: StopIfIdle, ctx: &mut Context<Self>) {
        // The router sends nothing after this; whatever is still in flight (nothing,
        // by the agreement) finishes first.
        self.detached = true;
        self.stop_if_detached(ctx);
    }
}
