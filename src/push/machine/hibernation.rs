//! The hibernation the module holds for a linked session (D14, §8.3): extended to
//! `push_max_hibernation_timeout`, cut back to the host's normal timeout after the first
//! important publish.

use std::time::Duration;

use super::clock::Clock;
use super::effect::Effect;
use super::event::Timer;
use super::link::Hibernation;
use super::state::PushMachine;
use crate::push::interface::{QueuedStanza, SessionId, TimerOwner};

impl PushMachine {
    pub(super) fn hibernated(
        &mut self,
        c: Clock,
        session: SessionId,
        normal_timeout: Duration,
        queue: &[QueuedStanza],
        out: &mut Vec<Effect>,
    ) -> TimerOwner {
        let Some(link) = self
            .sessions
            .get_mut(&session)
            .filter(|l| l.identifier.is_some())
        else {
            return TimerOwner::Host;
        };
        link.window.reset();
        link.hibernation = Some(Hibernation {
            normal_timeout,
            cut_back: false,
        });
        out.push(Effect::Arm {
            timer: Timer::Hibernation(session),
            at: c.now + self.cfg.push_max_hibernation_timeout,
        });
        tracing::debug!(user = %self.user, session = session.0, queued = queue.len(), "push-linked session hibernated: timeout extended");
        self.prune_marks(session, queue);
        self.publish_queue_at_hibernation(c, session, queue, out);
        TimerOwner::Module
    }

    /// Marks of stanzas older than the session's unacked queue can never be needed again.
    pub(super) fn prune_marks(&mut self, session: SessionId, queue: &[QueuedStanza]) {
        if let (Some(link), Some(oldest)) = (
            self.sessions.get_mut(&session),
            queue.iter().map(|q| q.key.seq).min(),
        ) {
            link.marks.prune_acked(oldest.saturating_sub(1));
        }
    }

    pub(super) fn resumed(&mut self, session: SessionId, acked: u64, out: &mut Vec<Effect>) {
        let Some(link) = self.sessions.get_mut(&session) else {
            return;
        };
        if link.hibernation.take().is_some() {
            out.push(Effect::Cancel(Timer::Hibernation(session)));
        }
        // D12: nothing of the old batch survives a resume.
        link.window.reset();
        link.marks.prune_acked(acked);
    }

    /// §8.3 step 4: the first important publish of a hibernation brings its end back to
    /// the normal timeout, counted from now.
    pub(super) fn cut_back(&mut self, c: Clock, session: SessionId, out: &mut Vec<Effect>) {
        let Some(h) = self
            .sessions
            .get_mut(&session)
            .and_then(|l| l.hibernation.as_mut())
        else {
            return;
        };
        if h.cut_back {
            return;
        }
        h.cut_back = true;
        out.push(Effect::Arm {
            timer: Timer::Hibernation(session),
            at: c.now + h.normal_timeout,
        });
    }

    /// D14: the held hibernation is over; the host destroys the session as at a normal
    /// timeout and then reports it closed.
    pub(super) fn expire(&mut self, session: SessionId, out: &mut Vec<Effect>) {
        let Some(link) = self.sessions.get_mut(&session) else {
            return;
        };
        if link.hibernation.take().is_none() {
            return;
        }
        tracing::debug!(user = %self.user, session = session.0, "hibernation over: session told to expire");
        out.push(Effect::Expire(session));
    }
}
