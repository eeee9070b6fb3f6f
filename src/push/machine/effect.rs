//! What the machine asks its host to do.

use std::time::{Duration, Instant};

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::event::{RequestId, Timer};
use crate::metrics::PublishOutcome;
use crate::push::interface::{
    AdminPushError, RegistrationView, SessionId, TestOutcome, TimerOwner,
};
use crate::store::Change;

/// One output of [`PushMachine::handle`](super::PushMachine::handle), to execute in order.
pub enum Effect {
    /// Send this publish IQ to `to`; `xml` is the IQ as text (it holds the
    /// publish-options secret: never log it). If it cannot be sent, feed
    /// [`Event::NotRouted`](super::Event::NotRouted) back.
    Publish { to: Jid, xml: String, id: String },
    /// Answer the host's request.
    Reply { request: RequestId, reply: Reply },
    /// Fire [`Event::TimerFired`](super::Event::TimerFired) with `timer` at `at`,
    /// replacing any timer armed under the same name.
    Arm { timer: Timer, at: Instant },
    /// Forget this timer; it must not fire.
    Cancel(Timer),
    /// Write these changes. With `request`, the machine waits for the answer as
    /// [`Event::Written`](super::Event::Written) before it replies; without, a failure is
    /// only worth logging.
    Write {
        changes: Vec<Change>,
        durable: bool,
        request: Option<RequestId>,
    },
    /// The held hibernation of this session is over: destroy it as at a normal XEP-0198
    /// timeout, then report it closed.
    Expire(SessionId),
    /// A publish watched by a test push ended.
    Ended {
        id: String,
        outcome: TestOutcome,
        round_trip: Option<Duration>,
    },
    /// Count this in the server's metrics.
    Metric(Metric),
}

/// The answer to a request event.
#[derive(Debug)]
pub enum Reply {
    /// To an `<enable/>` or `<disable/>`: the IQ to send back.
    Iq(Element),
    /// To a hibernation.
    TimerOwner(TimerOwner),
    /// To an admin removal: what was removed.
    Removed(Result<Vec<RegistrationView>, AdminPushError>),
    /// To a test push: the registrations pinged, each with its publish id (`None`: not
    /// sent). Their ends follow as [`Effect::Ended`].
    TestPush(Result<Vec<TestTarget>, AdminPushError>),
}

/// One registration a test push went to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestTarget {
    pub jid: String,
    pub node: Option<String>,
    pub client: String,
    pub publish: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// Publishes awaiting an answer went up or down by this much.
    Pending(i64),
    /// A publish to `app_server` (a domain) ended.
    PublishEnded {
        app_server: String,
        outcome: PublishOutcome,
        latency: Option<Duration>,
    },
}

impl std::fmt::Debug for Effect {
    // A publish carries the publish-options secret and may carry a message body.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Effect::Publish { to, xml, id } => f
                .debug_struct("Publish")
                .field("to", to)
                .field("bytes", &xml.len())
                .field("id", id)
                .finish(),
            Effect::Reply { request, reply } => f
                .debug_struct("Reply")
                .field("request", request)
                .field("reply", reply)
                .finish(),
            Effect::Arm { timer, at } => f
                .debug_struct("Arm")
                .field("timer", timer)
                .field("at", at)
                .finish(),
            Effect::Cancel(timer) => f.debug_tuple("Cancel").field(timer).finish(),
            Effect::Write {
                changes,
                durable,
                request,
            } => f
                .debug_struct("Write")
                .field("changes", &changes.len())
                .field("durable", durable)
                .field("request", request)
                .finish(),
            Effect::Expire(s) => f.debug_tuple("Expire").field(s).finish(),
            Effect::Ended {
                id,
                outcome,
                round_trip,
            } => f
                .debug_struct("Ended")
                .field("id", id)
                .field("outcome", outcome)
                .field("round_trip", round_trip)
                .finish(),
            Effect::Metric(m) => f.debug_tuple("Metric").field(m).finish(),
        }
    }
}
