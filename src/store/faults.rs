//! Switches that make the store fail on purpose.
//!
//! They exist so the "nothing is acknowledged before it is durable" and "a failed read
//! overwrites nothing" promises (D6), and recovery from a full or failing disk, can be
//! tested through the public interface. All are off unless a test turns them on.
//!
//! `fail_reads`/`fail_writes` make the writer refuse a batch before redb sees it (two
//! relaxed loads per batch). `disk_full`/`io_errors` act one level lower, in
//! [`FaultyBackend`]: redb itself gets the `ENOSPC` or `EIO` from the file, exactly as
//! from a real disk, so its own reaction (it refuses every later write until the
//! database is reopened) is what the tests exercise. Only databases opened with
//! [`open_database_with_faults`](super::open_database_with_faults) have that backend;
//! the server's own file uses redb's plain `FileBackend`.

use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

#[derive(Debug, Default)]
pub struct StoreFaults {
    fail_reads: AtomicBool,
    fail_writes: AtomicBool,
    disk_full: AtomicBool,
    io_errors: AtomicBool,
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

    /// The file cannot grow: growing it, or writing past its end, fails with `ENOSPC`,
    /// while rewriting what it already holds succeeds, as on a full filesystem.
    pub fn set_disk_full(&self, on: bool) {
        self.disk_full.store(on, Ordering::Relaxed);
    }

    /// Every write, resize and sync fails with `EIO`, as on a failing card; reads work.
    pub fn set_io_errors(&self, on: bool) {
        self.io_errors.store(on, Ordering::Relaxed);
    }

    pub(super) fn reads_fail(&self) -> bool {
        self.fail_reads.load(Ordering::Relaxed)
    }

    pub(super) fn writes_fail(&self) -> bool {
        self.fail_writes.load(Ordering::Relaxed)
    }

    fn disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
    }

    fn io_errors(&self) -> bool {
        self.io_errors.load(Ordering::Relaxed)
    }
}

fn enospc() -> io::Error {
    // 28 is ENOSPC on every Unix this runs on; the kind alone would print differently.
    io::Error::from_raw_os_error(28)
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

/// redb's file backend with the `disk_full` and `io_errors` switches in front of it.
#[derive(Debug)]
pub(super) struct FaultyBackend {
    pub(super) inner: FileBackend,
    pub(super) faults: Arc<StoreFaults>,
}

impl FaultyBackend {
    fn check_growth(&self, end: u64) -> Result<(), io::Error> {
        if self.faults.io_errors() {
            return Err(eio());
        }
        if self.faults.disk_full() && end > self.inner.len()? {
            return Err(enospc());
        }
        Ok(())
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.check_growth(len)?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        if self.faults.io_errors() {
            return Err(eio());
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.check_growth(offset.saturating_add(data.len() as u64))?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    // The locks are the file's: a second open of the same file must still be refused.
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
