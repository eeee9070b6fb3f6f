//! `archive_expires_after`: what is older leaves the archive, checked on a period.
//!
//! Each round is one store write that reads only the expired rows (the archive's
//! time-ordered index), never a rewrite of the archive. The round is durable: one fsync
//! a period (hourly at the default) also makes the archive writes before it durable,
//! which redb needs before it can reuse the pages they freed.

use std::time::Duration;

use actix::Addr;

use super::clock;
use crate::store::{Change, Store, Write};

/// How often expiry runs for a retention of `keep`: a tenth of it, between a second and
/// an hour (a message outlives its retention by at most that).
pub fn period(keep: Duration) -> Duration {
    (keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// The archive ids (times) older than `keep` at `now_us`.
pub fn cutoff(now_us: u64, keep: Duration) -> u64 {
    now_us.saturating_sub(u64::try_from(keep.as_micros()).unwrap_or(u64::MAX))
}

/// Runs expiry now and then every [`period`], for as long as the actix system runs.
pub fn start(store: Addr<Store>, keep: Duration) {
    actix::spawn(async move {
        let mut tick = tokio::time::interval(period(keep));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let before = cutoff(clock::now_us(), keep);
            let write = Write {
                changes: vec![Change::ExpireArchive { before }],
                durable: true,
            };
            match store.send(write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "archive expiry failed; retried next round")
                }
                Err(_) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_a_tenth_of_the_retention_within_bounds() {
        assert_eq!(
            period(Duration::from_secs(7 * 86_400)),
            Duration::from_secs(3600)
        );
        assert_eq!(period(Duration::from_secs(600)), Duration::from_secs(60));
        assert_eq!(period(Duration::from_secs(2)), Duration::from_secs(1));
    }

    #[test]
    fn the_cutoff_is_the_retention_before_now() {
        assert_eq!(cutoff(10_000_000, Duration::from_secs(3)), 7_000_000);
        assert_eq!(cutoff(1, Duration::from_secs(3)), 0);
    }
}
