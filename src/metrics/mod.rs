//! What the server counts about itself: for `cloud-notify status` (through the admin
//! socket) and for the OpenMetrics endpoint (`metrics_listen`, off by default).
//!
//! One [`Metrics`] per server, shared by the actors that count (the push module, the
//! store). Counting costs an atomic add, so it is always on; only the HTTP endpoint is
//! optional. Gauges that describe the server's state right now (sessions, users in
//! memory, queues, memory) are read when someone asks ([`snapshot`]).
//!
//! **No label ever names a user.** The only label with values from outside is the app
//! server, and it takes the configured component domains, the admin's list of remote app
//! servers (`metrics_app_servers`, at most 64) and `other`, so a client that enables
//! registrations with made-up app-server JIDs cannot grow the output.

pub mod held;
pub mod http;
pub mod snapshot;

use std::collections::HashSet;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use serde::{Deserialize, Serialize};

/// The label value for an app server that is neither a configured component nor in
/// `metrics_app_servers`.
pub const OTHER_APP_SERVER: &str = "other";

/// How a publish ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublishOutcome {
    /// The app server answered with a result.
    Success,
    /// The app server answered with an error (of any type).
    Error,
    /// No answer within `push_response_timeout` (or given up on at
    /// `push_max_pending_publishes`).
    Timeout,
    /// Our server-to-server layer could not deliver it to the app server's domain and
    /// no answer came (D21).
    S2sFailure,
}

impl PublishOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PublishOutcome::Success => "success",
            PublishOutcome::Error => "error",
            PublishOutcome::Timeout => "timeout",
            PublishOutcome::S2sFailure => "s2s_failure",
        }
    }

    fn index(self) -> usize {
        match self {
            PublishOutcome::Success => 0,
            PublishOutcome::Error => 1,
            PublishOutcome::Timeout => 2,
            PublishOutcome::S2sFailure => 3,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PublishLabels {
    outcome: &'static str,
    app_server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabels {
    pub(crate) state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct QueueLabels {
    pub(crate) queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub(crate) kind: &'static str,
}

/// How many [`PublishOutcome`]s there are.
const OUTCOMES: usize = 4;

/// Publishes of the last hour by outcome, in one-minute buckets.
#[derive(Debug)]
struct HourWindow {
    /// `(minute since start, counts by outcome)`; slot `minute % 60`.
    slots: [(u64, [u64; OUTCOMES]); 60],
}

impl HourWindow {
    fn new() -> Self {
        HourWindow {
            slots: [(u64::MAX, [0; OUTCOMES]); 60],
        }
    }

    fn add(&mut self, minute: u64, outcome: PublishOutcome) {
        let slot = &mut self.slots[(minute % 60) as usize];
        if slot.0 != minute {
            *slot = (minute, [0; OUTCOMES]);
        }
        slot.1[outcome.index()] += 1;
    }

    fn sum(&self, minute: u64) -> [u64; OUTCOMES] {
        let mut out = [0; OUTCOMES];
        for (m, counts) in &self.slots {
            if *m != u64::MAX && *m <= minute && minute - m < 60 {
                for (o, c) in out.iter_mut().zip(counts) {
                    *o += c;
                }
            }
        }
        out
    }
}

/// Publishes of the last hour, by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HourCounts {
    pub success: u64,
    pub error: u64,
    pub timeout: u64,
    /// Not delivered by our server-to-server links, and no answer came (D21).
    pub s2s_failure: u64,
}

/// The server's counters and the registry that prints them.
pub struct Metrics {
    registry: Registry,
    started: tokio::time::Instant,
    /// Replaced whole on SIGHUP (`set_app_servers`); read once per publish.
    app_servers: RwLock<HashSet<String>>,
    hour: Mutex<HourWindow>,
    publishes: Family<PublishLabels, Counter>,
    publish_latency: Histogram,
    pending_publishes: Gauge,
    store_commit: Histogram,
    store_batch: Histogram,
    store_pending: Gauge,
    archive_waits: Counter,
    // Read at scrape time (`snapshot`).
    pub(crate) sessions: Family<StateLabels, Gauge>,
    pub(crate) registrations: Gauge,
    pub(crate) accounts: Gauge,
    pub(crate) push_users: Gauge,
    pub(crate) queued: Family<QueueLabels, Gauge>,
    pub(crate) memory: Family<KindLabels, Gauge>,
    pub(crate) memory_by_kind: Family<KindLabels, Gauge>,
    pub(crate) uptime: Gauge,
    /// Bytes waiting in the server-to-server and component queues (under `queues`).
    pub held: held::HeldBytes,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(std::iter::empty::<String>())
    }
}

impl Metrics {
    /// `app_servers`: the domains that may appear as the `app_server` label (the
    /// configured components and `metrics_app_servers`); every other app server counts
    /// as `other`.
    pub fn new(app_servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let mut registry = Registry::with_prefix("cloud_notify");
        let publishes = Family::<PublishLabels, Counter>::default();
        registry.register(
            "push_publishes",
            "Publishes to app servers by how they ended (success, error, timeout, s2s_failure) and app server (a configured component's domain, one listed in metrics_app_servers, or other)",
            publishes.clone(),
        );
        // 1 ms to about 66 s: a component on the same machine answers in about a
        // millisecond, a remote one through Apple or Google in tenths of seconds.
        let publish_latency = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register_with_unit(
            "push_publish_latency",
            "Time from a publish to the app server's answer (success or error)",
            Unit::Seconds,
            publish_latency.clone(),
        );
        let pending_publishes = Gauge::default();
        registry.register(
            "push_publishes_pending",
            "Publishes waiting for the app server's answer",
            pending_publishes.clone(),
        );
        // 0.1 ms to about 6.5 s: an fsync on an SD card takes tens of milliseconds.
        let store_commit = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        registry.register_with_unit(
            "store_commit_duration",
            "Time of one group commit (a batch of storage requests with writes), fsync included",
            Unit::Seconds,
            store_commit.clone(),
        );
        let store_batch = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "store_batch_size",
            "Storage requests handled together in one batch (group commit)",
            store_batch.clone(),
        );
        let store_pending = Gauge::default();
        registry.register(
            "store_pending",
            "Storage requests waiting for the next batch (store_max_pending bounds it)",
            store_pending.clone(),
        );
        let archive_waits = Counter::default();
        registry.register(
            "archive_waits",
            "Archive writes that waited for room: the store held store_max_pending of them",
            archive_waits.clone(),
        );
        let sessions = Family::<StateLabels, Gauge>::default();
        registry.register(
            "sessions",
            "Client sessions by state: connected, or hibernated (XEP-0198, no connection)",
            sessions.clone(),
        );
        let registrations = Gauge::default();
        registry.register(
            "push_registrations",
            "Push registrations stored",
            registrations.clone(),
        );
        let accounts = Gauge::default();
        registry.register("accounts", "Accounts stored", accounts.clone());
        let push_users = Gauge::default();
        registry.register(
            "push_users_in_memory",
            "Users whose push state is in memory (push_max_active_users bounds it)",
            push_users.clone(),
        );
        let queued = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queued",
            "Items waiting in the server's queues: stanzas in sessions' inbound channels, stanzas and publishes waiting for components",
            queued.clone(),
        );
        let memory = Family::<KindLabels, Gauge>::default();
        registry.register_with_unit(
            "process_memory",
            "The server process's memory from /proc/self/status: resident (VmRSS), of which anonymous (RssAnon: heap and stacks) and file-backed (RssFile: code pages, shared)",
            Unit::Bytes,
            memory.clone(),
        );
        let memory_by_kind = Family::<KindLabels, Gauge>::default();
        registry.register_with_unit(
            "memory",
            "Estimated memory by what holds it: users (user actors with their push state), sessions (session records), queues (stanzas waiting for sessions: unacknowledged, held for inactive clients, queued while hibernated; stanzas and publishes waiting for server-to-server links and components); from sizes and counts, not measured",
            Unit::Bytes,
            memory_by_kind.clone(),
        );
        let uptime = Gauge::default();
        registry.register_with_unit(
            "uptime",
            "Time since the server started",
            Unit::Seconds,
            uptime.clone(),
        );
        registry.register(
            "build",
            "The running version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics {
            registry,
            started: tokio::time::Instant::now(),
            app_servers: RwLock::new(app_servers.into_iter().map(Into::into).collect()),
            hour: Mutex::new(HourWindow::new()),
            publishes,
            publish_latency,
            pending_publishes,
            store_commit,
            store_batch,
            store_pending,
            archive_waits,
            sessions,
            registrations,
            accounts,
            push_users,
            queued,
            memory,
            memory_by_kind,
            uptime,
            held: held::HeldBytes::default(),
        }
    }

    fn minute(&self) -> u64 {
        self.started.elapsed().as_secs() / 60
    }

    /// A publish ended. `app_server` is the app server's domain; `latency` is the time to
    /// its answer (`None` for a timeout).
    pub fn publish_ended(
        &self,
        app_server: &str,
        outcome: PublishOutcome,
        latency: Option<Duration>,
    ) {
        // A panic while the lock is held stops the process, so a poisoned set is whole.
        let counted = self
            .app_servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(app_server);
        let app_server = if counted {
            app_server.to_string()
        } else {
            OTHER_APP_SERVER.to_string()
        };
        self.publishes
            .get_or_create(&PublishLabels {
                outcome: outcome.as_str(),
                app_server,
            })
            .inc();
        if let Some(l) = latency {
            self.publish_latency.observe(l.as_secs_f64());
        }
        let minute = self.minute();
        if let Ok(mut hour) = self.hour.lock() {
            hour.add(minute, outcome);
        }
    }

    /// SIGHUP changed `metrics_app_servers`: publishes that end from now on are counted
    /// by the new list. Series already counted stay (a counter never goes back), so the
    /// output holds at most the domains listed over the process's life.
    pub fn set_app_servers(&self, app_servers: impl IntoIterator<Item = impl Into<String>>) {
        *self.app_servers.write().unwrap_or_else(|e| e.into_inner()) =
            app_servers.into_iter().map(Into::into).collect();
    }

    /// Publishes awaiting an answer: `+1` when one is sent, `-1` when it ends.
    pub fn pending_publishes_add(&self, delta: i64) {
        self.pending_publishes.inc_by(delta);
    }

    /// One batch of the store ran: `requests` in it, `commit` its time when it wrote.
    pub fn store_batch(&self, requests: usize, commit: Option<Duration>) {
        self.store_batch.observe(requests as f64);
        if let Some(d) = commit {
            self.store_commit.observe(d.as_secs_f64());
        }
    }

    /// The counter of archive writes that waited for room (see `store::ArchiveGate`).
    pub fn archive_waits(&self) -> Counter {
        self.archive_waits.clone()
    }

    /// Storage requests waiting now.
    pub fn store_pending(&self, n: usize) {
        self.store_pending.set(n as i64);
    }

    /// Publishes of the last hour by outcome.
    pub fn last_hour(&self) -> HourCounts {
        let [success, error, timeout, s2s_failure] = self
            .hour
            .lock()
            .map(|h| h.sum(self.minute()))
            .unwrap_or_default();
        HourCounts {
            success,
            error,
            timeout,
            s2s_failure,
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The OpenMetrics text of everything (gauges as last set by [`snapshot`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            // Writing to a String cannot fail; an empty exposition is still valid.
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hour_window_forgets_after_sixty_minutes() {
        let mut w = HourWindow::new();
        w.add(0, PublishOutcome::Success);
        w.add(0, PublishOutcome::Timeout);
        w.add(30, PublishOutcome::Error);
        w.add(30, PublishOutcome::S2sFailure);
        assert_eq!(w.sum(30), [1, 1, 1, 1]);
        assert_eq!(w.sum(59), [1, 1, 1, 1]);
        assert_eq!(w.sum(60), [0, 1, 0, 1]);
        // Slot 0 is reused by minute 60: the old counts are gone, not added.
        w.add(60, PublishOutcome::Success);
        assert_eq!(w.sum(60), [1, 1, 0, 1]);
        assert_eq!(w.sum(200), [0, 0, 0, 0]);
    }

    #[test]
    fn unknown_app_servers_are_other_and_the_text_parses() {
        let m = Metrics::new(["push.example.org"]);
        m.publish_ended(
            "push.example.org",
            PublishOutcome::Success,
            Some(Duration::from_millis(3)),
        );
        m.publish_ended("juliet.example.net", PublishOutcome::Timeout, None);
        let text = m.encode();
        assert!(
            text.contains(
                "cloud_notify_push_publishes_total{outcome=\"success\",app_server=\"push.example.org\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "cloud_notify_push_publishes_total{outcome=\"timeout\",app_server=\"other\"} 1"
            ),
            "{text}"
        );
        assert!(!text.contains("juliet"), "{text}");
        m.set_app_servers(["juliet.example.net"]);
        m.publish_ended("juliet.example.net", PublishOutcome::Timeout, None);
        m.publish_ended("push.example.org", PublishOutcome::Timeout, None);
        let text = m.encode();
        assert!(
            text.contains(
                "cloud_notify_push_publishes_total{outcome=\"timeout\",app_server=\"juliet.example.net\"} 1"
            ),
            "a domain listed after a reload: {text}"
        );
        assert!(
            text.contains(
                "cloud_notify_push_publishes_total{outcome=\"timeout\",app_server=\"other\"} 2"
            ),
            "one no longer listed is other: {text}"
        );
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(
            m.last_hour(),
            HourCounts {
                success: 1,
                error: 0,
                timeout: 3,
                s2s_failure: 0,
            }
        );
    }
}
