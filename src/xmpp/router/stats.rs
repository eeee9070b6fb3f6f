//! How many sessions there are and how full their queues are, for `status` and the
//! metrics endpoint: read from counters the user actors keep, with no walk over users.

use actix::prelude::*;

use super::Router;

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
}

impl Handler<GetRouterStats> for Router {
    type Result = MessageResult<GetRouterStats>;

    fn handle(&mut self, _: GetRouterStats, _: &mut Context<Self>) -> Self::Result {
        let (connected, hibernated, session_queued) = self.gauges.read();
        let mut s = RouterStats {
            connected,
            hibernated,
            session_queued,
            users: self.users.len() as u64,
            ..RouterStats::default()
        };
        for tx in self.components.values().filter(|tx| !tx.is_disconnected()) {
            s.components += 1;
            s.component_queued += tx.len() as u64;
        }
        MessageResult(s)
    }
}
