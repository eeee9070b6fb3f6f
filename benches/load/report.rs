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

/// Resident memory of the server process in bytes (smaps_rollup: see server::Reading).
#[derive(Serialize, Clone, Copy, Default)]
pub struct Memory {
    /// Rss after start, before any client.
    pub idle: u64,
    /// Anonymous at the same time: Rss without the code pages of the binary and libc.
    pub idle_anonymous: u64,
    /// Rss once every device registered and left.
    pub registered: u64,
    pub registered_anonymous: u64,
    /// Rss after the messages.
    pub after_messages: u64,
    pub after_messages_anonymous: u64,
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
    /// (Rss registered − idle) / registrations: a hibernated session with its
    /// registration, or a registration alone in offline mode.
    pub bytes_per_registration: f64,
    /// The same for anonymous memory.
    pub anonymous_bytes_per_registration: f64,
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
        "{:>6} {:>3} {:<10} {:<14} {:>6} {:>6} {:>4} {:>4} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>6} {:>5} {:>6} {:>5} {:>6} {:>6} {:>7} {:>7}",
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
        "anon",
        "regMB",
        "anon",
        "endMB",
        "hwmMB",
        "B/reg",
        "anon"
    );
}

pub fn print_row(r: &Run) {
    let pattern = match r.rate {
        Some(rate) => format!("{} {rate}/s", r.pattern),
        None => r.pattern.to_string(),
    };
    println!(
        "{:>6} {:>3} {:<10} {:<14} {:>6} {:>6} {:>4} {:>4} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>9.0} {:>8.4} {:>6} {:>5} {:>6} {:>5} {:>6} {:>6} {:>7.0} {:>7.0}",
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
        mb(r.memory.registered_anonymous),
        mb(r.memory.after_messages),
        mb(r.memory.peak),
        r.bytes_per_registration,
        r.anonymous_bytes_per_registration,
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
    /// Where the clients ran (and the server, unless `server` says otherwise).
    pub machine: Machine,
    /// What a remote server's machine said of itself (`ctl info`).
    pub server: Option<std::collections::BTreeMap<String, String>>,
    /// Timings came from an emulated machine: not meaningful, not judged.
    pub emulated: bool,
    pub command: String,
    pub runs: &'a [Run],
    pub targets: Vec<Verdict>,
}

/// One target of issue 10, checked against the runs. A missed target is reported; it
/// does not fail the benchmark.
#[derive(Serialize)]
pub struct Verdict {
    pub target: &'static str,
    /// The figure compared with the limit, as printed.
    pub measured: String,
    /// met, missed, not measured (no run of that shape), or not judged (emulated timing).
    pub status: &'static str,
}

const MIB: f64 = 1_048_576.0;

fn verdict(target: &'static str, measured: Option<(f64, String)>, limit: f64) -> Verdict {
    match measured {
        None => Verdict {
            target,
            measured: "–".into(),
            status: "not measured",
        },
        Some((value, text)) => Verdict {
            target,
            measured: text,
            status: if value <= limit { "met" } else { "missed" },
        },
    }
}

/// The largest of a figure over the runs that `select` picks.
fn worst(runs: &[Run], select: impl Fn(&Run) -> bool, figure: impl Fn(&Run) -> f64) -> Option<f64> {
    runs.iter()
        .filter(|r| select(r))
        .map(figure)
        .reduce(f64::max)
}

pub fn check_targets(runs: &[Run], emulated: bool) -> Vec<Verdict> {
    let hibernated = |users: usize| move |r: &Run| r.mode == Mode::Hibernated && r.users == users;
    let mut v = Vec::new();
    let per_session = worst(runs, hibernated(10_000), |r| r.bytes_per_registration);
    v.push(verdict(
        "<= 4 KB (4,096 B) RSS per hibernated push-enabled session at 10,000 users",
        per_session.map(|b| (b, format!("{b:.0} B"))),
        4096.0,
    ));
    let total = worst(
        runs,
        |r| hibernated(1000)(r) && r.devices == 2,
        |r| r.memory.registered as f64,
    );
    v.push(verdict(
        "1,000 users x 2 hibernated sessions in <= 12 MB total RSS",
        total.map(|b| (b, format!("{:.1} MB", b / MIB))),
        12.0 * MIB,
    ));
    let idle = worst(runs, |_| true, |r| r.memory.idle as f64);
    v.push(verdict(
        "idle RSS <= 4 MB",
        idle.map(|b| (b, format!("{:.1} MB", b / MIB))),
        4.0 * MIB,
    ));
    let cpu = worst(runs, |r| r.rate.is_none(), |r| r.cpu_ms_per_publish);
    let mut c = verdict(
        "CPU per publish in a burst no worse than before (<= 0.04 ms)",
        cpu.map(|ms| (ms, format!("{ms:.3} ms"))),
        0.04,
    );
    if emulated && cpu.is_some() {
        c.status = "not judged (emulated)";
    }
    v.push(c);
    v
}

pub fn print_targets(verdicts: &[Verdict]) {
    println!("\ntargets (issue 10; MB = 1,048,576 B; the worst run counts):");
    for t in verdicts {
        println!("  {:<22} {:<12} {}", t.status, t.measured, t.target);
    }
}
