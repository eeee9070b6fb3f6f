//! The user actor's state and the few helpers every part of it uses.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use actix::prelude::*;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

use super::super::mam::filter::ArchiveFilter;
use super::super::route::{Route, SESSION_CHANNEL, ToSocket};
use super::super::stanza;
use super::committed::Committed;
use super::footprint::{self, Footprint};
use super::gauges::Gauges;
use super::record::{Entry, OfflineWait, Socket};
use super::to_router::{EndedSession, UserIdle};
use crate::config::{Config, LiveConfig};
use crate::push::{PushExecutor, PushLinks, SessionId};
use crate::store::{ArchiveGate, Store};

/// Room in a socket's channel past the unacked queue's bound, for nonzas (`<r/>`, the
/// stream's close).
pub(super) const NONZA_ROOM: usize = 8;

/// Resources per user; past it a bind is refused with `resource-constraint`.
pub const MAX_RESOURCES: usize = 32;

/// Room in a user actor's mailbox for what the router sends it; past it a stanza is
/// treated as undeliverable by the router (stored offline or bounced).
pub const MAILBOX: usize = 4096;

/// What every user actor shares with the router.
#[derive(Clone)]
pub struct Shared {
    /// What the server started with.
    pub cfg: Arc<Config>,
    /// What it runs with now: read for the limits SIGHUP applies (`reload`).
    pub live: LiveConfig,
    /// What the user's push state reaches: the store, the router, the metrics.
    pub push: Arc<PushLinks>,
    pub store: Addr<Store>,
    /// Places for archive writes waiting for a commit (`store_max_pending`).
    pub archive_gate: ArchiveGate,
    /// Where stanzas for others go: the router.
    pub route: Recipient<Route>,
    /// The router's end of the stop agreement.
    pub idle: Recipient<UserIdle>,
    /// The router remembers ended resumable sessions (it outlives user actors).
    pub ended: Recipient<EndedSession>,
    /// Bounces waiting for room in a session's channel, server-wide (bounded by
    /// `delivery::WAITING_BOUNCES`).
    pub waiting_bounces: Arc<AtomicUsize>,
    pub gauges: Arc<Gauges>,
}

pub struct User {
    pub(super) name: String,
    /// `name@domain`.
    pub(super) bare: String,
    pub(super) shared: Shared,
    pub(super) sessions: Vec<Entry>,
    /// Connections made so far (numbers each session's sockets).
    pub(super) next_conn: u64,
    /// Requests to the store in flight, whose answers this actor must still act on.
    pub(super) in_flight: usize,
    /// Messages asked to be stored offline, oldest first, until their answers are
    /// acted on (see `OfflineWait`).
    pub(super) offline: std::collections::VecDeque<OfflineWait>,
    pub(super) next_ticket: u64,
    /// Messages received from the router, for the stop agreement.
    pub(super) from_router: u64,
    /// An idle report was sent and no router message came since.
    pub(super) idle_reported: bool,
    /// Which of this user's actors this is (numbered by the router).
    pub(super) generation: u64,
    /// The router forgot this actor: it stops once its store requests are answered.
    pub(super) detached: bool,
    /// The server stops: publishes awaiting answers no longer keep the actor.
    pub(super) stopping: bool,
    /// Idle, waiting `push_user_idle_time` before reporting it.
    pub(super) linger: Option<SpawnHandle>,
    /// What this actor last added to the server's memory figures (`account`).
    pub(super) footprint: Footprint,
    /// The user's push state (registrations, links, held hibernations, publishes
    /// awaiting answers): the push module's machine, run here.
    pub(super) push: PushExecutor,
    /// What the store will archive (XEP-0441), so only that is stamped.
    pub(super) archive_filter: ArchiveFilter,
    /// The store's answers to durable archive writes come back here (see `archive.rs`).
    pub(super) committed: flume::Sender<Committed>,
    pub(super) committed_rx: flume::Receiver<Committed>,
    pub(super) span: tracing::Span,
}

impl User {
    /// `route` goes into the ids of the user's publishes: the router brings an app
    /// server's answer back by it.
    pub fn new(user_jid: BareJid, generation: u64, route: u64, shared: Shared) -> User {
        let bare = user_jid.to_string();
        let (committed, committed_rx) = flume::unbounded();
        let name = user_jid.node().map(|n| n.to_string()).unwrap_or_default();
        let push = PushExecutor::new(
            name.clone(),
            user_jid,
            shared.live.clone(),
            shared.push.clone(),
            route,
        );
        User {
            span: tracing::info_span!("user", user = %bare),
            push,
            bare,
            name,
            shared,
            sessions: Vec::new(),
            next_conn: 0,
            in_flight: 0,
            offline: Default::default(),
            next_ticket: 0,
            from_router: 0,
            idle_reported: false,
            generation,
            detached: false,
            stopping: false,
            linger: None,
            footprint: Footprint::default(),
            archive_filter: ArchiveFilter::default(),
            committed,
            committed_rx,
        }
    }

    /// Brings this user's share of the server's memory figures up to date; called
    /// after each change of the sessions or their queues, and after each push event
    /// (the registrations). A missed call is made good
    /// at the next one (the share is recomputed whole) and at the actor's stop.
    pub(super) fn account(&mut self) {
        let now = Footprint {
            registrations: self.push.machine().registration_bytes() as u64,
            ..footprint::of(&self.sessions)
        };
        self.shared.gauges.footprint(self.footprint, now);
        self.footprint = now;
    }

    pub(super) fn entry_mut(&mut self, id: SessionId) -> Option<&mut Entry> {
        self.sessions.iter_mut().find(|e| e.id == id)
    }

    /// The ids of the sessions `keep` picks (ids, because writing to one needs the
    /// actor mutably).
    pub(super) fn session_ids(&self, keep: impl Fn(&Entry) -> bool) -> Vec<SessionId> {
        self.sessions
            .iter()
            .filter(|e| keep(e))
            .map(|e| e.id)
            .collect()
    }

    pub(super) fn index_of(&self, id: SessionId) -> Option<usize> {
        self.sessions.iter().position(|e| e.id == id)
    }

    /// A new connection for a session whose unacked queue holds up to `sm_queue`
    /// stanzas: the socket task's channel and counter.
    pub(super) fn new_socket(&mut self, sm_queue: usize) -> (Socket, flume::Receiver<ToSocket>) {
        // Sized for stream management, whose own bound (the unacked queue) is reached
        // first; a session without it counts as full at SESSION_CHANNEL (delivery.rs).
        // The room left for nonzas is what `EnableSm` subtracts again.
        let cap = SESSION_CHANNEL.max(sm_queue + NONZA_ROOM);
        let (tx, rx) = flume::bounded(cap);
        self.next_conn += 1;
        let socket = Socket {
            tx,
            received: Arc::default(),
            conn: self.next_conn,
        };
        (socket, rx)
    }

    /// Sends `reply`, an answer to a stanza that could not be delivered, back through
    /// the router.
    pub(super) fn bounce(&self, stanza: &Element, condition: &str) {
        let error_type =
            if condition == "resource-constraint" || condition == "internal-server-error" {
                "wait"
            } else {
                "cancel"
            };
        match stanza::error_reply(stanza, error_type, condition) {
            Some(reply) => self.shared.route.do_send(Route(reply)),
            // An error is never answered with an error (RFC 6120 §8.3.1).
            None => tracing::debug!(condition, "undeliverable error stanza dropped"),
        }
    }
}

impl Actor for User {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        let _span = self.span.clone().entered();
        self.read_committed(ctx);
        self.read_archive_prefs(ctx);
        self.read_contacts_after_load(ctx);
        PushExecutor::load(self, ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.push.stopped();
        self.shared
            .gauges
            .footprint(self.footprint, Footprint::default());
    }
}
