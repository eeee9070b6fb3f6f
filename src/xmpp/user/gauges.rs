//! Session counts and memory figures for `status` and the metrics endpoint, kept as
//! sessions change, so that reading them walks over no user.

use std::sync::atomic::{AtomicU64, Ordering};

use super::footprint::Footprint;

#[derive(Debug, Default)]
pub struct Gauges {
    connected: AtomicU64,
    hibernated: AtomicU64,
    /// Stanzas in sessions' channels, not yet taken by their tasks.
    queued: AtomicU64,
    /// The user actors' footprints, summed (bytes).
    memory_sessions: AtomicU64,
    memory_queues: AtomicU64,
    memory_registrations: AtomicU64,
}

impl Gauges {
    pub fn bound(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
    }

    /// A session ended, with or without a connection.
    pub fn unbound(&self, hibernated: bool) {
        let g = if hibernated {
            &self.hibernated
        } else {
            &self.connected
        };
        let _ = g.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// A session lost its connection (`true`) or was resumed (`false`).
    pub fn hibernated(&self, now: bool) {
        let (from, to) = if now {
            (&self.connected, &self.hibernated)
        } else {
            (&self.hibernated, &self.connected)
        };
        let _ = from.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        to.fetch_add(1, Ordering::Relaxed);
    }

    pub fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// A session's task took a stanza from its channel.
    pub fn taken(&self) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// A user actor's share of the memory figures went from `old` to `new`.
    pub fn footprint(&self, old: Footprint, new: Footprint) {
        for (g, old, new) in [
            (&self.memory_sessions, old.sessions, new.sessions),
            (&self.memory_queues, old.queues, new.queues),
            (
                &self.memory_registrations,
                old.registrations,
                new.registrations,
            ),
        ] {
            if new >= old {
                g.fetch_add(new - old, Ordering::Relaxed);
            } else {
                let _ = g.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(old - new))
                });
            }
        }
    }

    /// The sum of every user actor's footprint.
    pub fn memory(&self) -> Footprint {
        Footprint {
            sessions: self.memory_sessions.load(Ordering::Relaxed),
            queues: self.memory_queues.load(Ordering::Relaxed),
            registrations: self.memory_registrations.load(Ordering::Relaxed),
        }
    }

    /// (connected, hibernated, queued)
    pub fn read(&self) -> (u64, u64, u64) {
        (
            self.connected.load(Ordering::Relaxed),
            self.hibernated.load(Ordering::Relaxed),
            self.queued.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_move_between_connected_and_hibernated() {
        let g = Gauges::default();
        g.bound();
        g.bound();
        g.hibernated(true);
        assert_eq!(g.read(), (1, 1, 0));
        g.hibernated(false);
        g.unbound(false);
        assert_eq!(g.read(), (1, 0, 0));
        g.hibernated(true);
        g.unbound(true);
        assert_eq!(g.read(), (0, 0, 0));
        // Never below zero, whatever the order of events.
        g.unbound(true);
        g.taken();
        assert_eq!(g.read(), (0, 0, 0));
    }

    #[test]
    fn footprints_add_their_changes_and_leave_nothing_when_taken_back() {
        let g = Gauges::default();
        let a = Footprint {
            sessions: 300,
            queues: 1000,
            registrations: 200,
        };
        let b = Footprint {
            sessions: 300,
            queues: 400,
            registrations: 0,
        };
        g.footprint(Footprint::default(), a);
        g.footprint(Footprint::default(), b);
        assert_eq!(
            g.memory(),
            Footprint {
                sessions: 600,
                queues: 1400,
                registrations: 200,
            }
        );
        g.footprint(
            a,
            Footprint {
                sessions: 300,
                queues: 0,
                registrations: 0,
            },
        );
        assert_eq!(
            g.memory(),
            Footprint {
                sessions: 600,
                queues: 400,
                registrations: 0,
            }
        );
        g.footprint(
            Footprint {
                sessions: 300,
                queues: 0,
                registrations: 0,
            },
            Footprint::default(),
        );
        g.footprint(b, Footprint::default());
        assert_eq!(g.memory(), Footprint::default());
        // Never below zero.
        g.footprint(b, Footprint::default());
        assert_eq!(g.memory(), Footprint::default());
    }
}
