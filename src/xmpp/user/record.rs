//! A session as its user actor keeps it: plain data, no behaviour beyond reading it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

use actix::SpawnHandle;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;

use super::super::route::ToSocket;
use super::super::sm::SmState;
use crate::push::{QueuedStanza, SessionId, TimerOwner};

/// One bound session, as its user actor keeps it: the one place its state lives.
pub(super) struct Entry {
    pub id: SessionId,
    pub jid: FullJid,
    /// The session's last available presence (answers probes); `None`: not available.
    /// Kept serialized: a minidom tree of even `<presence/>` is about 1 KB, and every
    /// session, hibernated ones included, holds one.
    pub presence: Option<Box<str>>,
    /// XEP-0198 counters and the unacked queue, once enabled. Its id is the resumption
    /// id when the session can be resumed (empty otherwise).
    pub sm: Option<SmState>,
    pub link: Link,
    /// Stanzas that arrived past `smacks_max_queue_size`: the session ends, and they
    /// take the unacked stanzas' way out after them (D22).
    pub spill: Vec<Element>,
    /// The `<r/>` the client has not answered yet: its deadline's timer, and whether the
    /// push module was told it is overdue.
    pub ack_timer: Option<SpawnHandle>,
    pub ack_overdue_sent: bool,
    /// What the session asked of the server beyond the stream: carbons, client state.
    pub flags: SessionFlags,
}

/// A session's requests that change what it is sent.
#[derive(Default)]
pub(super) struct SessionFlags {
    /// XEP-0280: copies of the user's other sessions' messages.
    pub carbons: bool,
    /// XEP-0352: whether the client is inactive, and the stanzas waiting meanwhile.
    pub csi: ClientState,
}

/// A session's client state (XEP-0352) and what waits for it (`csi.rs`).
#[derive(Default)]
pub(super) struct ClientState {
    pub inactive: bool,
    /// Changed only through `hold` and `take`, which keep `held_bytes`.
    held: VecDeque<Element>,
    /// The held stanzas' size (`metrics::held::element_bytes`), taken as each is held,
    /// for the memory figures.
    held_bytes: usize,
    /// Set while the held stanzas are written, so that they are not held again.
    pub flushing: bool,
}

impl ClientState {
    pub fn hold(&mut self, stanza: Element) {
        self.held_bytes += crate::metrics::held::element_bytes(&stanza);
        self.held.push_back(stanza);
    }

    /// Everything held, oldest first; nothing is held after.
    pub fn take(&mut self) -> VecDeque<Element> {
        self.held_bytes = 0;
        std::mem::take(&mut self.held)
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}

/// Where a session's stanzas go.
pub(super) enum Link {
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
pub(super) struct Socket {
    pub tx: flume::Sender<ToSocket>,
    /// Stanzas received from the client (the `h` we answer), counted by the socket task.
    pub received: Arc<AtomicU32>,
    /// Which connection of the session (a resumption makes a new one): a report from an
    /// older one is stale.
    pub conn: u64,
}

impl Entry {
    pub fn available(&self) -> bool {
        self.presence.is_some() && !matches!(self.link, Link::Closing(_))
    }

    pub fn live(&self) -> bool {
        !matches!(self.link, Link::Closing(_))
    }

    pub fn hibernated(&self) -> bool {
        matches!(self.link, Link::Hibernated(_))
    }

    pub fn resource(&self) -> &str {
        self.jid.resource().as_str()
    }

    pub fn resume_id(&self) -> Option<&str> {
        self.sm
            .as_ref()
            .map(|sm| sm.id.as_str())
            .filter(|id| !id.is_empty())
    }
}

pub(super) struct Hibernation {
    pub since: Instant,
    /// Stanzas received from the client before the connection was lost (the `h` of
    /// `<resumed/>`).
    pub received: u32,
    /// Numbers this hibernation: answers that arrive after it ended are stale.
    pub epoch: u64,
    /// Who ends it, once the push module answered (`None`: not yet).
    pub owner: Option<TimerOwner>,
    /// The host's timeout, when it is the host's to end.
    pub timer: Option<SpawnHandle>,
    /// The push module was told of the hibernation: queued stanzas may follow.
    pub announced: bool,
    /// Stanzas queued meanwhile, oldest first, each told to the push module once its
    /// stored copy is committed (and those before it were told).
    pub pending: VecDeque<Pending>,
}

pub(super) struct Pending {
    pub stored: bool,
    pub stanza: QueuedStanza,
}

/// Why the server ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EndKind {
    /// A new bind of its resource, or the user's session limit.
    Conflict,
    Shutdown,
    /// The account was deleted.
    Revoked,
    /// Past `smacks_max_queue_size`.
    QueueFull,
    /// The client acknowledged more than was sent.
    BadAck,
    /// Its hibernation ended (the host's timeout or the push module's).
    Timeout,
}

/// A message on its way to offline storage. The store answers in order, but the
/// actor's futures may complete in another order when several are ready at once: the
/// answers are acted on in the order asked, so the push module hears of the messages
/// (and publishes) in the order they came.
pub(super) struct OfflineWait {
    pub ticket: u64,
    pub stanza: Element,
    pub stored: Option<Result<u64, crate::store::StoreError>>,
}
