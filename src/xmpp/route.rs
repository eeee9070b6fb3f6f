//! What travels between the router, the user actors and the sessions: a stanza to route,
//! and what a session's task receives.

use actix::Message;
use xmpp_parsers::minidom::Element;

use super::io::SizeGuard;
use super::xml::XmlStream;

/// A stanza from a session, component or user actor, `from` already stamped: the
/// router takes it where its `to` says.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Route(pub Element);

/// What a session's task receives. Every variant is at most a pointer, so a session's
/// queued stanzas cost their own size and no more (an inline `Element` is about 100
/// bytes, whatever the stanza).
pub enum ToSession {
    /// A stanza to write to the peer.
    Stanza(Box<Element>),
    /// A new bind of the same resource replaced this session: end with `conflict`.
    Conflict,
    /// The push module's end of a held hibernation.
    Expire,
    /// A new connection resumes this session (XEP-0198).
    Resume(Box<Takeover>),
    /// The server stops: end with `system-shutdown`, unacked messages to offline storage.
    Shutdown,
    /// The account was deleted: end with `not-authorized`, no resumption.
    Revoked,
}

/// Room in each session's inbound channel; past it a chat or normal message goes to
/// offline storage, a bounce waits (bounded), anything else is bounced with
/// `resource-constraint` (D22).
pub const SESSION_CHANNEL: usize = 256;

/// A new connection taking over a session (`<resume/>`).
pub struct Takeover {
    /// Boxed so the session task reserves no stream-sized slot for a resumption.
    pub xml: Box<XmlStream>,
    pub guard: SizeGuard,
    pub h: u32,
}

impl std::fmt::Debug for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Takeover(h={})", self.h)
    }
}
