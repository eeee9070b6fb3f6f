//! How the commands print times and text from peers, so every report reads alike.

use chrono::TimeZone;

pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
pub(super) fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// A Unix time as `2026-12-01 10:00:00 UTC`.
pub(super) fn stamp(secs: u64) -> String {
    chrono::Utc
        .timestamp_opt(i64::try_from(secs).unwrap_or(i64::MAX), 0)
        .single()
        .map_or_else(
            || format!("{secs} (Unix time)"),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// A Unix time as `2026-12-01 10:00:00 UTC (3h 2m ago)`.
pub(super) fn when(secs: u64, now: u64) -> String {
    let stamp = stamp(secs);
    if secs > now {
        format!("{stamp} (in {})", span(secs - now))
    } else {
        format!("{stamp} ({} ago)", span(now - secs))
    }
}

/// Text from a peer, quoted, with anything unprintable escaped.
pub(super) fn quoted(s: &str) -> String {
    format!("'{}'", s.escape_debug())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_times() {
        assert_eq!(span(12), "12s");
        assert_eq!(span(250), "4m 10s");
        assert_eq!(span(7500), "2h 5m");
        assert_eq!(span(3 * 86_400 + 4 * 3600 + 5), "3d 4h");
        assert_eq!(
            when(1_700_000_000, 1_700_000_060),
            "2023-11-14 22:13:20 UTC (1m 0s ago)"
        );
    }

    #[test]
    fn peer_text_cannot_carry_control_characters() {
        assert_eq!(quoted("a\nb\u{1b}[2J"), "'a\\nb\\u{1b}[2J'");
    }
}
