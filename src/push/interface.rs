//! The boundary between the push module and a host that uses its stand-alone actors.
//! (The XMPP server here does not: its user actor embeds a
//! [`PushExecutor`](super::PushExecutor) and feeds the machine directly; the types
//! below that both use are the shared vocabulary.)
//!
//! The host sends the messages of the first part to the [`PushHub`](super::PushHub)
//! (through `Recipient`s, so it never names the module's actors) and hands the module two
//! kinds of `Recipient` for what comes back: [`RoutePublish`] (one, given at start: publish
//! IQs to route to app servers) and [`SessionControl`] (one per session, given with the
//! session's `<enable/>`: instructions about its hibernation timer).
//!
//! Users are named by their local part; the module adds the configured domain.
//!
//! ## The host's side of the contract
//!
//! - Send [`PushRequest`] for every IQ whose single child is in `urn:xmpp:push:0`,
//!   whatever its type and address: the module answers errors as Prosody would.
//! - Send [`SessionHibernated`] whenever a session with resumption loses its connection.
//!   If the answer is [`TimerOwner::Module`], do not run your own hibernation timeout for
//!   it: the module sends [`SessionAction::Expire`] when it must end (D14), then destroy
//!   it exactly as at a normal XEP-0198 timeout.
//! - While it hibernates, send [`StanzaQueued`] for every stanza queued to it; send
//!   [`AckOverdue`] when a connected session leaves an `<r/>` unanswered for
//!   `smacks_max_ack_delay`; send [`SessionResumed`] on resumption and [`SessionClosed`]
//!   when a session ends for good, *after* handing its unacked messages to offline storage.
//! - Send [`OfflineMessage`] for each message stored offline (and for each groupchat message
//!   to an absent resource), [`MessageArchived`] for each message archived while the user
//!   has sessions, and [`AppServerResponse`] for each IQ `result`/`error` addressed to the
//!   domain that is not an answer to the host's own requests. Never reply to those.
//! - Identify stanzas of a session's stream with [`StanzaKey`] wherever they go, so that
//!   one stanza never causes two publishes to one registration (D13).
//!
//! This hub knows no rosters: Tigase's `ignore-unknown` filter lets every sender through
//! here. A host that runs the [`PushMachine`](super::machine::PushMachine) itself feeds
//! it the user's contacts (the server's user actor does).

use std::time::Duration;

use actix::{Message, Recipient};
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;

use serde::{Deserialize, Serialize};

use crate::store::StoreError;
pub use crate::store::ledger::{RegistrationView, SelectError, Selector};

/// One c2s session, for the life of the process. Assigned by the host, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// A stanza's position in a session's outgoing stream (its XEP-0198 sequence number,
/// unwrapped to 64 bits). Stable across every path the stanza takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StanzaKey {
    pub session: SessionId,
    pub seq: u64,
}

/// A stanza in, or arriving at, a session's unacknowledged queue.
#[derive(Debug, Clone)]
pub struct QueuedStanza {
    pub key: StanzaKey,
    pub stanza: Element,
}

/// The session that sent a push IQ.
#[derive(Clone)]
pub struct Session {
    pub id: SessionId,
    /// The session's full JID (its local part is the user).
    pub jid: FullJid,
    /// Where instructions about this session's hibernation go.
    pub control: Recipient<SessionControl>,
}

// ---------------------------------------------------------------- host → module

/// An IQ with a `urn:xmpp:push:0` payload from a session. Answered with the reply to send
/// back to it, only after any change it made is durable (`None`: an IQ result or error,
/// which gets no reply).
#[derive(Message, Clone)]
#[rtype(result = "Option<Element>")]
pub struct PushRequest {
    pub session: Session,
    pub iq: Element,
}

/// A session with resumption lost its connection. `queue` is its unacked queue; the
/// answer says who runs its hibernation timer.
#[derive(Message, Debug, Clone)]
#[rtype(result = "TimerOwner")]
pub struct SessionHibernated {
    pub user: String,
    pub session: SessionId,
    /// The host's normal hibernation timeout (`smacks_hibernation_time`).
    pub normal_timeout: Duration,
    pub queue: Vec<QueuedStanza>,
}

/// Who ends a hibernated session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerOwner {
    /// The host's normal timeout applies (the session is not push-linked).
    Host,
    /// The module holds the session open and will send [`SessionAction::Expire`].
    Module,
}

/// A stanza was queued for a hibernated session.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct StanzaQueued {
    pub user: String,
    pub stanza: QueuedStanza,
}

/// A connected session has not acknowledged an `<r/>` for `smacks_max_ack_delay`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct AckOverdue {
    pub user: String,
    pub session: SessionId,
    pub queue: Vec<QueuedStanza>,
}

/// A hibernated session was resumed; the client acknowledged up to `acked` (a seq).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SessionResumed {
    pub user: String,
    pub session: SessionId,
    pub acked: u64,
}

/// A session ended for good (closed, replaced, or expired and destroyed).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SessionClosed {
    pub user: String,
    pub session: SessionId,
}

/// A message was stored offline for `user`, or a groupchat message reached an absent
/// resource. `key` is set when it comes from a destroyed session's unacked queue.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct OfflineMessage {
    pub user: String,
    pub stanza: Element,
    pub key: Option<StanzaKey>,
}

/// A message was archived (MAM) for `user`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct MessageArchived {
    pub user: String,
    pub stanza: Element,
    /// Whether the user has any session at all (online or hibernated) right now.
    pub user_has_sessions: bool,
    /// Whether the user has an online session and every online session is away or xa
    /// (for `tigase:push:away:0`).
    pub all_away: bool,
}

/// An IQ `result` or `error` addressed to the domain: possibly an app server's answer.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct AppServerResponse {
    pub iq: Element,
}

/// The host's server-to-server layer could not deliver the publish with this `id` to
/// its app server's domain (D21): `condition` is the stanza error a message would have
/// bounced with, `reason` what failed. `given_up`: it will not be sent again; otherwise
/// it is held and retried, and the app server's answer may still come. Recorded in the
/// registration's ledger, never counted as the app server's error.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct PublishUndelivered {
    pub id: String,
    pub condition: String,
    pub reason: String,
    pub given_up: bool,
}

/// Send a ping notification to every registration of `user` (§8.7 `cloud-notify-ping`).
/// Answered with the number of publishes sent.
#[derive(Message, Debug, Clone)]
#[rtype(result = "usize")]
pub struct PingUser {
    pub user: String,
}

/// The admin's view of a user's registrations (`cloud-notify push list`): the records as
/// the module holds them (their ledger fields can be newer than the store's), with the
/// sessions linked to each; read from the store when the user's state is not in memory.
/// Oldest enabled first.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Vec<RegistrationView>, AdminPushError>")]
pub struct ListRegistrations {
    pub user: String,
}

/// The admin removes the registration `selector` names (`cloud-notify push remove`); a
/// node that several app servers share must come with the JID. Like a `<disable/>`, every
/// session linked to it loses its link (D8). Logged in the removal log; answered once
/// durable, with what was removed.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Vec<RegistrationView>, AdminPushError>")]
pub struct RemoveRegistrations {
    pub user: String,
    pub selector: Selector,
}

/// A test push (`cloud-notify push test`): the ping publish of [`PingUser`] to every
/// registration `selector` names, answered with each app server's answer, or its
/// absence, once every publish has ended (at most `push_response_timeout`). The answers
/// count in the registrations' health ledger like any other.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Vec<TestPushResult>, AdminPushError>")]
pub struct TestPush {
    pub user: String,
    pub selector: Selector,
}

/// How one test publish ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestPushResult {
    pub jid: String,
    pub node: Option<String>,
    pub client: String,
    pub outcome: TestOutcome,
    /// From the publish to the answer, in microseconds (`None` without an answer).
    pub round_trip_us: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestOutcome {
    Success,
    Error {
        error_type: String,
        condition: String,
        text: Option<String>,
    },
    /// No answer within `push_response_timeout`.
    Timeout,
    /// The publish could not be handed to the host (its queue was full).
    NotSent,
    /// The registration was removed (or the user deleted) before an answer came.
    Gone,
    /// Our server-to-server layer could not reach the app server's domain (D21).
    Undelivered {
        condition: String,
        reason: String,
    },
}

/// Why an admin request about a user's registrations failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminPushError {
    #[error("{0}")]
    Select(#[from] SelectError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("push state for too many users in memory (push_max_active_users); try again")]
    Busy,
}

/// The account was deleted: drop its registrations (D7). Answered once durable.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), StoreError>")]
pub struct DeleteUser {
    pub user: String,
}

/// Answered once the user's push actor has handled every event sent before it (at once
/// when the user has no push state in memory). For an orderly shutdown, and for tests
/// that must know an event was processed before they look for its effect.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Barrier {
    pub user: String,
}

/// What the push module holds in memory for one user (`None`: nothing loaded).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Option<UserStats>")]
pub struct GetUserStats {
    pub user: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserStats {
    pub registrations: usize,
    pub linked_sessions: usize,
    pub hibernations_held: usize,
    pub pending_publishes: usize,
    /// Sessions inside a D20 batch window: their next stanza would not publish unless it
    /// upgrades an unimportant notification.
    pub open_batch_windows: usize,
}

/// Unload every user, writing their ledger changes to the store. Answered when those
/// writes are queued at the store, so a store `Close` sent afterwards commits them.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Shutdown;

// ---------------------------------------------------------------- module → host

/// Route this publish IQ to `to` (a component or a remote server).
///
/// `xml` is the serialized IQ with no namespace declaration on its root: write it as is
/// into the stream to `to`, whose default namespace it takes. (It is text because a
/// publish is only ever forwarded, never inspected, and as a tree it cost most of the
/// publish path's CPU and memory.)
///
/// The module hands these over with `try_send`: give the receiving actor a mailbox sized
/// for bursts (`set_mailbox_capacity`); when it is full, the publish is dropped and logged
/// rather than queued without bound.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct RoutePublish {
    pub to: Jid,
    /// The IQ's id, for a host that reports the publish undelivered
    /// ([`PublishUndelivered`]).
    pub id: String,
    pub xml: String,
}

impl std::fmt::Debug for RoutePublish {
    // The IQ carries the publish-options secret and may carry a message body.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutePublish")
            .field("to", &self.to)
            .field("id", &self.id)
            .field("bytes", &self.xml.len())
            .finish()
    }
}

/// An instruction to one session.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct SessionControl {
    pub session: SessionId,
    pub action: SessionAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAction {
    /// The hibernation the module held is over: destroy the session as at a normal
    /// XEP-0198 timeout. Ignore it if the session has resumed meanwhile.
    Expire,
}
