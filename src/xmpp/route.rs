//! What travels between the router, the user actors and the socket tasks: a stanza to
//! route, and what a socket task is told to write.

use actix::Message;
use xmpp_parsers::minidom::Element;

/// A stanza from a session, component or user actor, `from` already stamped: the
/// router takes it where its `to` says.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Route(pub Element);

/// What a socket task receives from its user actor. Every variant is at most a pointer,
/// so a queue of them costs its stanzas' own size and no more (an inline `Element` is
/// about 100 bytes, whatever the stanza).
pub enum ToSocket {
    /// A stanza to write; the user actor counted it for XEP-0198 already.
    Stanza(Box<Element>),
    /// A stream-management element to write (`<enabled/>`, `<r/>`, `<failed/>`).
    Nonza(Box<Element>),
    /// End the stream with this stream error condition.
    Close(&'static str),
    /// Write this stream error and end the stream.
    Fail(Box<Element>),
}

/// Room in each socket's channel for a session without stream management; past it a
/// chat or normal message goes to offline storage, a bounce waits (bounded), anything
/// else is bounced with `resource-constraint` (D22). With stream management the channel
/// is as large as `smacks_max_queue_size` allows (what it holds is unacked, so that
/// bound is reached first).
pub const SESSION_CHANNEL: usize = 256;

/// What the router hands the server-to-server links for a domain that is neither ours
/// nor a connected component's.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToRemote {
    /// The remote domain, lowercase.
    pub domain: String,
    pub item: Remote,
}

pub enum Remote {
    /// A stanza in `jabber:client`, `from` stamped; bounced to its sender if the domain
    /// cannot be reached.
    Stanza(Box<Element>),
    /// A publish from the push module.
    Publish(RemotePublish),
}

/// A publish to an app server on another domain.
pub struct RemotePublish {
    /// The IQ's id: a publish the links give up on is reported to the push module by it
    /// (D21).
    pub id: String,
    /// The IQ, serialized without a namespace on its root.
    pub xml: String,
}

/// Gives the router the server-to-server links (sent once, at start).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UseS2s(pub actix::Recipient<ToRemote>);
