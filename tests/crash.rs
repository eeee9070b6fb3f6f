//! Crash durability at random points (issue 8, D23): the real binary, killed with SIGKILL
//! at random moments while clients use it, restarted on the same data directory, over and
//! over. After every kill the database file must hold everything the server promised,
//! and at the end every message the server accepted reaches its recipient exactly once.
//!
//! What runs in each cycle, concurrently, until the kill:
//! - juliet's phone logs in, enables stream management with resumption and push
//!   (node `p`), and drops its socket: its session hibernates. Sometimes it comes back:
//!   it resumes, acknowledges what it read, proves the acknowledgement was handled (see
//!   "delivered") and drops its socket again; or it logs in anew with the same
//!   resource, which ends the hibernated session (its queue moves to offline storage),
//!   and hibernates the new one;
//! - juliet's control client enables and disables registrations `n0`..`n9`;
//! - romeo sends chat messages to the phone's full JID (the hibernated session's queue)
//!   and to juliet's bare JID (offline storage: juliet never sends presence during the
//!   cycles), a few at a time, each group followed by a ping round trip;
//! - the app server (a component) records every publish and answers it.
//!
//! What the server promised, precisely:
//! - **acknowledged registration**: an `<enable/>` or `<disable/>` whose IQ result reached
//!   the client. The server answers only after the change is durable. The last
//!   acknowledged change of each node must be in the file after the kill; a change
//!   without its result may or may not be (the file then says which).
//! - **accepted message**: a message whose body the app server received in a publish.
//!   The server publishes for a message only once it is durable: the offline path after
//!   the commit that stored it, the hibernated path after the commit of its queued copy
//!   (D23). A message found in the file after a kill counts as accepted from then on.
//!   The sender's XEP-0198 `<a h/>` and a ping round trip are *not* promises: the server
//!   counts a stanza handled when it has read it, and routes it afterwards.
//! - **delivered**: acknowledged by the phone (`<a h/>` or the `h` of `<resume/>`) and
//!   followed by a completed round trip of the phone's own `<enable/>` (a durable write
//!   asked after the acknowledgement was handled; the store answers in order, so by
//!   then the deletion of the message's queued copy, which nobody waits for, is durable
//!   too); or read by juliet from offline storage at the end; or bounced to romeo.
//!
//! Checked after every kill: each accepted message, not yet delivered, is in the file
//! exactly once (offline storage or a queued copy); a delivered one is not; any other
//! message at most once. At the end, after a last restart: juliet's login gets each
//! accepted message not yet delivered exactly once, and nothing twice. One duplicate is
//! tolerated and counted: a message the phone acknowledged without the round trip after
//! it completing before the kill (its queued copy's deletion may not have been
//! committed yet).
//!
//! `CLOUD_NOTIFY_CRASH_CYCLES` (default 200; 20 under `CLOUD_NOTIFY_TEST_RUNNER`, that is
//! qemu) sets the number of kills, `CLOUD_NOTIFY_CRASH_SEED` the random seed (printed).
//! The server's log is in the temporary directory, whose path is printed first; it is
//! removed at the end unless the test fails or `CLOUD_NOTIFY_CRASH_KEEP` is set.

#[path = "host/patience.rs"]
mod patience;
#[allow(dead_code)]
#[path = "host/raw.rs"]
mod raw;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc::UnboundedReceiver;
use xmpp_parsers::minidom::Element;

use cloud_notify::store::{open_database, schema};
use raw::Raw;

const APP: &str = "push.localhost";
const APP_SECRET: &str = "crash-secret";
const FORM: &str = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>s</value></field></x>";
/// Registrations the control client enables and disables.
const NODES: u64 = 10;
/// The kill comes within this long of the start of the process (µs): some land in the
/// start itself, most in the clients' work, some after it.
const KILL_WITHIN_US: u64 = 500_000;
/// How long any one answer may take before the test calls the server stuck.
const ANSWER: Duration = Duration::from_secs(10);

/// splitmix64: small, seedable, good enough to pick moments and actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

// ------------------------------------------------------------------ what was promised

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    Present,
    Absent,
    /// A change was asked for and not answered: the file decides.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ack {
    /// Not acknowledged by the phone.
    No,
    /// Acknowledged; the durable round trip after it did not complete (yet).
    Unconfirmed,
    /// Acknowledged and confirmed: delivered.
    Delivered,
    /// Acknowledged without confirmation before a kill, and still in the file after it:
    /// it comes once more from offline storage (the tolerated duplicate).
    Again,
}

#[derive(Debug, Clone)]
struct Msg {
    cycle: u64,
    /// Published to the app server, or found durable after a kill.
    accepted: bool,
    ack: Ack,
    bounced: u32,
    /// Not accepted and not in the file after a kill: it never existed for the server.
    lost: bool,
}

#[derive(Default)]
struct Model {
    regs: BTreeMap<String, Reg>,
    msgs: BTreeMap<String, Msg>,
    /// Messages the phone has read since it enabled stream management, in order; how
    /// many stanzas it handled in all (the `h` it owes).
    phone_read: Vec<String>,
    phone_handled: u32,
    /// How many of `phone_read` are acknowledged (sent in `h`).
    phone_acked: usize,
    /// The phone's resumption id, while its session may live.
    previd: Option<String>,
    stats: Stats,
}

#[derive(Default, Debug)]
struct Stats {
    sent: usize,
    published: usize,
    enables_acked: usize,
    disables_acked: usize,
    resumed: usize,
    delivered_to_phone: usize,
    tolerated_duplicates: usize,
    lost_unaccepted: usize,
    kills_before_ready: usize,
    kills_after_script: usize,
    requeued_messages: usize,
    requeue_starts: usize,
}

type Shared = Rc<RefCell<Model>>;

// ------------------------------------------------------------------ the server process

struct Setup {
    /// Kept when the test fails (a panic would remove a `TempDir`).
    dir: PathBuf,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
    c2s: SocketAddr,
    component: SocketAddr,
}

/// A free port below Linux's default ephemeral range (32768 and up): the server's ports
/// are free between a kill and the restart, and an outgoing connection (of this test or
/// of anything else on the machine) could otherwise be given one as its own port.
fn free_port(rng: &mut Rng) -> SocketAddr {
    for _ in 0..1000 {
        let addr = SocketAddr::from(([127, 0, 0, 1], 20_000 + rng.below(12_000) as u16));
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free port in 20000..32000");
}

/// The binary, through `CLOUD_NOTIFY_TEST_RUNNER` (qemu) when the tests run for another
/// architecture, as in tests/cli.rs.
fn cloud_notify() -> Command {
    let bin = env!("CARGO_BIN_EXE_cloud-notify");
    match std::env::var("CLOUD_NOTIFY_TEST_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut parts = runner.split_whitespace();
            let mut c = Command::new(parts.next().unwrap_or_default());
            c.args(parts).arg(bin);
            c
        }
        _ => Command::new(bin),
    }
}

fn setup(rng: &mut Rng) -> Setup {
    let dir = tempfile::Builder::new()
        .prefix("cloud-notify-crash")
        .tempdir()
        .unwrap()
        .keep();
    let data = dir.join("data");
    let config = dir.join("crash.toml");
    let (c2s, component) = (free_port(rng), free_port(rng));
    // Plaintext and PLAIN for quick logins; the body in publishes, so that the app
    // server can tell which message a publish is for; a 1 ms window so that nearly
    // every message publishes (D20); limits far above what the run stores, so that
    // nothing is bounced for room.
    std::fs::write(
        &config,
        format!(
            r#"domain = "localhost"
data_dir = {data:?}
c2s_listen = "{c2s}"
component_listen = "{component}"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
scram_iterations = 4096
push_notification_with_body = true
push_batch_window = 0.001
push_max_devices = 16
offline_max_messages = 1000000
offline_max_bytes = 1073741824
smacks_max_queue_size = 100000

[[component]]
jid = "{APP}"
secret = "{APP_SECRET}"
"#,
            data = data.display().to_string(),
        ),
    )
    .unwrap();
    let mut import = cloud_notify()
        .arg("--config")
        .arg(&config)
        .args(["user", "import", "--create"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    import
        .stdin
        .take()
        .unwrap()
        .write_all(b"juliet@localhost juliet-pw\nromeo@localhost romeo-pw\n")
        .unwrap();
    assert!(import.wait().unwrap().success(), "user import");
    let log = dir.join("server.log");
    Setup {
        dir,
        config,
        data,
        log,
        c2s,
        component,
    }
}

struct Server {
    child: Child,
    /// `true` once the server logs that it serves; `false` if it died first.
    ready: tokio::sync::oneshot::Receiver<bool>,
    /// Messages the start moved from hibernated sessions' queues to offline storage.
    requeued: std::sync::mpsc::Receiver<usize>,
    stderr: std::thread::JoinHandle<()>,
}

impl Server {
    /// Starts `serve`; its log goes to the setup's log file, after a line naming `label`.
    fn spawn(setup: &Setup, label: &str) -> Server {
        let mut child = cloud_notify()
            .arg("--config")
            .arg(&setup.config)
            .arg("serve")
            .env("CLOUD_NOTIFY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let (requeued_tx, requeued) = std::sync::mpsc::channel();
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&setup.log)
            .unwrap();
        let _ = writeln!(log, "==== {label}");
        let stderr = std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if line.contains("serving")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(true);
                }
                if line.contains("hibernated sessions are now offline messages")
                    && let Some(n) = field(&line, "messages=")
                {
                    let _ = requeued_tx.send(n);
                }
            }
            if let Some(tx) = ready.take() {
                let _ = tx.send(false);
            }
        });
        Server {
            child,
            ready,
            requeued,
            stderr,
        }
    }

    /// Waits (bounded) until it serves; `false` when it exited first.
    async fn ready(&mut self) -> bool {
        tokio::time::timeout(Duration::from_secs(60), &mut self.ready)
            .await
            .expect("the server serves or exits within 60 s")
            .unwrap_or(false)
    }

    /// SIGKILL, then the exit and the end of its log.
    fn kill(mut self, log: &Path) -> usize {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the server exited by itself ({status}); see {}",
                log.display()
            );
        }
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "killed: {status}");
        self.finish()
    }

    /// SIGTERM: an orderly stop, which must exit cleanly.
    fn stop(mut self) -> usize {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "clean exit on SIGTERM: {status}");
        self.finish()
    }

    fn finish(self) -> usize {
        let _ = self.stderr.join();
        self.requeued.try_iter().sum()
    }
}

/// The number after `key` in a log line (`messages=12`).
fn field(line: &str, key: &str) -> Option<usize> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

// ------------------------------------------------------------------ peers

/// A logged-in peer: parsed elements in, raw bytes out. Every failure is an `Err`: the
/// server may die at any moment, and that is the experiment.
struct Peer {
    rx: UnboundedReceiver<Element>,
    wr: OwnedWriteHalf,
}

impl Peer {
    fn new(raw: Raw) -> Peer {
        let (rx, wr) = raw.split();
        Peer { rx, wr }
    }

    async fn send(&mut self, xml: &str) -> Result<(), String> {
        self.wr
            .write_all(xml.as_bytes())
            .await
            .map_err(|e| e.to_string())
    }

    /// The next element; `Err` when the stream ended. Panics when a live server stays
    /// silent past `ANSWER`.
    async fn next(&mut self) -> Result<Element, String> {
        match tokio::time::timeout(ANSWER, self.rx.recv()).await {
            Ok(Some(el)) => Ok(el),
            Ok(None) => Err("stream ended".into()),
            Err(_) => panic!("no answer within {ANSWER:?}"),
        }
    }

    /// Reads until the IQ with this id; every stanza before it goes to `seen`.
    async fn answer(
        &mut self,
        id: &str,
        mut seen: impl FnMut(&Element),
    ) -> Result<Element, String> {
        loop {
            let el = self.next().await?;
            if el.name() == "iq" && el.attr("id") == Some(id) {
                return Ok(el);
            }
            seen(&el);
        }
    }
}

fn enable(id: &str, node: &str) -> String {
    format!(
        "<iq type='set' id='{id}'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='{node}'>{FORM}</enable></iq>"
    )
}

fn disable(id: &str, node: &str) -> String {
    format!(
        "<iq type='set' id='{id}'><disable xmlns='urn:xmpp:push:0' jid='{APP}' node='{node}'/></iq>"
    )
}

fn is_stanza(el: &Element) -> bool {
    matches!(el.name(), "message" | "iq" | "presence")
}

/// The app server: records the body of every publish and answers it.
async fn app_server(addr: SocketAddr, model: Shared) -> Result<(), String> {
    let mut raw = Raw::over(
        tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?,
    );
    raw.try_write(
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='{APP}'>"
        )
        .as_bytes(),
    )
    .await?;
    raw.try_until("<stream:stream").await?;
    let header = raw.try_until(">").await?;
    let id = ["id='", "id=\""]
        .iter()
        .find_map(|k| {
            let at = header.find(k)? + k.len();
            Some(
                header[at..]
                    .chars()
                    .take_while(|c| *c != '\'' && *c != '"')
                    .collect::<String>(),
            )
        })
        .ok_or_else(|| format!("no stream id in {header:?}"))?;
    let digest: String = {
        use sha1::Digest;
        sha1::Sha1::digest(format!("{id}{APP_SECRET}").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    raw.try_write(format!("<handshake>{digest}</handshake>").as_bytes())
        .await?;
    let mut peer = Peer::new(raw);
    let first = peer.next().await?;
    if first.name() != "handshake" {
        return Err(format!("handshake refused: {}", String::from(&first)));
    }
    loop {
        let el = peer.next().await?;
        if el.name() != "iq" || el.attr("type") != Some("set") {
            continue;
        }
        if let Some(body) = publish_body(&el) {
            let mut m = model.borrow_mut();
            m.stats.published += 1;
            if let Some(msg) = m.msgs.get_mut(&body) {
                msg.accepted = true;
            }
        }
        let reply = format!(
            "<iq type='result' id='{}' from='{}' to='{}'/>",
            el.attr("id").unwrap_or_default(),
            el.attr("to").unwrap_or_default(),
            el.attr("from").unwrap_or_default()
        );
        peer.send(&reply).await?;
    }
}

/// `last-message-body` of a publish's summary.
fn publish_body(el: &Element) -> Option<String> {
    if el.name() == "field" && el.attr("var") == Some("last-message-body") {
        return el
            .children()
            .find(|v| v.name() == "value")
            .map(Element::text);
    }
    el.children().find_map(publish_body)
}

/// One cycle's script for a client, run until it is done or the server dies.
struct Plan {
    cycle: u64,
    /// Romeo's groups of messages: (to the phone's full JID?, how many).
    groups: Vec<(bool, u64)>,
    /// The control client's registration changes: (enable?, node).
    changes: Vec<(bool, u64)>,
    /// The phone's returns after it hibernated: resume (`true`) or a new login that
    /// replaces the hibernated session (`false`).
    returns: Vec<bool>,
    /// Whether romeo waits for the phone to hibernate first.
    romeo_waits: bool,
}

/// The phone's side of the signals between the cycle's clients (no waiting on time,
/// only on each other): it says when it dropped its socket, and waits for romeo to have
/// sent more. A client that ends drops its sender, which ends the other's wait.
struct PhoneSignals {
    dropped: tokio::sync::watch::Sender<bool>,
    romeo_groups: tokio::sync::watch::Receiver<u64>,
}

/// Romeo's side.
struct RomeoSignals {
    phone_dropped: tokio::sync::watch::Receiver<bool>,
    groups: tokio::sync::watch::Sender<u64>,
}

fn signals() -> (PhoneSignals, RomeoSignals) {
    let (dropped, phone_dropped) = tokio::sync::watch::channel(false);
    let (groups, romeo_groups) = tokio::sync::watch::channel(0);
    (
        PhoneSignals {
            dropped,
            romeo_groups,
        },
        RomeoSignals {
            phone_dropped,
            groups,
        },
    )
}

async fn phone(
    c2s: SocketAddr,
    plan: Rc<Plan>,
    model: Shared,
    mut signals: PhoneSignals,
) -> Result<(), String> {
    phone_login(c2s, &model, "pe").await?;
    signals.dropped.send_replace(true);
    for (round, resume) in plan.returns.iter().enumerate() {
        // Back once romeo has sent another group (or is done).
        signals
            .romeo_groups
            .wait_for(|g| *g > round as u64)
            .await
            .map_err(|_| "romeo ended")?;
        if *resume {
            phone_resume(c2s, &model, round).await?;
        } else {
            // A new login with the same resource replaces the hibernated session, which
            // ends: its queue goes to offline storage.
            phone_login(c2s, &model, &format!("pr{round}")).await?;
        }
        signals.dropped.send_replace(true);
    }
    Ok(())
}

/// Logs in, enables stream management with resumption and push (node `p`), and drops
/// the socket: the session hibernates.
async fn phone_login(c2s: SocketAddr, model: &Shared, id: &str) -> Result<(), String> {
    let mut p = Peer::new(Raw::try_login(c2s, "juliet", "phone").await?);
    p.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await?;
    let enabled = loop {
        let el = p.next().await?;
        if el.name() == "enabled" {
            break el;
        }
    };
    {
        let mut m = model.borrow_mut();
        m.previd = enabled.attr("id").map(str::to_string);
        m.phone_read.clear();
        m.phone_handled = 0;
        m.phone_acked = 0;
    }
    phone_enable(&mut p, model, id).await
}

/// Resumes the hibernated session, reads what it resends, acknowledges it, proves the
/// acknowledgement handled with a durable round trip, and drops the socket again.
async fn phone_resume(c2s: SocketAddr, model: &Shared, round: usize) -> Result<(), String> {
    let previd = model.borrow().previd.clone().unwrap_or_default();
    let mut raw = Raw::try_authenticate(c2s, "juliet").await?;
    let h = model.borrow().phone_handled;
    raw.try_write(format!("<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='{h}'/>").as_bytes())
        .await?;
    let mut p = Peer::new(raw);
    let resumed = p.next().await?;
    assert_eq!(
        resumed.name(),
        "resumed",
        "the hibernated session resumes: {}",
        String::from(&resumed)
    );
    {
        // The `h` of the resumption acknowledged everything read before.
        let mut m = model.borrow_mut();
        m.stats.resumed += 1;
        ack_read(&mut m);
    }
    // The server resends the queue first; a ping's answer comes after it.
    let id = format!("rp{round}");
    p.send(&format!(
        "<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await?;
    p.answer(&id, |el| phone_saw(model, el)).await?;
    model.borrow_mut().phone_handled += 1;
    let h = model.borrow().phone_handled;
    p.send(&format!("<a xmlns='urn:xmpp:sm:3' h='{h}'/>"))
        .await?;
    ack_read(&mut model.borrow_mut());
    // A durable write asked after the acknowledgement: once answered, the deletion
    // of the acknowledged messages' queued copies, asked before it, is durable too.
    phone_enable(&mut p, model, &format!("pb{round}")).await?;
    let mut m = model.borrow_mut();
    let read = m.phone_read.clone();
    for id in &read[..m.phone_acked] {
        if let Some(msg) = m.msgs.get_mut(id)
            && msg.ack == Ack::Unconfirmed
        {
            msg.ack = Ack::Delivered;
            m.stats.delivered_to_phone += 1;
        }
    }
    Ok(())
}

/// The phone's own `<enable/>` of node `p` (which links its session to it).
async fn phone_enable(p: &mut Peer, model: &Shared, id: &str) -> Result<(), String> {
    model.borrow_mut().regs.insert("p".into(), Reg::Unknown);
    p.send(&enable(id, "p")).await?;
    let r = p.answer(id, |el| phone_saw(model, el)).await?;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    let mut m = model.borrow_mut();
    m.phone_handled += 1;
    m.regs.insert("p".into(), Reg::Present);
    m.stats.enables_acked += 1;
    Ok(())
}

/// A stanza the phone read (and so will count in its next `h`).
fn phone_saw(model: &Shared, el: &Element) {
    if !is_stanza(el) {
        return;
    }
    let mut m = model.borrow_mut();
    m.phone_handled += 1;
    if el.name() == "message"
        && let Some(id) = el.attr("id")
    {
        m.phone_read.push(id.to_string());
    }
}

/// Everything the phone read so far is acknowledged (not yet confirmed).
fn ack_read(m: &mut Model) {
    let read = m.phone_read.clone();
    for id in &read[m.phone_acked..] {
        if let Some(msg) = m.msgs.get_mut(id)
            && msg.ack == Ack::No
        {
            msg.ack = Ack::Unconfirmed;
        }
    }
    m.phone_acked = read.len();
}

async fn control(c2s: SocketAddr, plan: Rc<Plan>, model: Shared) -> Result<(), String> {
    let mut c = Peer::new(Raw::try_login(c2s, "juliet", "control").await?);
    for (i, (on, node)) in plan.changes.iter().enumerate() {
        let node = format!("n{node}");
        let id = format!("c{i}");
        model.borrow_mut().regs.insert(node.clone(), Reg::Unknown);
        c.send(&if *on {
            enable(&id, &node)
        } else {
            disable(&id, &node)
        })
        .await?;
        let r = c.answer(&id, |_| {}).await?;
        let mut m = model.borrow_mut();
        assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
        if *on {
            m.regs.insert(node, Reg::Present);
            m.stats.enables_acked += 1;
        } else {
            m.regs.insert(node, Reg::Absent);
            m.stats.disables_acked += 1;
        }
    }
    Ok(())
}

async fn romeo(
    c2s: SocketAddr,
    plan: Rc<Plan>,
    model: Shared,
    mut signals: RomeoSignals,
) -> Result<(), String> {
    let mut r = Peer::new(Raw::try_login(c2s, "romeo", "desk").await?);
    if plan.romeo_waits {
        // Until the phone hibernates (or its client ended).
        let _ = signals.phone_dropped.wait_for(|d| *d).await;
    }
    let mut n = 0;
    for (g, (to_phone, count)) in plan.groups.iter().enumerate() {
        let to = if *to_phone {
            "juliet@localhost/phone"
        } else {
            "juliet@localhost"
        };
        let mut out = String::new();
        for _ in 0..*count {
            let id = format!("c{}m{n}", plan.cycle);
            n += 1;
            out.push_str(&format!(
                "<message type='chat' to='{to}' id='{id}'><body>{id}</body></message>"
            ));
            let mut m = model.borrow_mut();
            m.stats.sent += 1;
            m.msgs.insert(
                id,
                Msg {
                    cycle: plan.cycle,
                    accepted: false,
                    ack: Ack::No,
                    bounced: 0,
                    lost: false,
                },
            );
        }
        let ping = format!("g{g}");
        out.push_str(&format!(
            "<iq type='get' id='{ping}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        r.send(&out).await?;
        r.answer(&ping, |el| romeo_saw(&model, el)).await?;
        signals.groups.send_replace(g as u64 + 1);
    }
    signals.groups.send_replace(u64::MAX);
    Ok(())
}

fn romeo_saw(model: &Shared, el: &Element) {
    if el.name() == "message" && el.attr("type") == Some("error") {
        let mut m = model.borrow_mut();
        if let Some(msg) = el.attr("id").and_then(|id| m.msgs.get_mut(id)) {
            msg.bounced += 1;
        }
    }
}

// ------------------------------------------------------------------ the file

/// What the file holds for juliet: registration nodes, and how often each message is
/// there (offline storage and queued copies together).
fn read_file(data: &Path) -> (Vec<String>, HashMap<String, u32>) {
    let db = open_database(data, 1 << 20).expect("the file opens after a kill");
    let txn = db.begin_read().unwrap();
    let mut nodes = Vec::new();
    for e in txn
        .open_table(schema::PUSH_REGISTRATIONS)
        .unwrap()
        .range(("juliet", "")..)
        .unwrap()
    {
        let (k, _) = e.unwrap();
        let (user, identifier) = k.value();
        if user != "juliet" {
            break;
        }
        let node = identifier
            .rsplit_once('<')
            .map(|(_, n)| n)
            .unwrap_or_default();
        nodes.push(node.to_string());
    }
    let mut msgs: HashMap<String, u32> = HashMap::new();
    let mut count = |bytes: &[u8]| {
        let text = std::str::from_utf8(bytes).expect("a stored message is text");
        let el: Element = text.parse().expect("a stored message parses");
        *msgs
            .entry(el.attr("id").unwrap_or_default().to_string())
            .or_default() += 1;
    };
    for e in txn
        .open_table(schema::OFFLINE)
        .unwrap()
        .range(("juliet", 0)..=("juliet", u64::MAX))
        .unwrap()
    {
        count(e.unwrap().1.value());
    }
    for e in txn.open_table(schema::SM_QUEUE).unwrap().iter().unwrap() {
        let (k, v) = e.unwrap();
        assert_eq!(k.value().0, "juliet");
        count(v.value());
    }
    (nodes, msgs)
}

/// After a kill: the file against the promises. Unknowns are settled by the file.
fn check_file(data: &Path, model: &mut Model, cycle: u64) {
    let (nodes, stored) = read_file(data);
    for n in &nodes {
        assert!(
            model.regs.contains_key(n),
            "cycle {cycle}: registration {n} never enabled"
        );
    }
    for (node, reg) in model.regs.iter_mut() {
        let there = nodes.contains(node);
        match reg {
            Reg::Present => assert!(there, "cycle {cycle}: acknowledged enable of {node} lost"),
            Reg::Absent => assert!(!there, "cycle {cycle}: acknowledged disable of {node} lost"),
            Reg::Unknown => *reg = if there { Reg::Present } else { Reg::Absent },
        }
    }
    for id in stored.keys() {
        assert!(
            model.msgs.contains_key(id),
            "cycle {cycle}: {id} was never sent"
        );
    }
    let mut tolerated = 0;
    let mut lost = 0;
    for (id, msg) in model.msgs.iter_mut() {
        let n = stored.get(id).copied().unwrap_or(0);
        match msg.ack {
            _ if msg.bounced > 0 => assert_eq!(n, 0, "cycle {cycle}: {id} bounced and kept"),
            Ack::Delivered => assert_eq!(n, 0, "cycle {cycle}: {id} delivered and kept"),
            Ack::Again => assert_eq!(n, 1, "cycle {cycle}: {id} (acknowledged, kept once)"),
            Ack::Unconfirmed => {
                assert!(n <= 1, "cycle {cycle}: {id} stored {n} times");
                if n == 1 {
                    msg.ack = Ack::Again;
                    tolerated += 1;
                } else {
                    msg.ack = Ack::Delivered;
                }
            }
            Ack::No if msg.accepted => {
                assert_eq!(
                    n, 1,
                    "cycle {cycle}: accepted message {id} stored {n} times"
                )
            }
            Ack::No if msg.lost => assert_eq!(n, 0, "cycle {cycle}: lost {id} came back"),
            Ack::No => {
                assert!(n <= 1, "cycle {cycle}: {id} stored {n} times");
                if n == 1 {
                    msg.accepted = true;
                } else {
                    msg.lost = true;
                    lost += 1;
                }
            }
        }
    }
    model.stats.tolerated_duplicates += tolerated;
    model.stats.lost_unaccepted += lost;
}

// ------------------------------------------------------------------ the run

fn plan(rng: &mut Rng, cycle: u64) -> Plan {
    Plan {
        cycle,
        groups: (0..rng.below(6) + 1)
            .map(|_| (rng.chance(60), rng.below(4) + 1))
            .collect(),
        changes: (0..rng.below(5))
            .map(|_| (rng.chance(50), rng.below(NODES)))
            .collect(),
        returns: (0..if rng.chance(60) { rng.below(3) + 1 } else { 0 })
            .map(|_| rng.chance(70))
            .collect(),
        romeo_waits: rng.chance(80),
    }
}

/// Runs a client to its end; a client whose server died ends with `Err`, which is fine
/// (`CLOUD_NOTIFY_CRASH_VERBOSE=1` prints how each ended).
async fn run<F>(cycle: u64, who: &'static str, f: F)
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let end = f.await;
    if std::env::var_os("CLOUD_NOTIFY_CRASH_VERBOSE").is_some() {
        eprintln!("cycle {cycle}: {who}: {end:?}");
    }
}

#[actix_rt::test]
async fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let under_runner = patience::emulated();
    let cycles: u64 = std::env::var("CLOUD_NOTIFY_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(if under_runner { 20 } else { 200 });
    let seed: u64 = std::env::var("CLOUD_NOTIFY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("crash test: {cycles} cycles, CLOUD_NOTIFY_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let setup = setup(&mut rng);
    println!("crash test: data and server log in {}", setup.dir.display());
    let model: Shared = Rc::default();
    let started = Instant::now();
    for cycle in 0..cycles {
        let plan = Rc::new(plan(&mut rng, cycle));
        // From the start of the process: some kills land in the start itself (the move
        // of the last crash's queued messages), most in the clients' work.
        let kill_after = Duration::from_micros(rng.below(KILL_WITHIN_US));
        let mut server =
            Server::spawn(&setup, &format!("cycle {cycle}, kill after {kill_after:?}"));
        let spawned = tokio::time::Instant::now();
        let ready = tokio::select! {
            r = server.ready() => r,
            _ = tokio::time::sleep_until(spawned + kill_after) => false,
        };
        let mut clients = Vec::new();
        if ready {
            let (phone_signals, romeo_signals) = signals();
            clients.push(actix::spawn(run(
                cycle,
                "app server",
                app_server(setup.component, model.clone()),
            )));
            let mut scripted = actix::spawn({
                let (plan, model, c2s) = (plan.clone(), model.clone(), setup.c2s);
                async move {
                    tokio::join!(
                        run(
                            cycle,
                            "phone",
                            phone(c2s, plan.clone(), model.clone(), phone_signals)
                        ),
                        run(cycle, "control", control(c2s, plan.clone(), model.clone())),
                        run(cycle, "romeo", romeo(c2s, plan, model, romeo_signals)),
                    );
                }
            });
            // The experiment: the kill comes whenever it comes, or at once when the
            // clients are through with their script (everything answered by then).
            let finished = tokio::select! {
                _ = tokio::time::sleep_until(spawned + kill_after) => false,
                r = &mut scripted => {
                    r.expect("the clients did not panic");
                    true
                }
            };
            if finished {
                model.borrow_mut().stats.kills_after_script += 1;
            } else {
                clients.push(scripted);
            }
        } else {
            model.borrow_mut().stats.kills_before_ready += 1;
        }
        let requeued = server.kill(&setup.log);
        for c in clients {
            tokio::time::timeout(ANSWER, c)
                .await
                .expect("a client of a dead server ends")
                .expect("a client task did not panic");
        }
        let mut m = model.borrow_mut();
        if requeued > 0 {
            m.stats.requeue_starts += 1;
            m.stats.requeued_messages += requeued;
        }
        check_file(&setup.data, &mut m, cycle);
    }
    // A last start, clean: juliet reads her offline storage.
    let mut server = Server::spawn(&setup, "final");
    assert!(server.ready().await, "the final start serves");
    let mut j = Peer::new(
        Raw::try_login(setup.c2s, "juliet", "final")
            .await
            .expect("juliet logs in"),
    );
    j.send("<presence/><iq type='get' id='done'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    let mut delivered: HashMap<String, u32> = HashMap::new();
    j.answer("done", |el| {
        if el.name() == "message" && el.attr("type") == Some("chat") {
            *delivered
                .entry(el.attr("id").unwrap_or_default().to_string())
                .or_default() += 1;
        }
    })
    .await
    .expect("juliet's ping answered");
    drop(j);
    let requeued = server.stop();
    let mut m = model.borrow_mut();
    m.stats.requeued_messages += requeued;
    let mut accepted = 0;
    for (id, msg) in &m.msgs {
        let got = delivered.get(id).copied().unwrap_or(0);
        let expected = match msg.ack {
            _ if msg.bounced > 0 => 0,
            Ack::Delivered => 0,
            Ack::Again => 1,
            Ack::Unconfirmed => panic!("{id}: every cycle ends with a check"),
            Ack::No if msg.accepted => 1,
            Ack::No => 0,
        };
        if msg.accepted {
            accepted += 1;
        }
        assert!(msg.bounced <= 1, "{id} bounced {} times", msg.bounced);
        assert_eq!(
            got, expected,
            "{id} (cycle {}, {msg:?}) delivered {got} times at the end",
            msg.cycle
        );
    }
    for id in delivered.keys() {
        assert!(m.msgs.contains_key(id), "{id} was never sent");
    }
    // The orderly stop left nothing queued, and juliet's storage is empty.
    let (nodes, stored) = read_file(&setup.data);
    assert!(stored.is_empty(), "left in the file: {stored:?}");
    for (node, reg) in &m.regs {
        assert_eq!(
            nodes.contains(node),
            *reg == Reg::Present,
            "{node} after the last stop"
        );
    }
    let elapsed = started.elapsed();
    if std::env::var_os("CLOUD_NOTIFY_CRASH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&setup.dir);
    }
    println!(
        "crash test: {cycles} kills in {:.1} s, seed {seed}: {} messages sent, {accepted} accepted \
         ({} publishes), {} delivered to the phone, {} at the last login, {} tolerated duplicates, \
         {} never accepted and lost; registrations: {} enables and {} disables acknowledged; \
         {} resumptions; {} kills before the server served, {} after the clients were through; \
         {} starts moved {} queued messages to offline storage",
        elapsed.as_secs_f64(),
        m.stats.sent,
        m.stats.published,
        m.stats.delivered_to_phone,
        delivered.values().sum::<u32>(),
        m.stats.tolerated_duplicates,
        m.stats.lost_unaccepted,
        m.stats.enables_acked,
        m.stats.disables_acked,
        m.stats.resumed,
        m.stats.kills_before_ready,
        m.stats.kills_after_script,
        m.stats.requeue_starts,
        m.stats.requeued_messages,
    );
}
