//! Figures of one run, the table on stdout and the JSON for machines.

use serde::Serialize;

use crate::client::Mode;

#[derive(Serialize, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Nearest-rank percentiles of latencies in milliseconds.
pub fn percentiles(sorted: &[f64]) -> Percentiles {
    let at = |p: f64| {
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    };
    Percentiles {
        p50: at(50.0),
        p95: at(95.0),
        p99: at(99.0),
        max: sorted.last().copied().unwrap_or(0.0),
    }
}

#[derive(Serialize, Clone, Copy, Default)]
pub struct Memory {
    /// VmRSS after start, before any client.
    pub idle: u64,
    /// RssAnon at the same time: VmRSS without the code pages of the binary and libc.
    pub idle_anonymous: u64,
    /// VmRSS once every device registered and left.
    pub registered: u64,
    /// VmRSS after the messages.
    pub after_messages: u64,
    /// VmHWM at the end.
    pub peak: u64,
}

#[derive(Serialize)]
pub struct Run {
    pub users: usize,
    pub devices: usize,
    pub mode: Mode,
    pub tls: bool,
    pub pattern: &'static str,
    /// Messages per second for the steady pattern; none for a burst.
    pub rate: Option<u32>,
    pub messages: usize,
    pub publishes_expected: usize,
    pub publishes_received: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub latency_ms: Percentiles,
    pub publishes_per_s: f64,
    pub cpu_ms_per_publish: f64,
    pub memory: Memory,
    /// (VmRSS registered − idle) / registrations: a hibernated session with its
    /// registration, or a registration alone in offline mode.
    pub bytes_per_registration: f64,
    pub registration_s: f64,
    #[serde(skip)]
    pub latencies: Vec<f64>,
}

fn mb(b: u64) -> String {
    format!("{:.1}", b as f64 / 1_048_576.0)
}

pub fn print_header(tls: bool) {
    println!(
        "\nclient streams: {}",
        if tls { "STARTTLS" } else { "plaintext" }
    );
    println!(
        "{:>6} {:>3} {:<10} {:<14} {:>6} {:>6} {:>4} {:>4} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8}",
        "users",
        "dev",
        "mode",
        "pattern",
        "msgs",
        "pubs",
        "lost",
        "dup",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "pubs/s",
        "cpu ms",
        "idleMB",
        "anonMB",
        "regMB",
        "endMB",
        "hwmMB",
        "B/reg"
    );
}

pub fn print_row(r: &Run) {
    let pattern = match r.rate {
        Some(rate) => format!("{} {rate}/s", r.pattern),
        None => r.pattern.to_string(),
    };
    println!(
        "{:>6} {:>3} {:<10} {:<14} {:>6} {:>6} {:>4} {:>4} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>9.0} {:>8.4} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8.0}",
        r.users,
        r.devices,
        r.mode.name(),
        pattern,
        r.messages,
        r.publishes_received,
        r.lost,
        r.duplicated,
        r.latency_ms.p50,
        r.latency_ms.p95,
        r.latency_ms.p99,
        r.latency_ms.max,
        r.publishes_per_s,
        r.cpu_ms_per_publish,
        mb(r.memory.idle),
        mb(r.memory.idle_anonymous),
        mb(r.memory.registered),
        mb(r.memory.after_messages),
        mb(r.memory.peak),
        r.bytes_per_registration,
    );
}

#[derive(Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub date: String,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel,
        date: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }
}

#[derive(Serialize)]
pub struct Report<'a> {
    pub machine: Machine,
    pub command: String,
    pub runs: &'a [Run],
}
