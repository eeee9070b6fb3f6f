//! The load benchmark: the release server in its own process, thousands of phones with
//! stream management and push, a component app server, and messages to wake them.
//!
//! ```sh
//! cargo bench --bench load                       # sizes 100, 1000, 10000; plaintext
//! cargo bench --bench load -- --tls              # the same over STARTTLS
//! cargo bench --bench load -- --sizes 1000 --modes hibernated --patterns burst
//! cargo bench --bench load -- --archive 100000   # the archive phase alone (archive.rs)
//! cross/vm.sh aarch64                            # the server on an emulated ARM board
//! ```
//!
//! Prints a table and the targets met or missed, and writes JSON and a PNG of the latency
//! distribution to `--out` (target/load). Every figure is for the server process only
//! (/proc of its pid); the clients share the machine, so on 2 cores they compete with it.
//!
//! With `--server-ctl`, the server runs elsewhere (cross/vm.sh: an emulated ARM board)
//! and only the clients run here; see server::Target::Remote for the control command.

mod app;
mod archive;
mod chart;
mod client;
mod report;
mod server;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;

use client::{AnySession, Mode, Transport};
use report::{Memory, Run};

#[derive(Parser)]
#[command(about = "cloud-notify load benchmark")]
struct Args {
    /// Users per run (each run starts a fresh server).
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000, 10_000])]
    sizes: Vec<usize>,
    /// Devices (sessions with a push registration) per user, 1–3.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=3))]
    devices: u8,
    #[arg(long, value_delimiter = ',', default_values_t = ["hibernated".to_string(), "offline".to_string()])]
    modes: Vec<String>,
    #[arg(long, value_delimiter = ',', default_values_t = ["burst".to_string(), "steady".to_string()])]
    patterns: Vec<String>,
    /// Messages in a burst (at most one per user).
    #[arg(long, default_value_t = 1000)]
    burst: usize,
    /// Messages per second of the steady pattern.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Messages of the steady pattern (at most one per user).
    #[arg(long, default_value_t = 600)]
    steady: usize,
    /// Client streams over STARTTLS instead of plaintext.
    #[arg(long)]
    tls: bool,
    /// Logins in flight at once while registering.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/load"))]
    out: PathBuf,
    /// Drive a server that runs elsewhere through this command, called with a verb
    /// (info, setup, import, start, memory, cpu, stop); cross/vm.sh writes one.
    #[arg(long, requires_all = ["server_addr", "component_addr"])]
    server_ctl: Option<String>,
    /// With --server-ctl: the server's client port as reached from here.
    #[arg(long)]
    server_addr: Option<std::net::SocketAddr>,
    /// With --server-ctl: the server's component port as reached from here.
    #[arg(long)]
    component_addr: Option<std::net::SocketAddr>,
    /// Open client connections one at a time (each up to its stream features): qemu's
    /// user-mode port forward takes one pending connection at a time.
    #[arg(long)]
    serial_connect: bool,
    /// The server runs under emulation: timings are reported but not judged.
    #[arg(long)]
    emulated: bool,
    /// Instead of the push runs, the archive phase with this many messages: archived
    /// through the server, then MAM pages, then the expiry of the oldest (archive.rs).
    #[arg(long, conflicts_with_all = ["tls", "server_ctl"])]
    archive: Option<usize>,
    /// The oldest messages the archive phase expires (a tenth of them unless given).
    #[arg(long, requires = "archive")]
    archive_expire: Option<usize>,
    /// Pages of each kind (by `with`, by time range) the archive phase reads.
    #[arg(long, default_value_t = 200, requires = "archive")]
    archive_pages: usize,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

const SENDERS: usize = 4;
/// How long after the last message a missing publish counts as lost.
const LOSS_DEADLINE: Duration = Duration::from_secs(15);
/// How long to listen for duplicates after the last expected publish.
const QUIET: Duration = Duration::from_millis(500);

fn main() {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("no runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run_all(&args)) {
        eprintln!("load benchmark failed: {e}");
        std::process::exit(1);
    }
}

async fn run_all(args: &Args) -> Result<(), String> {
    if let Some(messages) = args.archive {
        return run_archive(args, messages).await;
    }
    let mut modes = Vec::new();
    for m in &args.modes {
        modes.push(match m.as_str() {
            "hibernated" => Mode::Hibernated,
            "offline" => Mode::Offline,
            other => return Err(format!("unknown mode {other}: hibernated or offline")),
        });
    }
    for p in &args.patterns {
        if p != "burst" && p != "steady" {
            return Err(format!("unknown pattern {p}: burst or steady"));
        }
    }
    let target = match (&args.server_ctl, args.server_addr, args.component_addr) {
        (Some(ctl), Some(c2s), Some(component)) => server::Target::Remote {
            ctl: ctl.clone(),
            c2s,
            component,
        },
        _ => server::Target::Local,
    };
    if args.serial_connect {
        client::serialize_connects();
    }
    let machine = report::machine();
    let server_info = target.info()?;
    match &server_info {
        None => println!(
            "cloud-notify load benchmark on {} ({} cores), server {}",
            machine.cpu,
            machine.cores,
            env!("CARGO_BIN_EXE_cloud-notify")
        ),
        Some(info) => println!(
            "cloud-notify load benchmark: clients on {} ({} cores), server through {}: {}",
            machine.cpu,
            machine.cores,
            args.server_ctl.as_deref().unwrap_or_default(),
            info.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
    if args.emulated {
        println!("the server is emulated: its timings (latency, rate, CPU) are not meaningful");
    }
    report::print_header(args.tls);
    let started = Instant::now();
    let mut runs = Vec::new();
    for &size in &args.sizes {
        let prepared = target.prepare(size, SENDERS, args.tls)?;
        for &mode in &modes {
            for r in run_mode(args, &prepared, size, mode).await? {
                report::print_row(&r);
                runs.push(r);
            }
        }
    }
    println!("all runs: {:.0} s", started.elapsed().as_secs_f64());
    let targets = report::check_targets(&runs, args.emulated);
    report::print_targets(&targets);
    write_outputs(args, machine, server_info, targets, &runs)?;
    // The one figure with a hard requirement: every message wakes every device, once.
    let lost: usize = runs.iter().map(|r| r.lost).sum();
    let duplicated: usize = runs.iter().map(|r| r.duplicated).sum();
    if lost + duplicated > 0 {
        return Err(format!("{lost} publishes lost and {duplicated} duplicated"));
    }
    Ok(())
}

/// The archive phase on its own server (one user, the senders), and its JSON.
async fn run_archive(args: &Args, messages: usize) -> Result<(), String> {
    let machine = report::machine();
    println!(
        "cloud-notify load benchmark, archive phase, on {} ({} cores), server {}",
        machine.cpu,
        machine.cores,
        env!("CARGO_BIN_EXE_cloud-notify")
    );
    let options = archive::Options {
        messages,
        expire: args.archive_expire.unwrap_or(messages / 10),
        pages: args.archive_pages,
    };
    let prepared = server::Target::Local.prepare(1, SENDERS, false)?;
    let run = archive::run(&prepared, SENDERS, &options).await?;
    archive::print(&run);
    std::fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    let json = args.out.join("archive.json");
    let command = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect::<Vec<_>>()
        .join(" ");
    let text = serde_json::to_string_pretty(&serde_json::json!({
        "machine": machine,
        "command": format!("cargo bench --bench load -- {command}"),
        "archive": run,
    }))
    .map_err(|e| e.to_string())?;
    std::fs::write(&json, text).map_err(|e| e.to_string())?;
    println!("JSON: {}", json.display());
    Ok(())
}

fn write_outputs(
    args: &Args,
    machine: report::Machine,
    server: Option<std::collections::BTreeMap<String, String>>,
    targets: Vec<report::Verdict>,
    runs: &[Run],
) -> Result<(), String> {
    std::fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    let stem = if args.tls { "load-tls" } else { "load" };
    let json = args.out.join(format!("{stem}.json"));
    let command = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect::<Vec<_>>()
        .join(" ");
    let report = report::Report {
        machine,
        server,
        emulated: args.emulated,
        command: format!("cargo bench --bench load -- {command}"),
        runs,
        targets,
    };
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&json, text).map_err(|e| e.to_string())?;
    println!("JSON: {}", json.display());
    let png = args.out.join(format!("{stem}.png"));
    let title = if args.tls { "STARTTLS" } else { "plaintext" };
    match chart::draw(&png, runs, title) {
        Ok(()) => println!("chart: {}", png.display()),
        Err(e) => println!("chart not drawn: {e}"),
    }
    Ok(())
}

/// One server: start, register every device, then each message pattern.
async fn run_mode(
    args: &Args,
    setup: &server::Prepared,
    users: usize,
    mode: Mode,
) -> Result<Vec<Run>, String> {
    let server = setup.start().await?;
    let idle = server.settle().await?;
    let mut publishes = app::attach(setup.component).await?;
    let tls = match (&setup.local_dir, args.tls) {
        (Some(dir), true) => {
            let (cert, _) = cloud_notify::xmpp::tls::self_signed_paths(&dir.path().join("data"));
            Some(client::tls_connector(&cert)?)
        }
        _ => None,
    };
    let devices = usize::from(args.devices);
    let reg_started = Instant::now();
    register_all(setup, tls.as_ref(), users, devices, mode, args.concurrency).await?;
    let registration_s = reg_started.elapsed().as_secs_f64();
    let registered = server.settle().await?;
    // Registering alone should publish nothing; anything that did is reported, and
    // kept out of the message figures.
    let mut early = Vec::new();
    while let Ok(p) = publishes.try_recv() {
        early.push(p.node);
    }
    if !early.is_empty() {
        eprintln!(
            "warning: {} publishes during registration ({} mode), first for {}",
            early.len(),
            mode.name(),
            early[0]
        );
    }
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let session =
            client::connect(setup.c2s, tls.as_ref(), &server::sender_name(s), "load").await?;
        senders.push(session.into_transport());
    }
    let mut runs = Vec::new();
    let mut next_user = 0;
    for (k, pattern) in args.patterns.iter().enumerate() {
        if k > 0 {
            // Users messaged in the last pattern are past their batch window (the server
            // runs the default) before the next; the server process reports no event for it.
            let window = cloud_notify::config::Config::default().push_batch_window;
            tokio::time::sleep(window + Duration::from_millis(200)).await;
        }
        let (count, rate) = if pattern == "burst" {
            (args.burst.min(users), None)
        } else {
            (args.steady.min(users), Some(args.rate))
        };
        let targets: Vec<usize> = (0..count).map(|i| (next_user + i) % users).collect();
        next_user = (next_user + count) % users;
        let profiler = match server.local_pid() {
            Some(pid) => server::Profiler::attach(pid)?,
            None => None,
        };
        let cpu_before = server.cpu()?;
        let outcome =
            send_and_collect(&mut senders, &mut publishes, &targets, devices, rate).await?;
        let cpu = server.cpu()?.since(cpu_before);
        if let Some(p) = profiler {
            p.stop();
        }
        let after = server.memory()?;
        let mut latencies = outcome.latencies;
        latencies.sort_by(f64::total_cmp);
        let received = latencies.len();
        runs.push(Run {
            users,
            devices,
            mode,
            tls: args.tls,
            pattern: if rate.is_some() { "steady" } else { "burst" },
            rate,
            messages: count,
            publishes_expected: count * devices,
            publishes_received: received,
            lost: count * devices - received.min(count * devices),
            duplicated: outcome.duplicated,
            latency_ms: report::percentiles(&latencies),
            publishes_per_s: received as f64 / outcome.span.as_secs_f64().max(1e-9),
            cpu_ms_per_publish: cpu as f64 / 1e6 / received.max(1) as f64,
            memory: Memory {
                idle: idle.rss,
                idle_anonymous: idle.anon,
                registered: registered.rss,
                registered_anonymous: registered.anon,
                after_messages: after.rss,
                after_messages_anonymous: after.anon,
                peak: after.peak,
            },
            bytes_per_registration: registered.rss.saturating_sub(idle.rss) as f64
                / (users * devices) as f64,
            anonymous_bytes_per_registration: registered.anon.saturating_sub(idle.anon) as f64
                / (users * devices) as f64,
            registration_s,
            latencies,
        });
    }
    drop(senders);
    let log = server.stop()?;
    // The server's warnings (limits reached, anything refused) stay for reading.
    let path = args.out.join(format!("server-{users}-{}.log", mode.name()));
    let _ = std::fs::create_dir_all(&args.out);
    let _ = std::fs::write(&path, log);
    Ok(runs)
}

async fn register_all(
    setup: &server::Prepared,
    tls: Option<&tokio_rustls::TlsConnector>,
    users: usize,
    devices: usize,
    mode: Mode,
    concurrency: usize,
) -> Result<(), String> {
    let mut failures = Vec::new();
    // A user's devices are all online before any leaves, as a household's phones are;
    // each then reads its siblings' presence, so leaving causes no publish.
    let mut results = futures::stream::iter(0..users)
        .map(|u| async move {
            let mut sessions = Vec::with_capacity(devices);
            for d in 0..devices {
                let mut s: AnySession =
                    client::connect(setup.c2s, tls, &server::user_name(u), &format!("d{d}"))
                        .await?;
                s.register(&client::node(u, d)).await?;
                sessions.push(s);
            }
            let jids: Vec<String> = (0..devices)
                .map(|d| format!("{}/d{d}", server::user_jid(u)))
                .collect();
            for (d, s) in sessions.iter_mut().enumerate() {
                s.settle(&jids[d..]).await?;
            }
            for s in sessions {
                s.leave(mode).await?;
            }
            Ok::<(), String>(())
        })
        .buffer_unordered(concurrency.div_ceil(devices));
    while let Some(r) = results.next().await {
        if let Err(e) = r {
            failures.push(e);
        }
    }
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "{} of {users} users failed to register; first: {first}",
            failures.len()
        )),
    }
}

/// Matches publishes to the messages that caused them, by node.
struct Collector {
    sent_at: HashMap<String, Instant>,
    seen: HashMap<String, usize>,
    latencies: Vec<f64>,
    /// Second and later publishes for one node, and publishes nobody caused.
    duplicated: usize,
    last: Option<Instant>,
}

impl Collector {
    fn record(&mut self, p: app::Received) {
        self.last = Some(self.last.map_or(p.at, |l| l.max(p.at)));
        let Some(t) = self.sent_at.get(&p.node) else {
            self.duplicated += 1;
            return;
        };
        let n = self.seen.entry(p.node).or_default();
        *n += 1;
        if *n > 1 {
            self.duplicated += 1;
        } else {
            self.latencies
                .push(p.at.saturating_duration_since(*t).as_secs_f64() * 1e3);
        }
    }
}

struct Outcome {
    latencies: Vec<f64>,
    duplicated: usize,
    /// From the first message written to the last publish received.
    span: Duration,
}

/// Writes one message per target user, as a burst or at `rate`, and collects the
/// publishes: one per device of each target, matched by node.
async fn send_and_collect(
    senders: &mut [Transport],
    publishes: &mut UnboundedReceiver<app::Received>,
    targets: &[usize],
    devices: usize,
    rate: Option<u32>,
) -> Result<Outcome, String> {
    let mut c = Collector {
        sent_at: HashMap::with_capacity(targets.len() * devices),
        seen: HashMap::with_capacity(targets.len() * devices),
        latencies: Vec::with_capacity(targets.len() * devices),
        duplicated: 0,
        last: None,
    };
    let first = Instant::now();
    let mut ticker = rate.map(|r| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    for (i, &u) in targets.iter().enumerate() {
        if let Some(t) = &mut ticker {
            // Publishes are read while waiting for the next tick, so their arrival times
            // are not held back by the sending.
            loop {
                tokio::select! {
                    _ = t.tick() => break,
                    Some(p) = publishes.recv() => c.record(p),
                }
            }
        }
        let msg = format!(
            "<message type='chat' to='{}' id='m{i}'><body>load {i}</body></message>",
            server::user_jid(u)
        );
        let now = Instant::now();
        for d in 0..devices {
            c.sent_at.insert(client::node(u, d), now);
        }
        senders[i % senders.len()]
            .write(msg.as_bytes())
            .await
            .map_err(|e| format!("sender: {e}"))?;
    }
    let expected = targets.len() * devices;
    let deadline = Instant::now() + LOSS_DEADLINE;
    while c.latencies.len() < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, publishes.recv()).await {
            Ok(Some(p)) => c.record(p),
            Ok(None) => return Err("the app server's stream ended".into()),
            Err(_) => break,
        }
    }
    // Duplicates would arrive after the originals; listen a little longer.
    while let Ok(Some(p)) = tokio::time::timeout(QUIET, publishes.recv()).await {
        c.record(p);
    }
    Ok(Outcome {
        span: c.last.unwrap_or(first).saturating_duration_since(first),
        latencies: c.latencies,
        duplicated: c.duplicated,
    })
}
