//! What happens to a user, as the machine hears of it.

use std::time::Duration;

use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;

use crate::push::interface::{PublishUndelivered, QueuedStanza, Selector, SessionId, StanzaKey};
use crate::push::protocol::{DisableRequest, EnableRequest};
use crate::push::publish::Response;
use crate::store::{RegistrationRecord, StoreError};

/// Names a request of the host's, so the [`Reply`](super::Reply) and the store write that
/// it waits for find their way back. Chosen by the host; unique among requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub u64);

/// A timer the machine asked for with [`Effect::Arm`](super::Effect::Arm).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The end of a hibernation the module holds (D14).
    Hibernation(SessionId),
    /// `push_response_timeout` of the publish with this id (D10).
    Response(String),
}

/// One input to [`PushMachine::handle`](super::PushMachine::handle). (No `Debug`: an
/// enable carries the publish-options secret.)
pub enum Event {
    /// The user's stored registrations, or why they cannot be read (D6: then every
    /// request is answered with an error and nothing is ever written).
    Loaded(Result<Vec<(String, RegistrationRecord)>, StoreError>),
    /// A validated `<enable/>` from `session`, whose full JID is `jid`; `iq_id` is the
    /// IQ's id for the reply.
    Enable {
        request: RequestId,
        session: SessionId,
        jid: FullJid,
        iq_id: String,
        req: EnableRequest,
    },
    /// A validated `<disable/>` from the session whose full JID is `jid`.
    Disable {
        request: RequestId,
        jid: FullJid,
        iq_id: String,
        req: DisableRequest,
    },
    /// The admin removes the registrations `selector` names.
    Remove {
        request: RequestId,
        selector: Selector,
    },
    /// The admin's test push to the registrations `selector` names.
    TestPush {
        request: RequestId,
        selector: Selector,
    },
    /// The store answered the write made for `request`.
    Written {
        request: RequestId,
        result: Result<(), StoreError>,
    },
    /// A session with resumption lost its connection; answered with a
    /// [`Reply::TimerOwner`](super::Reply::TimerOwner).
    Hibernated {
        request: RequestId,
        session: SessionId,
        normal_timeout: Duration,
        queue: Vec<QueuedStanza>,
    },
    /// A stanza was queued for a (possibly hibernated) session.
    StanzaQueued(QueuedStanza),
    /// A connected session left an `<r/>` unanswered for `smacks_max_ack_delay`.
    AckOverdue {
        session: SessionId,
        queue: Vec<QueuedStanza>,
    },
    /// A hibernated session was resumed; the client acknowledged up to `acked` (a seq).
    Resumed { session: SessionId, acked: u64 },
    /// The session ended for good.
    Closed { session: SessionId },
    /// A message stored offline (`key`: from a destroyed session's unacked queue).
    Offline {
        stanza: Element,
        key: Option<StanzaKey>,
    },
    /// A message archived for the user.
    Archived {
        stanza: Element,
        user_has_sessions: bool,
        /// The user has an online session and every online session's presence is away
        /// or xa (`<show>away</show>` or `<show>xa</show>`): registrations that enabled
        /// `tigase:push:away:0` are then published to even when their own session is
        /// connected.
        all_away: bool,
    },
    /// An app server's answer already matched to this user by its publish id.
    Response(Response),
    /// The host's server-to-server layer could not deliver a publish to its app
    /// server's domain (D21).
    Undelivered(PublishUndelivered),
    /// The host could not route the publish with this id (its queue was full): the
    /// machine stops waiting for an answer.
    NotRouted { id: String },
    /// The ping notification to every registration (§8.7).
    Ping,
    /// A timer armed earlier is due. Deliver only timers still armed: a cancelled or
    /// re-armed timer must not fire under its old deadline.
    TimerFired(Timer),
    /// The user's contacts: the bare JIDs on their roster, for registrations that
    /// filter unknown senders (see [`PushMachine::wants_contacts`](super::PushMachine::wants_contacts)).
    /// A roster item that is only someone's pending subscription request is not a
    /// contact.
    Contacts(Vec<String>),
    /// One roster change, once the machine knows the contacts: `jid` (bare) is now a
    /// contact or no longer one.
    Contact { jid: String, contact: bool },
    /// The host unloads the user. `flush`: write the ledger changes not yet stored;
    /// otherwise (the user is being deleted) end every held hibernation now.
    Unload { flush: bool },
}
