//! A test host for the push module: it plays the c2s sessions and an app server, and
//! drives the module only through its public messages.
//!
//! Every harness runs on tokio's paused clock: time stands still while anything runs
//! and jumps to the next timer when nothing does, so an assertion about when a timer
//! fired reads the module's arithmetic, never the machine's speed. The one thing tokio
//! cannot see is the store's writer thread; [`StoreGate`] keeps the clock still while it
//! works.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use actix::prelude::*;
use cloud_notify::config::Config;
use cloud_notify::push::{self, *};
use cloud_notify::store::{
    self, Close, LoadRegistrations, Probe, RegistrationRecord, Store, StoreClient, StoreError,
    StoreProbe, Write,
};
use tokio::sync::mpsc;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;

/// How long any awaited event may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub const DOMAIN: &str = "example.com";
pub const USER: &str = "juliet";
pub const APP: &str = "push.example.net";

/// Test configuration: the defaults with the checklist's small timeouts.
pub fn config() -> Config {
    Config {
        domain: DOMAIN.into(),
        push_max_hibernation_timeout: Duration::from_millis(1500),
        push_batch_window: Duration::from_millis(150),
        ..Config::default()
    }
}

/// The normal hibernation timeout the fake host reports.
pub const NORMAL_TIMEOUT: Duration = Duration::from_millis(400);

// ------------------------------------------------------------------ app server

/// How the fake app server answers publishes.
#[derive(Clone, Debug)]
pub enum Answer {
    Result,
    Error(&'static str, &'static str),
    Silent,
}

/// A publish as the app server received it.
#[derive(Debug, Clone)]
pub struct Publish {
    pub iq: Element,
    pub to: String,
    pub id: String,
    pub node: Option<String>,
    pub fields: Vec<(String, String, Option<String>)>,
    pub options: Option<Element>,
    pub at: Instant,
}

impl Publish {
    fn parse(iq: Element) -> Publish {
        let pubsub = iq.get_child("pubsub", ns::PUBSUB).expect("pubsub");
        let publish = pubsub.get_child("publish", ns::PUBSUB).expect("publish");
        let form = publish
            .get_child("item", ns::PUBSUB)
            .and_then(|i| i.get_child("notification", ns::PUSH))
            .and_then(|n| n.get_child("x", ns::DATA_FORMS))
            .expect("summary form");
        let fields = form
            .children()
            .map(|f| {
                (
                    f.attr("var").unwrap_or_default().to_string(),
                    f.attr("type").unwrap_or_default().to_string(),
                    f.get_child("value", ns::DATA_FORMS).map(|v| v.text()),
                )
            })
            .collect();
        Publish {
            to: iq.attr("to").unwrap_or_default().to_string(),
            id: iq.attr("id").unwrap_or_default().to_string(),
            node: publish.attr("node").map(str::to_string),
            options: pubsub
                .get_child("publish-options", ns::PUBSUB)
                .and_then(|o| o.children().next().cloned()),
            fields,
            iq,
            at: Instant::now(),
        }
    }

    pub fn field(&self, var: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(v, _, _)| v == var)
            .and_then(|(_, _, value)| value.clone())
    }

    pub fn body(&self) -> Option<String> {
        self.field("last-message-body")
    }

    pub fn sender(&self) -> Option<String> {
        self.field("last-message-sender")
    }
}

struct AppServer {
    hub: Option<Addr<PushHub>>,
    answer: Answer,
    /// Answer with this `from` instead of the publish's `to`.
    answer_from: Option<String>,
    tx: mpsc::UnboundedSender<Publish>,
}

impl Actor for AppServer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A host routes publishes through a roomy mailbox; a full one drops publishes.
        ctx.set_mailbox_capacity(8192);
    }
}

impl Handler<RoutePublish> for AppServer {
    type Result = ();
    fn handle(&mut self, msg: RoutePublish, _: &mut Context<Self>) {
        // As a client-namespace stream would read it.
        let iq = format!("<iq xmlns='jabber:client'{}", &msg.xml["<iq".len()..]);
        let p = Publish::parse(iq.parse().expect("publish is well-formed XML"));
        assert_eq!(msg.to.to_string(), p.to, "route target and IQ `to` agree");
        if let Some(hub) = &self.hub {
            let from = self.answer_from.clone().unwrap_or_else(|| p.to.clone());
            let iq = match &self.answer {
                Answer::Result => Some(format!(
                    "<iq xmlns='jabber:client' type='result' id='{}' from='{from}' to='{DOMAIN}'/>",
                    p.id
                )),
                Answer::Error(t, c) => Some(format!(
                    "<iq xmlns='jabber:client' type='error' id='{}' from='{from}' to='{DOMAIN}'><error type='{t}'><{c} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
                    p.id
                )),
                Answer::Silent => None,
            };
            if let Some(iq) = iq {
                hub.do_send(AppServerResponse {
                    iq: iq.parse().expect("answer xml"),
                });
            }
        }
        let _ = self.tx.send(p);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Configure {
    hub: Option<Addr<PushHub>>,
    answer: Answer,
    answer_from: Option<String>,
}

impl Handler<Configure> for AppServer {
    type Result = ();
    fn handle(&mut self, msg: Configure, _: &mut Context<Self>) {
        if msg.hub.is_some() {
            self.hub = msg.hub;
        }
        self.answer = msg.answer;
        self.answer_from = msg.answer_from;
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Sync;

impl Handler<Sync> for AppServer {
    type Result = ();
    fn handle(&mut self, _: Sync, _: &mut Context<Self>) {}
}

// ------------------------------------------------------------------ clock and store gate

thread_local! {
    /// The actix system (one per test, each with its own runtime) whose clock this
    /// thread paused; a thread that runs several tests one after another sees several.
    static PAUSED_IN: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Pauses tokio's clock unless a harness started earlier in this test already did
/// (tokio refuses to pause twice and cannot say whether it is paused).
fn pause_clock() {
    let system = actix::System::current().id();
    if PAUSED_IN.with(|p| p.replace(Some(system))) != Some(system) {
        tokio::time::pause();
    }
}

/// Awaits `fut` on tokio's blocking pool. While a blocking task runs, tokio does not
/// auto-advance a paused clock: for futures that wait on another thread (the store's
/// writer), which tokio would otherwise take for an idle runtime and jump its clock to the
/// module's next timer, as if the store had taken that long.
pub async fn off_clock<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || rt.block_on(fut))
        .await
        .expect("blocking wait")
}

/// The store as the module sees it: each request reaches the store at once, in order,
/// and its answer is awaited [`off_clock`].
struct StoreGate(Addr<Store>);

impl Actor for StoreGate {
    type Context = Context<Self>;
}

fn answered<T>(r: Result<Result<T, StoreError>, MailboxError>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Failed(e.to_string()))
        .and_then(|r| r)
}

impl Handler<Write> for StoreGate {
    type Result = ResponseFuture<Result<(), StoreError>>;
    fn handle(&mut self, msg: Write, _: &mut Context<Self>) -> Self::Result {
        let pending = self.0.send(msg);
        Box::pin(async move { answered(off_clock(pending).await) })
    }
}

impl Handler<LoadRegistrations> for StoreGate {
    type Result = ResponseFuture<Result<Vec<(String, RegistrationRecord)>, StoreError>>;
    fn handle(&mut self, msg: LoadRegistrations, _: &mut Context<Self>) -> Self::Result {
        let pending = self.0.send(msg);
        Box::pin(async move { answered(off_clock(pending).await) })
    }
}

// ------------------------------------------------------------------ sessions

struct SessionSink(mpsc::UnboundedSender<SessionControl>);

impl Actor for SessionSink {
    type Context = Context<Self>;
}

impl Handler<SessionControl> for SessionSink {
    type Result = ();
    fn handle(&mut self, msg: SessionControl, _: &mut Context<Self>) {
        let _ = self.0.send(msg);
    }
}

/// A fake c2s session of the user.
pub struct TestSession {
    pub session: Session,
    control_rx: mpsc::UnboundedReceiver<SessionControl>,
    next_seq: u64,
}

impl TestSession {
    pub fn id(&self) -> SessionId {
        self.session.id
    }

    /// Stamps a stanza with this session's next sequence number.
    pub fn queued(&mut self, xml: &str) -> QueuedStanza {
        self.next_seq += 1;
        QueuedStanza {
            key: StanzaKey {
                session: self.session.id,
                seq: self.next_seq,
            },
            stanza: stanza(xml),
        }
    }

    /// Waits for the module's next instruction to this session.
    pub async fn next_control(&mut self) -> (SessionControl, Instant) {
        let c = tokio::time::timeout(DEADLINE, self.control_rx.recv())
            .await
            .expect("no session instruction before the deadline")
            .expect("control channel open");
        (c, Instant::now())
    }

    pub fn no_control_yet(&mut self) -> bool {
        self.control_rx.try_recv().is_err()
    }
}

// ------------------------------------------------------------------ the harness

pub struct Harness {
    pub cfg: Config,
    pub hub: Addr<PushHub>,
    pub store: Addr<Store>,
    /// The store through its gate, as the module has it.
    gate: StoreClient,
    pub probe: StoreProbe,
    app: Addr<AppServer>,
    publishes: mpsc::UnboundedReceiver<Publish>,
    dir: Arc<tempfile::TempDir>,
    next_session: u64,
}

pub fn stanza(xml: &str) -> Element {
    let xml = ["<message", "<presence", "<iq"]
        .iter()
        .fold(xml.to_string(), |x, tag| {
            let open_tag = &x[..x.find('>').unwrap_or(x.len())];
            if x.starts_with(tag) && !open_tag.contains("xmlns=") {
                x.replacen(tag, &format!("{tag} xmlns='jabber:client'"), 1)
            } else {
                x
            }
        });
    xml.parse()
        .unwrap_or_else(|e| panic!("bad test xml {xml}: {e}"))
}

/// A chat message with a body from romeo to juliet.
pub fn chat(body: &str) -> String {
    format!(
        "<message type='chat' from='romeo@example.org/desk' to='juliet@example.com' id='m-{body}'><body>{body}</body></message>"
    )
}

/// A chat-state-only message (unimportant).
pub fn chat_state() -> String {
    "<message type='chat' from='romeo@example.org/desk' to='juliet@example.com'><active xmlns='http://jabber.org/protocol/chatstates'/></message>".into()
}

pub fn presence() -> String {
    "<presence from='romeo@example.org/desk' to='juliet@example.com/phone'/>".into()
}

pub fn form(secret: &str) -> String {
    format!(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>{secret}</value></field></x>"
    )
}

impl Harness {
    /// A module with a fresh store, on a paused clock.
    pub async fn start(cfg: Config) -> Harness {
        pause_clock();
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Harness::start_in(cfg, dir, 1).await
    }

    async fn start_in(mut cfg: Config, dir: Arc<tempfile::TempDir>, next_session: u64) -> Harness {
        cfg.data_dir = dir.path().to_path_buf();
        let db = store::open_database(&cfg.data_dir, cfg.store_cache_size).expect("open store");
        let store = Store::start(db, cfg.store_max_pending);
        let probe = off_clock(store.send(Probe)).await.expect("probe");
        let gate = StoreGate(store.clone()).start();
        let gate = StoreClient {
            load: gate.clone().recipient(),
            write: gate.recipient(),
        };
        let (tx, publishes) = mpsc::unbounded_channel();
        let app = AppServer {
            hub: None,
            answer: Answer::Result,
            answer_from: None,
            tx,
        }
        .start();
        let hub = push::start(Arc::new(cfg.clone()), gate.clone(), app.clone().recipient());
        app.send(Configure {
            hub: Some(hub.clone()),
            answer: Answer::Result,
            answer_from: None,
        })
        .await
        .expect("configure app server");
        Harness {
            cfg,
            hub,
            store,
            gate,
            probe,
            app,
            publishes,
            dir,
            next_session,
        }
    }

    /// Stops the module and the store (the file is flushed and closed) and starts both
    /// again on the same data directory, as a server restart would.
    pub async fn restart(self, cfg: Config) -> Harness {
        self.hub.send(Shutdown).await.expect("module shutdown");
        // Behind the gate, so the module's last writes reach the store first.
        off_clock(self.gate.write.send(store::Write {
            changes: Vec::new(),
            durable: false,
        }))
        .await
        .expect("store sync")
        .expect("store sync write");
        off_clock(self.store.send(Close))
            .await
            .expect("close store");
        let dir = self.dir.clone();
        let next = self.next_session;
        drop(self);
        Harness::start_in(cfg, dir, next).await
    }

    pub async fn answer(&self, answer: Answer, from: Option<&str>) {
        self.app
            .send(Configure {
                hub: None,
                answer,
                answer_from: from.map(str::to_string),
            })
            .await
            .expect("configure app server");
    }

    pub fn session(&mut self, resource: &str) -> TestSession {
        self.session_of(USER, resource)
    }

    pub fn session_of(&mut self, user: &str, resource: &str) -> TestSession {
        let (tx, control_rx) = mpsc::unbounded_channel();
        let sink = SessionSink(tx).start();
        let id = SessionId(self.next_session);
        self.next_session += 1;
        let jid: FullJid = format!("{user}@{DOMAIN}/{resource}").parse().expect("jid");
        TestSession {
            session: Session {
                id,
                jid,
                control: sink.recipient(),
            },
            control_rx,
            next_seq: 0,
        }
    }

    /// Sends an IQ (given without the client namespace) from the session.
    pub async fn iq(&self, s: &TestSession, xml: &str) -> Element {
        self.hub
            .send(PushRequest {
                session: s.session.clone(),
                iq: stanza(xml),
            })
            .await
            .expect("push request answered")
            .expect("a set or get is answered")
    }

    pub async fn enable(&self, s: &TestSession, node: Option<&str>, form: Option<&str>) -> Element {
        self.enable_at(s, APP, node, form).await
    }

    pub async fn enable_at(
        &self,
        s: &TestSession,
        jid: &str,
        node: Option<&str>,
        form: Option<&str>,
    ) -> Element {
        let node = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
        self.iq(
            s,
            &format!(
                "<iq type='set' id='en1'><enable xmlns='urn:xmpp:push:0' jid='{jid}'{node}>{}</enable></iq>",
                form.unwrap_or("")
            ),
        )
        .await
    }

    /// Enables and asserts success.
    pub async fn enable_ok(&self, s: &TestSession, node: &str) {
        let r = self.enable(s, Some(node), None).await;
        assert_result(&r);
    }

    pub async fn disable(&self, s: &TestSession, jid: &str, node: Option<&str>) -> Element {
        let node = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
        self.iq(
            s,
            &format!(
                "<iq type='set' id='dis1'><disable xmlns='urn:xmpp:push:0' jid='{jid}'{node}/></iq>"
            ),
        )
        .await
    }

    pub fn offline(&self, xml: &str) {
        self.offline_keyed(xml, None);
    }

    pub fn offline_keyed(&self, xml: &str, key: Option<StanzaKey>) {
        self.hub.do_send(OfflineMessage {
            user: USER.into(),
            stanza: stanza(xml),
            key,
        });
    }

    pub fn archived(&self, xml: &str, user_has_sessions: bool) {
        self.archived_with(xml, user_has_sessions, false);
    }

    /// `all_away`: the host says every online session is away or xa.
    pub fn archived_with(&self, xml: &str, user_has_sessions: bool, all_away: bool) {
        self.hub.do_send(MessageArchived {
            user: USER.into(),
            stanza: stanza(xml),
            user_has_sessions,
            all_away,
        });
    }

    pub async fn hibernate(&self, s: &mut TestSession, queue: &[&str]) -> TimerOwner {
        let queue = queue.iter().map(|x| s.queued(x)).collect();
        self.hibernate_with(s, queue).await
    }

    pub async fn hibernate_with(&self, s: &TestSession, queue: Vec<QueuedStanza>) -> TimerOwner {
        self.hub
            .send(SessionHibernated {
                user: s.session.jid.node().expect("user").to_string(),
                session: s.id(),
                normal_timeout: NORMAL_TIMEOUT,
                queue,
            })
            .await
            .expect("hibernation answered")
    }

    /// A stanza arrives for the hibernated session.
    pub fn queue(&self, s: &mut TestSession, xml: &str) -> QueuedStanza {
        let q = s.queued(xml);
        self.hub.do_send(StanzaQueued {
            user: USER.into(),
            stanza: q.clone(),
        });
        q
    }

    pub fn resume(&self, s: &TestSession) {
        self.hub.do_send(SessionResumed {
            user: USER.into(),
            session: s.id(),
            acked: 0,
        });
    }

    pub fn close(&self, s: &TestSession) {
        self.hub.do_send(SessionClosed {
            user: USER.into(),
            session: s.id(),
        });
    }

    /// The next publish the app server receives.
    pub async fn next_publish(&mut self) -> Publish {
        tokio::time::timeout(DEADLINE, self.publishes.recv())
            .await
            .expect("no publish before the deadline")
            .expect("app server channel open")
    }

    /// Waits until the user's actor handled everything sent so far and the app server
    /// received every publish that caused.
    pub async fn settle(&self) {
        self.hub
            .send(Barrier { user: USER.into() })
            .await
            .expect("barrier");
        self.app.send(Sync).await.expect("app sync");
        // Writes the module made in the background are queued at the store before the
        // barrier returned; an empty write behind them returns once they are committed.
        self.gate
            .write
            .send(store::Write {
                changes: Vec::new(),
                durable: false,
            })
            .await
            .expect("store sync")
            .expect("store sync write");
    }

    /// Publishes received and not yet read (call after `settle`).
    pub fn drain(&mut self) -> Vec<Publish> {
        let mut out = Vec::new();
        while let Ok(p) = self.publishes.try_recv() {
            out.push(p);
        }
        out
    }

    /// Settles and returns every publish not yet read.
    pub async fn settled_publishes(&mut self) -> Vec<Publish> {
        self.settle().await;
        self.drain()
    }

    pub async fn active_users(&self) -> usize {
        self.hub
            .send(GetHubStats)
            .await
            .expect("stats")
            .active_users
    }

    pub async fn ping(&self) -> usize {
        self.hub
            .send(PingUser { user: USER.into() })
            .await
            .expect("ping")
    }

    pub async fn user_stats(&self) -> Option<UserStats> {
        self.hub
            .send(GetUserStats { user: USER.into() })
            .await
            .expect("user stats")
    }

    /// Waits until no user has push state in memory.
    pub async fn wait_unloaded(&self) {
        wait_until("user state unloaded", || async {
            self.active_users().await == 0
        })
        .await;
    }
}

/// Polls `cond` until it holds, failing the test at the deadline. For state changes that
/// only a timer causes and no message reports.
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    // On a paused clock each tick jumps time forward; the deadline is on the same clock,
    // so it counts the time the module was given, not the time the machine took.
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while !cond().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        tick.tick().await;
    }
}

// ------------------------------------------------------------------ assertions

pub fn assert_result(reply: &Element) {
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "expected a result, got {}",
        String::from(reply)
    );
    assert!(reply.children().next().is_none(), "result must be empty");
}

/// Asserts an error reply with this type, condition and (optional) text.
pub fn assert_error(reply: &Element, error_type: &str, condition: &str, text: Option<&str>) {
    let xml = String::from(reply);
    assert_eq!(reply.attr("type"), Some("error"), "{xml}");
    let error = reply
        .get_child("error", ns::DEFAULT_NS)
        .expect("error child");
    assert_eq!(error.attr("type"), Some(error_type), "{xml}");
    let stanzas = "urn:ietf:params:xml:ns:xmpp-stanzas";
    assert!(error.has_child(condition, stanzas), "{xml}");
    assert_eq!(
        error
            .get_child("text", stanzas)
            .map(|t| t.text())
            .as_deref(),
        text,
        "{xml}"
    );
}

pub fn nodes(ps: &[Publish]) -> Vec<String> {
    let mut v: Vec<String> = ps
        .iter()
        .map(|p| p.node.clone().unwrap_or_default())
        .collect();
    v.sort();
    v
}
