//! The server's state right now, gathered from its actors when someone asks: for
//! `cloud-notify status` and for each scrape of the metrics endpoint.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::Addr;
use serde::{Deserialize, Serialize};

use super::{HourCounts, KindLabels, Metrics, QueueLabels, StateLabels};
use crate::store::{Counts, Store};
use crate::xmpp::router::{GetRouterStats, Router};

/// Where the figures come from.
#[derive(Clone)]
pub struct Sources {
    pub store: Addr<Store>,
    pub router: Addr<Router>,
    pub metrics: Arc<Metrics>,
    /// When the server started (wall clock, for display).
    pub started_at: SystemTime,
}

/// The server process's memory, from `/proc/self/status` (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProcessMemory {
    /// VmRSS: resident in all.
    pub resident: u64,
    /// RssAnon: heap and stacks.
    pub anonymous: u64,
    /// RssFile: file-backed pages (the binary's and the libraries' code, shared).
    pub file: u64,
}

/// Estimated memory by what holds it (bytes), from the sizes and counts its owners
/// know (`xmpp::user::Footprint`, `metrics::held`): not measured, and not all of the
/// heap (the store's cache and the connections' buffers are elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemoryByKind {
    /// User actors in memory, with their push state.
    pub users: u64,
    /// Session records, connected and hibernated.
    pub sessions: u64,
    /// Stanzas waiting for sessions: unacknowledged, held for inactive clients, queued
    /// while hibernated; stanzas and publishes waiting for server-to-server links (while
    /// one connects, or held for a retry) and for components.
    pub queues: u64,
}

/// What `cloud-notify status` shows. Sent over the admin socket (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub version: String,
    pub pid: u32,
    /// Unix seconds.
    pub started_at: u64,
    pub uptime_secs: u64,
    pub sessions_connected: u64,
    pub sessions_hibernated: u64,
    /// `None`: the store did not answer.
    pub registrations: Option<u64>,
    pub accounts: Option<u64>,
    pub push_users_in_memory: u64,
    pub publishes_last_hour: HourCounts,
    /// `None` where `/proc/self/status` cannot be read.
    pub memory: Option<ProcessMemory>,
    pub memory_by_kind: MemoryByKind,
}

impl ServerStatus {
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// How long a snapshot waits for each actor: a stuck store must not hang `status`.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads `/proc/self/status` (Linux); `None` elsewhere or when a field is missing.
pub fn process_memory() -> Option<ProcessMemory> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_proc_status(&text)
}

fn parse_proc_status(text: &str) -> Option<ProcessMemory> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    };
    Some(ProcessMemory {
        resident: field("VmRSS:")?,
        anonymous: field("RssAnon:").unwrap_or(0),
        file: field("RssFile:").unwrap_or(0),
    })
}

/// Asks every actor for its figures, sets the metrics' gauges from them, and returns
/// the status.
pub async fn gather(s: &Sources) -> ServerStatus {
    let router = tokio::time::timeout(ASK_TIMEOUT, s.router.send(GetRouterStats)).await;
    let router = router.ok().and_then(Result::ok).unwrap_or_default();
    // Each user actor holds its user's push state.
    let push_users = router.users as usize;
    let counts = tokio::time::timeout(ASK_TIMEOUT, s.store.send(Counts)).await;
    let counts = counts.ok().and_then(Result::ok).and_then(Result::ok);
    let memory = process_memory();
    let m = &s.metrics;
    let set = |g: &prometheus_client::metrics::gauge::Gauge, v: u64| {
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
    };
    set(
        &m.sessions
            .get_or_create(&StateLabels { state: "connected" }),
        router.connected,
    );
    set(
        &m.sessions.get_or_create(&StateLabels {
            state: "hibernated",
        }),
        router.hibernated,
    );
    set(
        &m.queued.get_or_create(&QueueLabels {
            queue: "session_channels",
        }),
        router.session_queued,
    );
    set(
        &m.queued.get_or_create(&QueueLabels {
            queue: "components",
        }),
        router.component_queued,
    );
    set(&m.push_users, push_users as u64);
    if let Some(c) = counts {
        set(&m.registrations, c.registrations);
        set(&m.accounts, c.accounts);
    }
    if let Some(mem) = memory {
        for (kind, v) in [
            ("resident", mem.resident),
            ("anonymous", mem.anonymous),
            ("file", mem.file),
        ] {
            set(&m.memory.get_or_create(&KindLabels { kind }), v);
        }
    }
    let by_kind = MemoryByKind {
        users: router.memory_users,
        sessions: router.memory_sessions,
        queues: router.memory_queues + m.held.get(),
    };
    for (kind, v) in [
        ("users", by_kind.users),
        ("sessions", by_kind.sessions),
        ("queues", by_kind.queues),
    ] {
        set(&m.memory_by_kind.get_or_create(&KindLabels { kind }), v);
    }
    let uptime = m.uptime();
    set(&m.uptime, uptime.as_secs());
    ServerStatus {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        started_at: s
            .started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        uptime_secs: uptime.as_secs(),
        sessions_connected: router.connected,
        sessions_hibernated: router.hibernated,
        registrations: counts.map(|c| c.registrations),
        accounts: counts.map(|c| c.accounts),
        push_users_in_memory: push_users as u64,
        publishes_last_hour: m.last_hour(),
        memory,
        memory_by_kind: by_kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_fields_are_read_in_bytes() {
        let text = "Name:\tcloud-notify\nVmPeak:\t  20000 kB\nVmRSS:\t    6144 kB\nRssAnon:\t     512 kB\nRssFile:\t    5632 kB\nRssShmem:\t       0 kB\n";
        assert_eq!(
            parse_proc_status(text),
            Some(ProcessMemory {
                resident: 6144 * 1024,
                anonymous: 512 * 1024,
                file: 5632 * 1024
            })
        );
        assert_eq!(parse_proc_status("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        if cfg!(target_os = "linux") {
            assert!(process_memory().is_some_and(|m| m.resident > 0));
        }
    }
}
