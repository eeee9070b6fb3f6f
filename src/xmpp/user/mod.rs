//! The user actor: one per user with live state, the one owner of that user's sessions
//! as the rest of the server sees them (resource, channel, presence, hibernation,
//! resumption id) and of delivery to them (RFC 6121 §8.5 for a local user).
//!
//! The router starts it on the first stanza or bind for the user and forgets it when it
//! has nothing left: no session and no request to the store in flight. A user without
//! live state costs nothing. Stopping is agreed with the router (see [`idle`]), so no
//! stanza is ever sent to a user actor that is about to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize};

use actix::prelude::*;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;

use super::route::{Route, SESSION_CHANNEL, ToSocket};
use super::sm::SmState;
use super::stanza;
use hibernation::Hibernation;
use crate::config::Config;
use crate::push::{PushHub, SessionId};
use crate::store::Store;

mod delivery;
mod end;
mod gauges;
mod hibernation;
mod idle;
mod presence;
mod resume;
mod roster_push;
mod sessions;
mod stream;

pub use delivery::Deliver;
pub use gauges::Gauges;
pub use idle::{StopIfIdle, UserIdle};
pub use roster_push::SaveRosterItem;
pub use resume::{Resume, ResumeError, Resumed};
pub use sessions::{Bind, Bound, EndReason, EndSessions, EndedSession, SetAvailable};
pub use stream::{ClientAck, EnableSm, Reply, SocketEnded, handled_count_too_high};

/// Resources per user; past it a bind is refused with `resource-constraint`.
pub const MAX_RESOURCES: usize = 32;

/// Room in a user actor's mailbox for what the router sends it; past it a stanza is
/// treated as undeliverable by the router (stored offline or bounced).
pub const MAILBOX: usize = 4096;

/// One bound session, as its user actor keeps it: the one place its state lives.
struct Entry {
    id: SessionId,
    jid: FullJid,
    /// The session's last available presence (answers probes); `None`: not available.
    /// Kept serialized: a minidom tree of even `<presence/>` is about 1 KB, and every
    /// session, hibernated ones included, holds one.
    presence: Option<Box<str>>,
    /// XEP-0198 counters and the unacked queue, once enabled. Its id is the resumption
    /// id when the session can be resumed (empty otherwise).
    sm: Option<SmState>,
    link: Link,
    /// Stanzas that arrived past `smacks_max_queue_size`: the session ends, and they
    /// take the unacked stanzas' way out after them (D22).
    spill: Vec<Element>,
    /// The `<r/>` the client has not answered yet: its deadline's timer, and whether the
    /// push module was told it is overdue.
    ack_timer: Option<SpawnHandle>,
    ack_overdue_sent: bool,
}

/// Where a session's stanzas go.
enum Link {
    /// A socket task writes them.
    Connected(Socket),
    /// No connection (XEP-0198 hibernation): they queue up in the session's record.
    Hibernated(Box<Hibernation>),
    /// The server ended the session and told its socket; the socket's last report
    /// (with what it did not write) settles it.
    Closing(Socket),
}

/// A session's connection, as its user actor reaches it.
#[derive(Clone)]
struct Socket {
    tx: flume::Sender<ToSocket>,
    /// Stanzas received from the client (the `h` we answer), counted by the socket task.
    received: Arc<AtomicU32>,
    /// Which connection of the session (a resumption makes a new one): a report from an
    /// older one is stale.
    conn: u64,
}

impl Entry {
    fn available(&self) -> bool {
        self.presence.is_some() && !matches!(self.link, Link::Closing(_))
    }

    fn live(&self) -> bool {
        !matches!(self.link, Link::Closing(_))
    }

    fn hibernated(&self) -> bool {
        matches!(self.link, Link::Hibernated(_))
    }

    fn resource(&self) -> &str {
        self.jid.resource().as_str()
    }

    fn resume_id(&self) -> Option<&str> {
        self.sm.as_ref().map(|sm| sm.id.as_str()).filter(|id| !id.is_empty())
    }
}

/// What every user actor shares with the router.
#[derive(Clone)]
pub struct Shared {
    pub cfg: Arc<Config>,
    pub hub: Addr<PushHub>,
    pub store: Addr<Store>,
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
    name: String,
    /// `name@domain`.
    bare: String,
    shared: Shared,
    sessions: Vec<Entry>,
    /// Connections made so far (numbers each session's sockets).
    next_conn: u64,
    /// Requests to the store in flight, whose answers this actor must still act on.
    in_flight: usize,
    /// Messages received from the router, for the stop agreement.
    from_router: u64,
    /// An idle report was sent and no router message came since.
    idle_reported: bool,
    /// Which of this user's actors this is (numbered by the router).
    generation: u64,
    /// The router forgot this actor: it stops once its store requests are answered.
    detached: bool,
}

impl User {
    pub fn new(name: String, generation: u64, shared: Shared) -> User {
        User {
            bare: format!("{name}@{}", shared.cfg.domain),
            name,
            shared,
            sessions: Vec::new(),
            next_conn: 0,
            in_flight: 0,
            from_router: 0,
            idle_reported: false,
            generation,
            detached: false,
        }
    }

    fn entry_mut(&mut self, id: SessionId) -> Option<&mut Entry> {
        self.sessions.iter_mut().find(|e| e.id == id)
    }

    fn index_of(&self, id: SessionId) -> Option<usize> {
        self.sessions.iter().position(|e| e.id == id)
    }

    /// A new connection for a session: the socket task's channel and counter.
    fn new_socket(&mut self) -> (Socket, flume::Receiver<ToSocket>) {
        // Sized for stream management, whose own bound (the unacked queue) is reached
        // first; a session without it counts as full at SESSION_CHANNEL (delivery.rs).
        let cap = SESSION_CHANNEL.max(self.shared.cfg.smacks_max_queue_size + 8);
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
    fn bounce(&self, stanza: &Element, condition: &str) {
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
    }
}
