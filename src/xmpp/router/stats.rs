//! How many sessions there are and how full their queues are, for `status` and the
//! metrics endpoint: read from counters the user actors keep, with no walk over users
//! (the router answers, in router.rs).

use actix::prelude::*;

/// Asks the router for its [`RouterStats`].
#[derive(Message)]
#[rtype(result = "RouterStats")]
pub struct GetRouterStats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouterStats {
    /// Bound sessions with a connection.
    pub connected: u64,
    /// Sessions without a connection, resumable (XEP-0198).
    pub hibernated: u64,
    /// Stanzas waiting in sessions' inbound channels.
    pub session_queued: u64,
    /// Components connected.
    pub components: u64,
    /// Stanzas and publishes waiting for components to read them.
    pub component_queued: u64,
    /// Users with live state (a running user actor).
    pub users: u64,
    /// Estimated bytes: the user actors with the router's entries for them; their
    /// sessions' records; what waits in their queues (`user::Footprint`).
    pub memory_users: u64,
    pub memory_sessions: u64,
    pub memory_queues: u64,
}
