//! Switches that make the writer fail on purpose.
//!
//! They exist so the "nothing is acknowledged before it is durable" and "a failed read
//! overwrites nothing" promises (D6) can be tested through the public interface. Both are
//! off unless a test turns them on; checking them costs two relaxed loads per batch.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct StoreFaults {
    fail_reads: AtomicBool,
    fail_writes: AtomicBool,
}

impl StoreFaults {
    /// Every read fails as if the disk returned an I/O error.
    pub fn set_fail_reads(&self, on: bool) {
        self.fail_reads.store(on, Ordering::Relaxed);
    }

    /// Every commit fails as if the disk were full.
    pub fn set_fail_writes(&self, on: bool) {
        self.fail_writes.store(on, Ordering::Relaxed);
    }

    pub(super) fn reads_fail(&self) -> bool {
        self.fail_reads.load(Ordering::Relaxed)
    }

    pub(super) fn writes_fail(&self) -> bool {
        self.fail_writes.load(Ordering::Relaxed)
    }
}
