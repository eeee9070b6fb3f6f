//! The router: where a stanza goes. A local user's stanzas go to that user's actor
//! (started on demand, see `user`), a component's to its connection, and the rest to
//! the server-to-server links (`ToRemote`), or bounced when there are none.
//!
//! It also stands for the host at the push module's boundary for publishes
//! (`RoutePublish`, to a connected component). It keeps no per-session state and walks
//! over no users: a lookup by bare JID is all it does for a local stanza.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;

use super::route::{Remote, RemotePublish, Route, ToRemote, ToSocket, UseS2s};
use super::stanza;
use super::user::{
    self, Bind, BindAnswer, Deliver, EndReason, EndSessions, EndedSession, Gauges, Resume,
    ResumeError, StopIfIdle, User, UserIdle,
};
use crate::config::{Config, LiveConfig};
use crate::metrics::Metrics;
use crate::metrics::held::{self, Charge, HeldBytes};
use crate::push::{PushLinks, RoutePublish, SessionId};
use crate::store::{ArchiveGate, Store};

mod push;
mod stats;
pub use stats::{GetRouterStats, RouterStats};

/// A running user actor, as the router keeps it.
struct Running {
    addr: Addr<User>,
    generation: u64,
    /// In the ids of its publishes: an app server's answer finds the user by it.
    route: u64,
    /// Messages sent to it, for the stop agreement (`user::idle`).
    sent: u64,
}

struct OldSession {
    id: String,
    user: String,
    h: u32,
}

pub struct Router {
    cfg: Arc<Config>,
    /// What every user actor is started with (the same for all).
    for_users: user::Shared,
    users: HashMap<String, Running>,
    /// Each running user actor's route (see `Running::route`).
    routes: HashMap<u64, String>,
    /// Ended sessions' ids, users and final `h`, for `<failed h=…/>`
    /// (smacks_max_old_sessions). The user is kept so that only its owner learns an `h`.
    old_sessions: VecDeque<OldSession>,
    components: HashMap<String, flume::Sender<ToComponent>>,
    /// Where stanzas and publishes for other domains go (`UseS2s`).
    s2s: Option<Recipient<ToRemote>>,
    next_session: u64,
    next_generation: u64,
    /// Who waits for the last user actor to stop (orderly shutdown).
    drained: Vec<tokio::sync::oneshot::Sender<()>>,
    /// What waits in the components' queues, for the memory figures.
    held: HeldBytes,
}

impl Router {
    /// Made inside `Router::create`: the user actors are given the router's address.
    /// `live`: the configuration SIGHUP changes; the router itself runs with the one it
    /// started with.
    pub fn new(
        live: LiveConfig,
        store: Addr<Store>,
        archive_gate: ArchiveGate,
        metrics: Arc<Metrics>,
        ctx: &mut Context<Self>,
    ) -> Self {
        let held = metrics.held.clone();
        let push = Arc::new(PushLinks {
            store: Store::client(&store),
            router: ctx.address().recipient(),
            metrics,
        });
        let cfg = live.get();
        let for_users = user::Shared {
            cfg: cfg.clone(),
            live,
            push,
            store,
            archive_gate,
            route: ctx.address().recipient(),
            idle: ctx.address().recipient(),
            ended: ctx.address().recipient(),
            waiting_bounces: Arc::default(),
            gauges: Arc::default(),
        };
        Router {
            cfg,
            for_users,
            users: HashMap::new(),
            routes: HashMap::new(),
            old_sessions: VecDeque::new(),
            components: HashMap::new(),
            s2s: None,
            next_session: 1,
            next_generation: 1,
            drained: Vec::new(),
            held,
        }
    }

    /// The user's actor, started when the user has none. `None`: `name` is no valid
    /// local part, or `push_max_active_users` user actors run already.
    fn user(&mut self, name: &str) -> Option<&mut Running> {
        if !self.users.contains_key(name) {
            self.start_user(name)?;
        }
        self.users.get_mut(name)
    }

    fn start_user(&mut self, name: &str) -> Option<()> {
        // The running configuration's (SIGHUP): a lowered limit stops no actor, it
        // refuses new users until fewer run.
        let limit = self.for_users.live.get().push_max_active_users;
        if self.users.len() >= limit {
            tracing::warn!(
                limit,
                "push_max_active_users reached: no actor for another user"
            );
            return None;
        }
        let jid = crate::push::protocol::user_jid(name, &self.cfg.domain)?;
        let generation = self.next_generation;
        self.next_generation += 1;
        let mut route = crate::push::publish::new_route();
        while self.routes.contains_key(&route) {
            route = crate::push::publish::new_route();
        }
        let addr = User::new(jid, generation, route, self.for_users.clone()).start();
        self.routes.insert(route, name.to_string());
        self.users.insert(
            name.to_string(),
            Running {
                addr,
                generation,
                route,
                sent: 0,
            },
        );
        Some(())
    }

    /// Forgets a user actor (the stop agreement's end, `user::idle`); whoever waits for
    /// the last one to go (an orderly shutdown) learns it.
    fn forget(&mut self, name: &str) -> Option<Running> {
        let r = self.users.remove(name)?;
        self.routes.remove(&r.route);
        if self.users.is_empty() {
            for done in self.drained.drain(..) {
                let _ = done.send(());
            }
        }
        Some(r)
    }

    fn bounce(&mut self, stanza: &Element, condition: &str, ctx: &mut Context<Self>) {
        let error_type = match condition {
            "resource-constraint" | "internal-server-error" => "wait",
            "jid-malformed" => "modify",
            _ => "cancel",
        };
        let Some(reply) = stanza::error_reply(stanza, error_type, condition) else {
            // An error is never answered with an error (RFC 6120 §8.3.1).
            tracing::debug!(condition, "undeliverable error stanza dropped");
            return;
        };
        // The bounce goes back to where the stanza came from, through the same rules.
        self.deliver(reply, ctx);
    }

    /// A stanza to the server itself from a component (clients' are answered by their
    /// session): ping is answered, other requests are `service-unavailable`, the rest is
    /// dropped.
    fn server_stanza(&mut self, stanza: Element, ctx: &mut Context<Self>) {
        if stanza.name() != "iq" || !matches!(stanza.attr("type"), Some("get") | Some("set")) {
            return;
        }
        let reply =
            if stanza.attr("type") == Some("get") && stanza.has_child("ping", "urn:xmpp:ping") {
                Some(stanza::iq_result(&stanza, None))
            } else {
                stanza::error_reply(&stanza, "cancel", "service-unavailable")
            };
        if let Some(r) = reply {
            self.deliver(r, ctx);
        }
    }

    /// Delivers a stanza whose `from` is already set.
    fn deliver(&mut self, stanza: Element, ctx: &mut Context<Self>) {
        let Some(to) = stanza.attr("to").and_then(crate::jid::parse::<Jid>) else {
            // From a server or a component (a client's own `to` is checked before it
            // is routed); an error or a stanza without `to` ends here.
            if stanza.attr("to").is_some() {
                self.bounce(&stanza, "jid-malformed", ctx);
            }
            return;
        };
        let domain = to.domain().as_str();
        if let Some(tx) = self.components.get(domain) {
            let charge = self.held.charge(held::element_bytes(&stanza));
            if let Err(
                flume::TrySendError::Full(ToComponent::Stanza(s, _))
                | flume::TrySendError::Disconnected(ToComponent::Stanza(s, _)),
            ) = tx.try_send(ToComponent::Stanza(Box::new(stanza), charge))
            {
                tracing::warn!(component = %domain, "component queue full: stanza bounced");
                self.bounce(&s, "resource-constraint", ctx);
            }
            return;
        }
        if domain != self.cfg.domain {
            match &self.s2s {
                Some(s2s) => s2s.do_send(ToRemote {
                    domain: domain.to_ascii_lowercase(),
                    item: Remote::Stanza(Box::new(stanza)),
                }),
                None => self.bounce(&stanza, "remote-server-not-found", ctx),
            }
            return;
        }
        let Some(name) = to.node().map(|n| n.to_string()) else {
            self.server_stanza(stanza, ctx);
            return;
        };
        let Some(running) = self.user(&name) else {
            self.bounce(&stanza, "resource-constraint", ctx);
            return;
        };
        match running.addr.try_send(Deliver { stanza, to }) {
            Ok(()) => running.sent += 1,
            Err(SendError::Full(d) | SendError::Closed(d)) => {
                // Bounded mailbox: a user flooded faster than its actor keeps up.
                tracing::warn!(user = %name, "user's queue full: stanza bounced");
                self.bounce(&d.stanza, "resource-constraint", ctx);
            }
        }
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Route> for Router {
    type Result = ();

    fn handle(&mut self, Route(stanza): Route, ctx: &mut Context<Self>) {
        self.deliver(stanza, ctx);
    }
}

/// The stop agreement's router half (`user::idle`): forget the actor when nothing is on
/// its way to it.
impl Handler<UserIdle> for Router {
    type Result = ();

    fn handle(&mut self, msg: UserIdle, _: &mut Context<Self>) {
        let forget = self
            .users
            .get(&msg.user)
            .is_some_and(|r| r.generation == msg.generation && r.sent == msg.seen);
        if forget && let Some(r) = self.forget(&msg.user) {
            r.addr.do_send(StopIfIdle);
        }
    }
}

/// A session binds a resource for `user`.
#[derive(Message)]
#[rtype(result = "Result<BoundSession, &'static str>")]
pub struct BindSession {
    pub user: String,
    pub resource: Option<String>,
}

/// A bound session's place: its id, its user's actor, the session counters, and what
/// its socket task needs.
pub struct BoundSession {
    pub id: SessionId,
    pub owner: Addr<User>,
    pub gauges: Arc<Gauges>,
    pub bound: BindAnswer,
}

impl Handler<BindSession> for Router {
    type Result = ResponseFuture<Result<BoundSession, &'static str>>;

    fn handle(&mut self, msg: BindSession, _: &mut Context<Self>) -> Self::Result {
        let id = SessionId(self.next_session);
        self.next_session += 1;
        let gauges = self.for_users.gauges.clone();
        let Some(running) = self.user(&msg.user) else {
            return Box::pin(async { Err("resource-constraint") });
        };
        running.sent += 1;
        let owner = running.addr.clone();
        let bind = owner.send(Bind {
            id,
            resource: msg.resource,
        });
        Box::pin(async move {
            match bind.await {
                Ok(Ok(bound)) => Ok(BoundSession {
                    id,
                    owner,
                    gauges,
                    bound,
                }),
                Ok(Err(condition)) => Err(condition),
                Err(_) => Err("internal-server-error"),
            }
        })
    }
}

/// `<resume/>` of `user` for `previd`, with the client's `h`.
#[derive(Message)]
#[rtype(result = "Result<ResumedSession, ResumeFailed>")]
pub struct ResumeSession {
    pub user: String,
    pub previd: String,
    pub h: u32,
}

/// A resumed session, for its new socket task.
pub struct ResumedSession {
    pub id: SessionId,
    pub jid: FullJid,
    pub owner: Addr<User>,
    pub gauges: Arc<Gauges>,
    pub rx: flume::Receiver<ToSocket>,
    pub received: Arc<std::sync::atomic::AtomicU32>,
    pub conn: u64,
    pub first: Vec<Element>,
}

pub enum ResumeFailed {
    /// No such session: `<failed/>`, with the `h` of an ended one when remembered.
    Unknown(Option<u32>),
    /// The client acknowledged more than was sent; the session ended.
    HandledCountTooHigh,
}

impl Handler<ResumeSession> for Router {
    type Result = ResponseActFuture<Self, Result<ResumedSession, ResumeFailed>>;

    fn handle(&mut self, msg: ResumeSession, _: &mut Context<Self>) -> Self::Result {
        let gauges = self.for_users.gauges.clone();
        let resume = self.users.get_mut(&msg.user).map(|r| {
            r.sent += 1;
            let owner = r.addr.clone();
            let asked = r.addr.send(Resume {
                previd: msg.previd.clone(),
                h: msg.h,
            });
            (owner, asked)
        });
        Box::pin(
            async move {
                let (owner, asked) = resume?;
                Some((owner, asked.await.ok()?))
            }
            .into_actor(self)
            .map(move |answer, act, _| match answer {
                Some((owner, Ok(r))) => Ok(ResumedSession {
                    id: r.id,
                    jid: r.jid,
                    owner,
                    gauges,
                    rx: r.rx,
                    received: r.received,
                    conn: r.conn,
                    first: r.first,
                }),
                Some((_, Err(ResumeError::HandledCountTooHigh))) => {
                    Err(ResumeFailed::HandledCountTooHigh)
                }
                // Another account's ended session is "not found" like any unknown id:
                // its `h` would tell how many stanzas that user had received.
                _ => Err(ResumeFailed::Unknown(
                    act.old_sessions
                        .iter()
                        .find(|o| o.id == msg.previd && o.user == msg.user)
                        .map(|o| o.h),
                )),
            }),
        )
    }
}

impl Handler<EndedSession> for Router {
    type Result = ();

    fn handle(&mut self, msg: EndedSession, _: &mut Context<Self>) {
        self.old_sessions.push_back(OldSession {
            id: msg.id,
            user: msg.user,
            h: msg.h,
        });
        while self.old_sessions.len() > self.cfg.smacks_max_old_sessions {
            self.old_sessions.pop_front();
        }
    }
}

/// The server stops: every session ends (connected ones with `system-shutdown`), and
/// each hands its unacknowledged messages to offline storage (D23). Answered once every
/// user actor has stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndAllSessions;

impl Handler<EndAllSessions> for Router {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: EndAllSessions, _: &mut Context<Self>) -> Self::Result {
        for r in self.users.values_mut() {
            r.sent += 1;
            r.addr.do_send(EndSessions(EndReason::Shutdown));
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.users.is_empty() {
            let _ = done.send(());
        } else {
            self.drained.push(done);
        }
        Box::pin(async move {
            let _ = wait.await;
        })
    }
}

/// A component completed its handshake. `false`: one with that JID is connected already.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct AttachComponent {
    pub jid: String,
    pub tx: flume::Sender<ToComponent>,
}

/// What the router hands a component's connection.
/// Each carries its bytes' share of the memory figures until it is written or dropped.
pub enum ToComponent {
    /// A stanza routed to the component's domain.
    Stanza(Box<Element>, Charge),
    /// A publish from the push module, serialized without a namespace on its root.
    Publish(String, Charge),
}

impl Handler<AttachComponent> for Router {
    type Result = bool;

    fn handle(&mut self, msg: AttachComponent, _: &mut Context<Self>) -> bool {
        if self
            .components
            .get(&msg.jid)
            .is_some_and(|tx| !tx.is_disconnected())
        {
            return false;
        }
        self.components.insert(msg.jid, msg.tx);
        true
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct DetachComponent {
    pub jid: String,
}

impl Handler<DetachComponent> for Router {
    type Result = ();

    fn handle(&mut self, msg: DetachComponent, _: &mut Context<Self>) {
        self.components.remove(&msg.jid);
    }
}

impl Handler<RoutePublish> for Router {
    type Result = ();

    fn handle(&mut self, msg: RoutePublish, _: &mut Context<Self>) {
        let domain = msg.to.domain().as_str();
        match self.components.get(domain) {
            Some(tx) => {
                let charge = self.held.charge(msg.xml.len());
                if tx.try_send(ToComponent::Publish(msg.xml, charge)).is_err() {
                    tracing::warn!(component = %domain, "app server queue full: publish dropped");
                }
            }
            None if domain != self.cfg.domain && self.s2s.is_some() => {
                if let Some(s2s) = &self.s2s {
                    s2s.do_send(ToRemote {
                        domain: domain.to_ascii_lowercase(),
                        item: Remote::Publish(RemotePublish {
                            id: msg.id,
                            xml: msg.xml,
                        }),
                    });
                }
            }
            None => {
                tracing::warn!(to = %msg.to, "no connected component for this app server: publish dropped");
            }
        }
    }
}

impl Handler<UseS2s> for Router {
    type Result = ();

    fn handle(&mut self, UseS2s(s2s): UseS2s, _: &mut Context<Self>) {
        self.s2s = Some(s2s);
    }
}

/// Session counts, from the gauges the user actors keep.
impl Handler<GetRouterStats> for Router {
    type Result = MessageResult<GetRouterStats>;

    fn handle(&mut self, _: GetRouterStats, _: &mut Context<Self>) -> Self::Result {
        let (connected, hibernated, session_queued) = self.for_users.gauges.read();
        let memory = self.for_users.gauges.memory();
        // A user actor (its push state included; its registrations are counted by the
        // actor, as they change) and its entries in `users` and `routes`.
        let per_user = std::mem::size_of::<User>()
            + std::mem::size_of::<(String, Running)>()
            + std::mem::size_of::<(u64, String)>();
        let mut s = RouterStats {
            connected,
            hibernated,
            session_queued,
            users: self.users.len() as u64,
            memory_users: (self.users.len() * per_user) as u64 + memory.registrations,
            memory_sessions: memory.sessions,
            memory_queues: memory.queues,
            ..RouterStats::default()
        };
        for tx in self.components.values().filter(|tx| !tx.is_disconnected()) {
            s.components += 1;
            s.component_queued += tx.len() as u64;
        }
        MessageResult(s)
    }
}
