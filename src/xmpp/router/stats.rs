//! How many sessions the router holds and how full their queues are, for `status` and
//! the metrics endpoint. Counted when asked: a walk over the sessions, no upkeep.

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
}

impl Handler<GetRouterStats> for Router {
    type Result = MessageResult<GetRouterStats>;

    fn handle(&mut self, _: GetRouterStats, _: &mut Context<Self>) -> Self::Result {
        let mut s = RouterStats::default();
        for e in self.users.values().flatten() {
            if e.hibernated_since.is_some() {
                s.hibernated += 1;
            } else {
                s.connected += 1;
            }
            s.session_queued += e.tx.len() as u64;
        }
        for tx in self.components.values().filter(|tx| !tx.is_disconnected()) {
            s.components += 1;
            s.component_queued += tx.len() as u64;
        }
        MessageResult(s)
    }
}
