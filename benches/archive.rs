//! The message archive's benchmark (issue 12): the store, through its actor and its
//! group commit, as the server drives it.
//!
//! ```sh
//! cargo bench --bench archive                       # 100,000 messages, expire 10,000
//! cargo bench --bench archive -- --messages 1000000 # does memory grow with the archive?
//! ```
//!
//! Phases: `--messages` messages archived for one user from 100 peers (as the user actor
//! and the sessions send them: `Archive`, coalesced into the store's batches); then pages
//! of 50 by `with` and by time range, each page's time (p50, p99); then the expiry of the
//! oldest `--expire` messages (one `ExpireArchive` write, as an expiry round sends it).
//! Prints time and the process's Rss (of /proc/self/status) after each phase, and Rss at a
//! tenth of the archive, so a growth with the archive's size shows.

use std::time::{Duration, Instant};

use actix::prelude::*;
use clap::Parser;

use cloud_notify::store::archive::{ArchiveQuery, ArchivedMessage};
use cloud_notify::store::{self, Archive, ArchiveGate, Change, QueryArchive, Store, Write};

#[derive(Parser)]
#[command(about = "cloud-notify archive benchmark")]
struct Args {
    /// Messages archived.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Oldest messages expired at the end.
    #[arg(long, default_value_t = 10_000)]
    expire: u64,
    /// Pages read, of each kind.
    #[arg(long, default_value_t = 200)]
    pages: usize,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

const PEERS: u64 = 100;
const PAGE: usize = 50;
/// Messages archived between two barriers: under `store_max_pending` (4096).
const STEP_MESSAGES: u64 = 2000;
/// Archive ids are microseconds: the messages are a millisecond apart, from a day ago.
const STEP_US: u64 = 1000;

fn main() {
    let args = Args::parse();
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no temporary directory: {e}");
            std::process::exit(1);
        }
    };
    let system = System::new();
    let result = system.block_on(run(&args, dir.path()));
    if let Err(e) = result {
        eprintln!("archive benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn message(i: u64) -> ArchivedMessage {
    let with = format!("peer{}@example.org/phone", i % PEERS);
    ArchivedMessage {
        stanza: format!(
            "<message xmlns='jabber:client' type='chat' from='{with}' to='juliet@example.com' id='m{i}'><body>message number {i} of the archive benchmark</body><stanza-id xmlns='urn:xmpp:sid:0' by='juliet@example.com' id='{i}'/></message>"
        ),
        with,
        outgoing: false,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn run(args: &Args, dir: &std::path::Path) -> Result<(), String> {
    let file = store::open_database(dir, 4 << 20).map_err(|e| e.to_string())?;
    store::admin::add_user(&file, "juliet", "pw", 4096).map_err(|e| e.to_string())?;
    let store = Store::start(file, 4096);
    let gate = ArchiveGate::new(4096);
    let base = cloud_notify::xmpp::mam::clock::now_us().saturating_sub(86_400_000_000);
    println!(
        "archive benchmark: {} messages from {PEERS} peers, pages of {PAGE}, expiry of {}",
        args.messages, args.expire
    );
    println!("Rss at start: {} KiB", rss_kib());

    // Phase 1: archive. The store answers nothing for Archive; a durable write after
    // each step is the barrier that says the step is committed. Each write takes a
    // place at the gate first, as the server's writers do (store_max_pending places);
    // a step stays under it, as a server's sessions do when the store keeps up.
    let started = Instant::now();
    let step = STEP_MESSAGES;
    let mut rss_at_tenth = 0;
    let mut i = 0;
    while i < args.messages {
        let end = (i + step).min(args.messages);
        for n in i..end {
            let permit = gate.enter().await.ok_or("the archive gate is closed")?;
            store.do_send(Archive {
                change: Change::Archive {
                    user: "juliet".into(),
                    id: base + n * STEP_US,
                    message: message(n),
                    max: u64::MAX,
                },
                durable: false,
                permit,
            });
        }
        barrier(&store).await?;
        if i < args.messages / 10 && end >= args.messages / 10 {
            rss_at_tenth = rss_kib();
        }
        i = end;
    }
    let took = started.elapsed();
    println!(
        "archived {} in {:.2} s ({:.0} messages/s); Rss {} KiB (at a tenth: {} KiB)",
        args.messages,
        took.as_secs_f64(),
        args.messages as f64 / took.as_secs_f64().max(1e-9),
        rss_kib(),
        rss_at_tenth
    );

    // Phase 2: pages by `with` (a peer's last 50, as a phone catching up asks) and by a
    // time range somewhere in the archive.
    let mut by_with = Vec::with_capacity(args.pages);
    let mut by_range = Vec::with_capacity(args.pages);
    for p in 0..args.pages as u64 {
        let q = ArchiveQuery {
            user: "juliet".into(),
            with: Some(format!("peer{}@example.org", p % PEERS)),
            high: u64::MAX,
            max: PAGE,
            from_end: true,
            ..Default::default()
        };
        let t = Instant::now();
        let page = query(&store, q).await?;
        by_with.push(t.elapsed());
        check_page(page.rows.len(), "with")?;
        let start = base + (p * 7919 % args.messages.saturating_sub(PAGE as u64).max(1)) * STEP_US;
        let q = ArchiveQuery {
            user: "juliet".into(),
            low: start,
            high: start + 10 * PAGE as u64 * STEP_US,
            max: PAGE,
            ..Default::default()
        };
        let t = Instant::now();
        let page = query(&store, q).await?;
        by_range.push(t.elapsed());
        check_page(page.rows.len(), "range")?;
    }
    by_with.sort();
    by_range.sort();
    println!(
        "page of {PAGE} by with:  p50 {}  p99 {}",
        ms(percentile(&by_with, 0.5)),
        ms(percentile(&by_with, 0.99))
    );
    println!(
        "page of {PAGE} by range: p50 {}  p99 {}",
        ms(percentile(&by_range, 0.5)),
        ms(percentile(&by_range, 0.99))
    );

    // Phase 3: expiry of the oldest messages, in one write as an expiry round does it.
    let before = base + args.expire.min(args.messages) * STEP_US;
    let t = Instant::now();
    store
        .send(Write {
            changes: vec![Change::ExpireArchive { before }],
            durable: true,
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    println!(
        "expired {} in {}; Rss {} KiB",
        args.expire.min(args.messages),
        ms(t.elapsed()),
        rss_kib()
    );
    let left = query(
        &store,
        ArchiveQuery {
            user: "juliet".into(),
            high: u64::MAX,
            max: 1,
            ..Default::default()
        },
    )
    .await?;
    if args.expire < args.messages && left.rows.first().map(|r| r.id) != Some(before) {
        return Err(format!(
            "after expiry the oldest is {:?}, expected {before}",
            left.rows.first().map(|r| r.id)
        ));
    }
    store.send(store::Close).await.map_err(|e| e.to_string())?;
    Ok(())
}

fn check_page(len: usize, what: &str) -> Result<(), String> {
    if len == PAGE {
        Ok(())
    } else {
        Err(format!("a page by {what} held {len} messages, not {PAGE}"))
    }
}

/// A durable empty write: answered once everything archived before it is committed.
async fn barrier(store: &Addr<Store>) -> Result<(), String> {
    store
        .send(Write {
            changes: Vec::new(),
            durable: true,
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

async fn query(
    store: &Addr<Store>,
    q: ArchiveQuery,
) -> Result<cloud_notify::store::archive::ArchivePage, String> {
    store
        .send(QueryArchive(q))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}
