//! The user actor: one per user with live state, the one owner of that user's sessions
//! as the rest of the server sees them (resource, channel, presence, hibernation,
//! resumption id) and of delivery to them (RFC 6121 §8.5 for a local user).
//!
//! The router starts it on the first stanza or bind for the user and forgets it when it
//! has nothing left: no session and no request to the store in flight. A user without
//! live state costs nothing. Stopping is agreed with the router (see [`idle`]), so no
//! stanza is ever sent to a user actor that is about to stop.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use actix::prelude::*;
use xmpp_parsers::minidom::Element;

use super::route::{Route, ToSession};
use super::stanza;
use crate::config::Config;
use crate::push::{PushHub, SessionId};
use crate::store::Store;

mod delivery;
mod gauges;
mod idle;
mod presence;
mod roster_push;
mod sessions;

pub use delivery::Deliver;
pub use gauges::Gauges;
pub use idle::{StopIfIdle, UserIdle};
pub use roster_push::SaveRosterItem;
pub use sessions::{
    Bind, EndReason, EndSessions, EndedSession, FindResumable, SetAvailable, SetHibernated,
    SmForget, SmRegister, Unbind,
};

/// Resources per user; past it a bind is refused with `resource-constraint`.
pub const MAX_RESOURCES: usize = 32;

/// Room in a user actor's mailbox for what the router sends it; past it a stanza is
/// treated as undeliverable by the router (stored offline or bounced).
pub const MAILBOX: usize = 4096;

/// One bound session, as its user actor keeps it.
struct Entry {
    id: SessionId,
    /// Since when the session has no connection (XEP-0198 hibernation).
    hibernated_since: Option<std::time::Instant>,
    resource: Box<str>,
    tx: flume::Sender<ToSession>,
    /// The session's last available presence (answers probes); `None`: not available.
    /// Kept serialized: a minidom tree of even `<presence/>` is about 1 KB, and every
    /// session, hibernated ones included, holds one.
    presence: Option<Box<str>>,
    /// The XEP-0198 resumption id, while the session can be resumed.
    resume_id: Option<Box<str>>,
}

impl Entry {
    fn available(&self) -> bool {
        self.presence.is_some()
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
