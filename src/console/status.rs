//! `cloud-notify status`.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::format::{span, stamp};
use super::outcome::Outcome;
use super::server::{ANSWER_TIMEOUT, decode, request, server};
use crate::config::Config;
use crate::metrics::snapshot::ServerStatus;

/// Asks the running server how it is; exit code 3 when none runs.
pub fn status(cfg: &Config) -> ExitCode {
    let socket = crate::xmpp::admin::socket_path(&cfg.data_dir);
    let Some(mut c) = server(cfg, ANSWER_TIMEOUT) else {
        return Outcome::not_running(format!(
            "cloud-notify is not running (no server answers on {})",
            socket.display()
        ))
        .finish();
    };
    match request(&mut c, "status").and_then(|a| decode::<ServerStatus>(&a)) {
        Ok(s) => Outcome::ok(format_status(&s)),
        Err(e) => Outcome::fail(format!("the server on {} answered: {e}", socket.display())),
    }
    .finish()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

pub(super) fn format_status(s: &ServerStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "cloud-notify {} is running (pid {})", s.version, s.pid);
    let _ = writeln!(
        out,
        "started:        {} (up {})",
        stamp(s.started_at),
        span(s.uptime_secs)
    );
    let _ = writeln!(
        out,
        "sessions:       {} connected, {} hibernated",
        s.sessions_connected, s.sessions_hibernated
    );
    let count = |c: Option<u64>| {
        c.map_or_else(
            || "unknown (storage did not answer)".into(),
            |n| n.to_string(),
        )
    };
    let _ = writeln!(
        out,
        "registrations:  {} (accounts: {}; users with push state in memory: {})",
        count(s.registrations),
        count(s.accounts),
        s.push_users_in_memory
    );
    let h = &s.publishes_last_hour;
    let _ = writeln!(
        out,
        "publishes, last hour: {} success, {} error, {} timeout, {} s2s failure",
        h.success, h.error, h.timeout, h.s2s_failure
    );
    let _ = writeln!(
        out,
        "memory:         {}",
        s.memory.map_or_else(
            || "unknown (no /proc/self/status)".into(),
            |m| format!(
                "{} resident (VmRSS; {} anonymous, {} file-backed)",
                mib(m.resident),
                mib(m.anonymous),
                mib(m.file)
            )
        )
    );
    let k = &s.memory_by_kind;
    let _ = writeln!(
        out,
        "memory by kind: users {}, sessions {}, queues {} (estimates)",
        kib(k.users),
        kib(k.sessions),
        kib(k.queues)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::HourCounts;
    use crate::metrics::snapshot::{MemoryByKind, ProcessMemory};

    #[test]
    fn status_reads_as_documented() {
        let s = ServerStatus {
            version: "0.1.0".into(),
            pid: 4242,
            started_at: 1_700_000_000,
            uptime_secs: 7500,
            sessions_connected: 3,
            sessions_hibernated: 5,
            registrations: Some(12),
            accounts: Some(10),
            push_users_in_memory: 4,
            publishes_last_hour: HourCounts {
                success: 40,
                error: 2,
                timeout: 1,
                s2s_failure: 3,
            },
            memory: Some(ProcessMemory {
                resident: 10 << 20,
                anonymous: 1 << 20,
                file: 9 << 20,
            }),
            memory_by_kind: MemoryByKind {
                users: 4 << 10,
                sessions: 2560,
                queues: 0,
            },
        };
        let text = format_status(&s);
        assert_eq!(
            text,
            "cloud-notify 0.1.0 is running (pid 4242)\n\
             started:        2023-11-14 22:13:20 UTC (up 2h 5m)\n\
             sessions:       3 connected, 5 hibernated\n\
             registrations:  12 (accounts: 10; users with push state in memory: 4)\n\
             publishes, last hour: 40 success, 2 error, 1 timeout, 3 s2s failure\n\
             memory:         10.0 MiB resident (VmRSS; 1.0 MiB anonymous, 9.0 MiB file-backed)\n\
             memory by kind: users 4.0 KiB, sessions 2.5 KiB, queues 0.0 KiB (estimates)\n"
        );
    }
}
