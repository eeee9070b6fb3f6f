//! The archive phase (`--archive N`): the message archive through the real server over
//! the wire, as a phone catching up meets it.
//!
//! 1. N messages from the senders to one online user (so each is delivered live and
//!    archived, with its stanza-id read from the delivered copy); the owner reads them
//!    as they come, at most `WINDOW` behind, so none overflows to offline storage. The
//!    oldest `--archive-expire` are sent first, then a pause of `GAP`, then the rest.
//! 2. MAM pages of 50 over the wire: a sender's newest 50 by `with` (an empty
//!    `<before/>`, as a phone catching up asks) and 50 by a `start`/`end` time range.
//! 3. Expiry: the server is stopped and started again on its data with
//!    `archive_expires_after` set so that the cutoff of its first round (run as it
//!    starts) falls at the start of the pause: exactly the oldest messages expire.
//!    The owner polls the oldest message of the archive until it is the first one
//!    after the pause; the time is from the process's start (so it includes the
//!    server's start, reported on its own as well).
//!
//! Rss of the server process after each phase, and at a tenth of the archive and at
//! the whole of it: the archive is on disk, so Rss should not grow with its size.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::watch;
use xmpp_parsers::minidom::Element;

use crate::client::{self, AnySession, Session, Transport};
use crate::report::{Percentiles, percentiles};
use crate::server::{self, Prepared, Reading};
use cloud_notify::xmpp::mam::clock;

const MAM: &str = "urn:xmpp:mam:2";
const SID: &str = "urn:xmpp:sid:0";
const RSM: &str = "http://jabber.org/protocol/rsm";
const PAGE: usize = 50;
/// Messages the owner may be behind the senders: under the server's channel of 256 per
/// session, past which a message would go to offline storage instead.
const WINDOW: usize = 128;
/// The pause after the messages that are to expire: the expiry cutoff is set at its
/// start, so a round up to this late (the server's start, later rounds) still expires
/// exactly those.
const GAP: Duration = Duration::from_secs(4);
/// How long the expiry may take to show.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(120);
/// Messages spanned by a page by time range (its first 50 are the page).
const RANGE_SPAN: usize = 500;

/// What `--archive` asks for.
pub struct Options {
    pub messages: usize,
    pub expire: usize,
    pub pages: usize,
}

/// Resident memory at each point, bytes (Rss and its anonymous part).
#[derive(Serialize, Default)]
pub struct ArchiveMemory {
    pub idle: Reading,
    pub at_a_tenth: Reading,
    pub archived: Reading,
    pub after_pages: Reading,
    /// The server started again on the archive (before its expiry shows).
    pub restarted: Reading,
    pub after_expiry: Reading,
}

#[derive(Serialize)]
pub struct ArchiveRun {
    pub messages: usize,
    pub senders: usize,
    pub archive_s: f64,
    pub messages_per_s: f64,
    pub pages: usize,
    pub page_by_with_ms: Percentiles,
    pub page_by_range_ms: Percentiles,
    pub expired: usize,
    /// From the restarted process's spawn until its ports accept connections.
    pub restart_ms: f64,
    /// From the restarted process's spawn until the owner sees the oldest messages
    /// gone (includes `restart_ms`; polled every 20 ms).
    pub expiry_seen_ms: f64,
    pub memory: ArchiveMemory,
}

fn owner_name() -> String {
    server::user_name(0)
}

fn owner_jid() -> String {
    server::user_jid(0)
}

fn plain(s: AnySession) -> Result<Session<TcpStream>, String> {
    match s {
        AnySession::Plain(s) => Ok(*s),
        AnySession::Tls(_) => Err("the archive phase runs on plaintext streams".into()),
    }
}

fn el(xml: &str) -> Result<Element, String> {
    xml.parse().map_err(|e| format!("bad xml {xml}: {e}"))
}

/// The owner, online with presence.
async fn owner(setup: &Prepared, resource: &str) -> Result<Session<TcpStream>, String> {
    let mut s = plain(client::connect(setup.c2s, None, &owner_name(), resource).await?)?;
    s.send(&el("<presence xmlns='jabber:client'/>")?).await?;
    s.until("presence").await?;
    Ok(s)
}

pub async fn run(setup: &Prepared, senders_n: usize, o: &Options) -> Result<ArchiveRun, String> {
    if o.messages < RANGE_SPAN + 1 || o.expire == 0 || o.expire >= o.messages {
        return Err(format!(
            "--archive needs more than {RANGE_SPAN} messages and 0 < --archive-expire < it"
        ));
    }
    // The cap must not remove what the phase counts; retention stays the default (a
    // week) until the expiry phase.
    setup.set_extra(&format!("archive_max_messages_per_user = {}", o.messages))?;
    let server = setup.start().await?;
    let mut memory = ArchiveMemory {
        idle: server.settle().await?,
        ..Default::default()
    };
    let mut me = owner(setup, "phone").await?;
    let mut senders = Vec::new();
    for s in 0..senders_n {
        let session = client::connect(setup.c2s, None, &server::sender_name(s), "load").await?;
        senders.push(session.into_transport());
    }

    // Phase 1: the archive, in segments: the ones to expire, the pause, up to a tenth
    // (Rss), then the rest (Rss).
    let mut ids = vec![0u64; o.messages];
    let tenth = o.messages / 10;
    let mut cuts = vec![o.expire, tenth.max(1), o.messages];
    cuts.sort_unstable();
    cuts.dedup();
    let started = Instant::now();
    let mut paused = Duration::ZERO;
    let mut from = 0;
    for cut in cuts {
        archive_segment(&mut senders, &mut me, from..cut, &mut ids).await?;
        if cut == o.expire {
            let t = Instant::now();
            tokio::time::sleep(GAP).await;
            paused += t.elapsed();
        }
        if cut == tenth {
            memory.at_a_tenth = server.settle().await?;
        }
        from = cut;
    }
    let archive_s = (started.elapsed() - paused).as_secs_f64();
    memory.archived = server.settle().await?;

    // Phase 2: pages.
    let mut by_with = Vec::with_capacity(o.pages);
    let mut by_range = Vec::with_capacity(o.pages);
    for p in 0..o.pages {
        let with = format!("sender{}@{}", p % senders_n, server::DOMAIN);
        let x = form(&[("with", &with)]);
        let t = Instant::now();
        let got = page(&mut me, &format!("w{p}"), &x, "<before/>").await?;
        by_with.push(t.elapsed().as_secs_f64() * 1e3);
        check(got, "with")?;
        let k = p * 7919 % (o.messages - RANGE_SPAN);
        let span = &ids[k..=k + RANGE_SPAN];
        let low = span.iter().min().copied().unwrap_or(0);
        let high = span.iter().max().copied().unwrap_or(0);
        let x = form(&[("start", &clock::stamp(low)), ("end", &clock::stamp(high))]);
        let t = Instant::now();
        let got = page(&mut me, &format!("r{p}"), &x, "").await?;
        by_range.push(t.elapsed().as_secs_f64() * 1e3);
        check(got, "time range")?;
    }
    by_with.sort_by(f64::total_cmp);
    by_range.sort_by(f64::total_cmp);
    memory.after_pages = server.settle().await?;
    drop(senders);
    drop(me);
    server.stop()?;

    // Phase 3: expiry, by the round a server runs as it starts.
    let last_old = ids[..o.expire].iter().max().copied().unwrap_or(0);
    let first_kept = ids[o.expire..].iter().min().copied().unwrap_or(0);
    if first_kept <= last_old {
        return Err("the messages after the pause are not newer than those before".into());
    }
    // Just after the last old message: the start's delay and each later round (every
    // tenth of the retention, at least a second) only move the cutoff on into the pause.
    let cutoff = last_old + 1;
    let keep_us = clock::now_us().saturating_sub(cutoff);
    setup.set_extra(&format!(
        "archive_max_messages_per_user = {}\narchive_expires_after = {:.6}",
        o.messages,
        keep_us as f64 / 1e6
    ))?;
    let spawned = Instant::now();
    let server = setup.restart().await?;
    let restart_ms = spawned.elapsed().as_secs_f64() * 1e3;
    memory.restarted = server.memory()?;
    let mut me = owner(setup, "catching-up").await?;
    let mut n = 0;
    let expiry_seen_ms = loop {
        n += 1;
        let oldest = oldest(&mut me, &format!("x{n}")).await?;
        if oldest == Some(first_kept) {
            break spawned.elapsed().as_secs_f64() * 1e3;
        }
        if oldest.is_some_and(|id| id > first_kept) {
            return Err(format!(
                "expiry went past the pause ({GAP:?}): the server took too long to start"
            ));
        }
        if spawned.elapsed() > EXPIRY_DEADLINE {
            return Err(format!(
                "the oldest messages were not expired within {EXPIRY_DEADLINE:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    memory.after_expiry = server.settle().await?;
    drop(me);
    server.stop()?;
    Ok(ArchiveRun {
        messages: o.messages,
        senders: senders_n,
        archive_s,
        messages_per_s: o.messages as f64 / archive_s.max(1e-9),
        pages: o.pages,
        page_by_with_ms: percentiles(&by_with),
        page_by_range_ms: percentiles(&by_range),
        expired: o.expire,
        restart_ms,
        expiry_seen_ms,
        memory,
    })
}

/// Messages `range` (their number is in their id) from the senders in turn, read by the
/// owner as they arrive; `ids` gets each one's archive id from its stanza-id.
async fn archive_segment(
    senders: &mut [Transport],
    me: &mut Session<TcpStream>,
    range: std::ops::Range<usize>,
    ids: &mut [u64],
) -> Result<(), String> {
    let (tx, mut rx) = watch::channel(range.start);
    let send = async {
        let n = senders.len();
        for i in range.clone() {
            rx.wait_for(|&read| i < read + WINDOW)
                .await
                .map_err(|_| "the owner stopped reading".to_string())?;
            let msg = format!(
                "<message type='chat' to='{}' id='a{i}'><body>archived message {i} of the load benchmark</body></message>",
                owner_jid()
            );
            senders[i % n]
                .write(msg.as_bytes())
                .await
                .map_err(|e| format!("sender: {e}"))?;
        }
        Ok::<(), String>(())
    };
    let read = async {
        let tx = tx;
        let mut read = range.start;
        while read < range.end {
            let m = me.next().await?;
            let Some(i) = m
                .attr("id")
                .and_then(|id| id.strip_prefix('a'))
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            let id = m
                .children()
                .find(|c| c.is("stanza-id", SID) && c.attr("by") == Some(owner_jid().as_str()))
                .and_then(|c| c.attr("id"))
                .and_then(|id| id.parse::<u64>().ok())
                .ok_or_else(|| format!("message {i} came without a stanza-id"))?;
            *ids.get_mut(i).ok_or("a message id out of range")? = id;
            read += 1;
            tx.send_replace(read);
        }
        Ok::<(), String>(())
    };
    let (sent, read) = tokio::join!(send, read);
    sent.and(read)
}

/// A MAM data form with these fields.
fn form(fields: &[(&str, &str)]) -> String {
    let mut x = format!(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
    );
    for (var, value) in fields {
        x.push_str(&format!(
            "<field var='{var}'><value>{value}</value></field>"
        ));
    }
    x.push_str("</x>");
    x
}

/// Runs one query for a page of `PAGE`; the results it got.
async fn page(
    me: &mut Session<TcpStream>,
    id: &str,
    form: &str,
    paging: &str,
) -> Result<usize, String> {
    let rows = query(me, id, form, &format!("<max>{PAGE}</max>{paging}")).await?;
    Ok(rows.len())
}

/// The archive id of the oldest message in the archive.
async fn oldest(me: &mut Session<TcpStream>, id: &str) -> Result<Option<u64>, String> {
    let rows = query(me, id, &form(&[]), "<max>1</max>").await?;
    Ok(rows.first().copied())
}

/// The archive ids of the query's results, in order.
async fn query(
    me: &mut Session<TcpStream>,
    id: &str,
    form: &str,
    set: &str,
) -> Result<Vec<u64>, String> {
    me.send(&el(&format!(
        "<iq xmlns='jabber:client' type='set' id='{id}'><query xmlns='{MAM}' queryid='{id}'>{form}<set xmlns='{RSM}'>{set}</set></query></iq>"
    ))?)
    .await?;
    let mut rows = Vec::new();
    loop {
        let r = me.next().await?;
        if r.name() == "iq" && r.attr("id") == Some(id) {
            if r.attr("type") != Some("result") {
                return Err(format!("query refused: {}", String::from(&r)));
            }
            return Ok(rows);
        }
        if let Some(result) = r.get_child("result", MAM) {
            let n = result
                .attr("id")
                .and_then(|i| i.parse::<u64>().ok())
                .ok_or("a result without an archive id")?;
            rows.push(n);
        }
    }
}

fn check(got: usize, what: &str) -> Result<(), String> {
    if got == PAGE {
        Ok(())
    } else {
        Err(format!("a page by {what} held {got} messages, not {PAGE}"))
    }
}

fn mb(r: &Reading) -> String {
    format!(
        "{:.1} MB ({:.1} anonymous)",
        r.rss as f64 / 1_048_576.0,
        r.anon as f64 / 1_048_576.0
    )
}

pub fn print(r: &ArchiveRun) {
    println!(
        "archive: {} messages from {} senders in {:.1} s ({:.0}/s, the pause not counted)",
        r.messages, r.senders, r.archive_s, r.messages_per_s
    );
    for (what, p) in [
        ("with", &r.page_by_with_ms),
        ("time range", &r.page_by_range_ms),
    ] {
        println!(
            "  {} pages of {PAGE} by {what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            r.pages, p.p50, p.p99, p.max
        );
    }
    println!(
        "  expiry of the oldest {}: seen {:.0} ms after the restart's spawn (listening after {:.0} ms)",
        r.expired, r.expiry_seen_ms, r.restart_ms
    );
    let m = &r.memory;
    println!("  Rss idle {}", mb(&m.idle));
    println!("  Rss at a tenth of the archive {}", mb(&m.at_a_tenth));
    println!("  Rss with the whole archive {}", mb(&m.archived));
    println!("  Rss after the pages {}", mb(&m.after_pages));
    println!("  Rss restarted on the archive {}", mb(&m.restarted));
    println!("  Rss after the expiry {}", mb(&m.after_expiry));
}
