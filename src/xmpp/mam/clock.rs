//! Archive ids: microseconds since the epoch, unique across the process.
//!
//! One number both orders a user's archive by time and names a message (its stanza-id),
//! so the host hands them out, before delivery: the id is in the delivered copy without
//! waiting for the store.

use std::sync::atomic::{AtomicU64, Ordering};

static LAST: AtomicU64 = AtomicU64::new(0);

/// The next id: now, or one past the last id when the clock has not moved on (or went
/// back), so ids never repeat within a process.
pub fn next_id() -> u64 {
    let now = now_us();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

pub fn now_us() -> u64 {
    let now = chrono::Utc::now();
    u64::try_from(now.timestamp_micros()).unwrap_or(0)
}

/// An id as a XEP-0082 timestamp, for the `<delay/>` of a result.
pub fn stamp(id: u64) -> String {
    let secs = i64::try_from(id / 1_000_000).unwrap_or(i64::MAX);
    let micros = u32::try_from(id % 1_000_000).unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, micros * 1000)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

/// A XEP-0082 timestamp as microseconds; `None` when it is not one (or before 1970).
pub fn parse_stamp(s: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    u64::try_from(t.timestamp_micros()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_even_within_one_microsecond() {
        let a = next_id();
        let b = next_id();
        let c = next_id();
        assert!(a < b && b < c);
    }

    #[test]
    fn stamps_round_trip() {
        let id = 1_700_000_000_123_456;
        assert_eq!(stamp(id), "2023-11-14T22:13:20.123456Z");
        assert_eq!(parse_stamp(&stamp(id)), Some(id));
        assert_eq!(
            parse_stamp("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(parse_stamp("yesterday"), None);
        assert_eq!(parse_stamp("1969-12-31T23:59:59Z"), None);
    }
}
