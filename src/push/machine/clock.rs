//! The time a host hands the machine with every event. The machine never reads a clock
//! of its own, so a test can step time by hand and a paused runtime stays paused.

use std::time::{Duration, Instant};

/// "Now", as the host sees it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Monotonic time: deadlines of timers and D20 windows, publish round trips.
    pub now: Instant,
    /// Wall-clock microseconds since the Unix epoch: what the store records (enable
    /// order, the health ledger, the removal log).
    pub wall_us: u64,
}

impl Clock {
    /// Wall-clock seconds, the ledger's unit.
    pub fn wall_secs(&self) -> u64 {
        self.wall_us / 1_000_000
    }

    /// This clock moved on by `d` on both scales (for tests and simulations).
    pub fn advanced(self, d: Duration) -> Clock {
        Clock {
            now: self.now + d,
            wall_us: self.wall_us + d.as_micros() as u64,
        }
    }
}
