//! How long a test waits for an event before it fails.
//!
//! Under qemu (`CLOUD_NOTIFY_TEST_RUNNER`, set by `cross/test.sh`) the debug build runs
//! 5-20 times slower than natively, and the test client shares the emulated CPU with the
//! server, so a wait sized for a native run ends before a busy emulated server answers
//! (seen: a login behind a 1,000-message burst took more than 10 s under aarch64
//! emulation with the other tests running). There every wait is six times longer. A
//! longer wait only delays a failure: no test passes because of it.

use std::time::Duration;

/// Whether the tests run for another architecture, under qemu.
pub fn emulated() -> bool {
    std::env::var("CLOUD_NOTIFY_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty())
}

/// `native`, or six times it under emulation.
pub fn wait(native: Duration) -> Duration {
    if emulated() { native * 6 } else { native }
}

/// The wait for one expected element or text: 10 s natively.
pub fn deadline() -> Duration {
    wait(Duration::from_secs(10))
}
