//! Room for archive writes waiting for a commit: `store_max_pending` of them.
//!
//! An archive write is never refused: a message accepted for archiving is archived.
//! Instead a writer first takes a place at the gate, and waits for one when all are
//! taken, so the one who produces messages faster than the disk commits them is the one
//! held back: a client's stream is read no further (its own outgoing copy waits), a
//! user actor takes no further stanza from its mailbox (its bound then bounces them,
//! `resource-constraint`). The place travels with the write ([`Archive`]) and is given
//! back with the store's answer, once the write is committed, so the writes the store
//! holds (waiting for a commit or in one) are never more than the gate's room, whoever
//! sends them. That also bounds the memory a burst costs: without it a store slower
//! than the senders held every message not yet committed, more the longer it ran.
//!
//! [`Archive`]: super::Archive

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The gate; clones share the same room.
#[derive(Clone, Debug)]
pub struct ArchiveGate {
    room: Arc<Semaphore>,
    /// Writers that found no place and waited (the metrics' `archive_waits`).
    waits: Counter,
}

/// One place at the gate, held by an archive write until the store answers it.
#[derive(Debug)]
pub struct ArchivePermit {
    _place: OwnedSemaphorePermit,
}

impl ArchiveGate {
    /// Room for `room` writes (at least one, or nothing could ever be archived).
    pub fn new(room: usize) -> Self {
        ArchiveGate {
            room: Arc::new(Semaphore::new(room.clamp(1, Semaphore::MAX_PERMITS))),
            waits: Counter::default(),
        }
    }

    /// Counts the writers that wait into `waits`.
    pub fn counting(self, waits: Counter) -> Self {
        ArchiveGate { waits, ..self }
    }

    /// A place now, or `None` when every place is taken.
    pub fn try_enter(&self) -> Option<ArchivePermit> {
        self.room
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|_place| ArchivePermit { _place })
    }

    /// A place, once one is given back. `None` only if the gate were closed, which
    /// nothing does; the caller then archives nothing and says so.
    pub async fn enter(&self) -> Option<ArchivePermit> {
        if let Some(permit) = self.try_enter() {
            return Some(permit);
        }
        self.waits.inc();
        self.room
            .clone()
            .acquire_owned()
            .await
            .ok()
            .map(|_place| ArchivePermit { _place })
    }

    /// Places free now (metrics, tests).
    pub fn free(&self) -> usize {
        self.room.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_writer_past_the_room_waits_until_a_place_is_given_back() {
        let gate = ArchiveGate::new(2);
        let a = gate.try_enter().expect("first place");
        let _b = gate.try_enter().expect("second place");
        assert!(gate.try_enter().is_none(), "a third place in a room of two");
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await.is_some() }
        });
        // On this single-threaded runtime the waiter has run up to its wait once we
        // yield; the count checked at the end is what proves it waited (`enter` counts
        // only a writer that found no place).
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "entered while the room was full");
        drop(a);
        assert!(
            waiting.await.expect("the waiter"),
            "no place after one was given back"
        );
        assert_eq!(gate.waits.get(), 1, "the wait was not counted");
    }

    #[test]
    fn a_room_of_zero_still_lets_one_write_through() {
        let gate = ArchiveGate::new(0);
        let place = gate.try_enter();
        assert!(place.is_some());
        assert_eq!(gate.free(), 0);
    }
}
