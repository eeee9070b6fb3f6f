//! The push machine's timers for one user, kept as deadlines behind one real timer: a
//! user with two hibernated sessions and a few publishes in flight has one timer armed
//! on the runtime, for the earliest deadline, not one each (each costs a few hundred
//! bytes on the runtime, per hibernated session, for the life of the hibernation).

use std::time::Instant;

use super::machine::Timer;

/// Deadlines by timer name. A handful per user (`MAX_LINKED_SESSIONS` hibernations,
/// `push_max_pending_publishes` answers at most), so a vector is the smallest map.
#[derive(Debug, Default)]
pub struct Deadlines {
    due: Vec<(Timer, Instant)>,
}

impl Deadlines {
    /// Sets `timer` to fire at `at`, replacing its earlier deadline.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        match self.due.iter_mut().find(|(t, _)| *t == timer) {
            Some(entry) => entry.1 = at,
            None => self.due.push((timer, at)),
        }
    }

    /// Forgets `timer`; it never fires.
    pub fn cancel(&mut self, timer: &Timer) {
        self.due.retain(|(t, _)| t != timer);
    }

    /// When the next timer is due.
    pub fn earliest(&self) -> Option<Instant> {
        self.due.iter().map(|(_, at)| *at).min()
    }

    /// Removes and returns the timers due at `now`, earliest first (in the order they
    /// were set when due at the same instant).
    pub fn take_due(&mut self, now: Instant) -> Vec<Timer> {
        let mut fired: Vec<(Timer, Instant)> = Vec::new();
        self.due.retain(|(t, at)| {
            if *at <= now {
                fired.push((t.clone(), *at));
                false
            } else {
                true
            }
        });
        fired.sort_by_key(|(_, at)| *at);
        if self.due.is_empty() {
            // A burst of publishes grew it; give the memory back once all are over.
            self.due = Vec::new();
        }
        fired.into_iter().map(|(t, _)| t).collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.due.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::push::SessionId;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn fires_due_timers_in_deadline_order_and_keeps_the_rest() {
        let now = t0();
        let mut d = Deadlines::default();
        d.set(
            Timer::Hibernation(SessionId(1)),
            now + Duration::from_secs(30),
        );
        d.set(Timer::Response("a".into()), now + Duration::from_secs(10));
        d.set(
            Timer::Hibernation(SessionId(2)),
            now + Duration::from_secs(20),
        );
        assert_eq!(d.earliest(), Some(now + Duration::from_secs(10)));
        let fired = d.take_due(now + Duration::from_secs(25));
        assert_eq!(
            fired,
            [
                Timer::Response("a".into()),
                Timer::Hibernation(SessionId(2))
            ]
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d.earliest(), Some(now + Duration::from_secs(30)));
    }

    #[test]
    fn setting_again_moves_the_deadline_and_cancel_forgets_it() {
        let now = t0();
        let mut d = Deadlines::default();
        let h = Timer::Hibernation(SessionId(1));
        d.set(h.clone(), now + Duration::from_secs(5));
        d.set(h.clone(), now + Duration::from_secs(50));
        assert_eq!(d.len(), 1);
        assert!(d.take_due(now + Duration::from_secs(10)).is_empty());
        d.cancel(&h);
        assert!(d.is_empty());
        assert_eq!(d.earliest(), None);
        assert!(d.take_due(now + Duration::from_secs(100)).is_empty());
    }
}
