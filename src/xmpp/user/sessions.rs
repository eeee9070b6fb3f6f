//! The user's sessions: bind, the presence in force, and the ends the router decides.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use actix::prelude::*;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;

use super::super::route::{Route, ToSocket};
use super::super::stanza;
use super::record::{EndKind, Entry, Link};
use super::state::{MAX_RESOURCES, User};
use crate::push::SessionId;

/// A session binds a resource (`None`: the server picks one).
#[derive(Message)]
#[rtype(result = "Result<BindAnswer, &'static str>")]
pub struct Bind {
    pub id: SessionId,
    pub resource: Option<String>,
}

/// A bound session, for its socket task: the full JID, the channel of what to write,
/// the counter of stanzas received (the socket task counts), the connection's number.
pub struct BindAnswer {
    pub jid: FullJid,
    pub rx: flume::Receiver<ToSocket>,
    pub received: Arc<AtomicU32>,
    pub conn: u64,
}

impl Handler<Bind> for User {
    type Result = Result<BindAnswer, &'static str>;

    fn handle(&mut self, msg: Bind, ctx: &mut Context<Self>) -> Self::Result {
        self.count_router_message(ctx);
        let resource = match msg.resource.filter(|r| !r.is_empty()) {
            Some(r) => r,
            None => {
                let mut b = [0u8; 6];
                let _ = getrandom::fill(&mut b);
                format!(
                    "cn-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                    b[0], b[1], b[2], b[3], b[4], b[5]
                )
            }
        };
        let jid = crate::jid::parse::<FullJid>(&format!("{}/{resource}", self.bare))
            .ok_or("bad-request")?;
        // A second bind of the same resource replaces the older session (RFC 6120 §7.7.2.2).
        if let Some(old) = self
            .sessions
            .iter()
            .find(|e| e.live() && e.resource() == jid.resource().as_str())
            .map(|e| e.id)
        {
            self.end_session(old, EndKind::Conflict, ctx);
        }
        if self.sessions.iter().filter(|e| e.live()).count() >= MAX_RESOURCES {
            // A client that logs in anew instead of resuming leaves hibernated sessions
            // behind; with push they are held for days. The oldest of them makes room
            // (its unacked messages go to offline storage as it ends) before a login is
            // refused.
            let Some(old) = self.oldest_hibernated() else {
                return Err("resource-constraint");
            };
            tracing::info!(user = %self.name, "session limit reached: the oldest hibernated session ends");
            self.end_session(old, EndKind::Conflict, ctx);
        }
        let (socket, rx) = self.new_socket(self.shared.live.get().smacks_max_queue_size);
        let bound = BindAnswer {
            jid: jid.clone(),
            rx,
            received: socket.received.clone(),
            conn: socket.conn,
        };
        self.shared.gauges.bound();
        // Exactly one more: a user has a session or two, and the doubling growth of a
        // vector of these records would hold room for four (about 500 bytes a user).
        self.sessions.reserve_exact(1);
        self.sessions.push(Entry {
            id: msg.id,
            jid,
            presence: None,
            sm: None,
            link: Link::Connected(socket),
            spill: Vec::new(),
            ack_timer: None,
            ack_overdue_sent: false,
            flags: Default::default(),
        });
        self.account();
        Ok(bound)
    }
}

impl User {
    fn oldest_hibernated(&self) -> Option<SessionId> {
        self.sessions
            .iter()
            .filter_map(|e| match &e.link {
                Link::Hibernated(h) => Some((h.since, e.id)),
                _ => None,
            })
            .min()
            .map(|(_, id)| id)
    }
}

/// A session sent (or withdrew) its presence. Answered with whether it is the session's
/// initial presence (available now, and not before).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct SetAvailable {
    pub id: SessionId,
    /// The presence now in force; `None` when the session became unavailable.
    pub presence: Option<Element>,
}

impl Handler<SetAvailable> for User {
    type Result = bool;

    fn handle(&mut self, msg: SetAvailable, _: &mut Context<Self>) -> bool {
        let Some(e) = self.entry_mut(msg.id) else {
            return false;
        };
        let initial = e.presence.is_none() && msg.presence.is_some();
        e.presence = msg.presence.map(|p| String::from(&p).into_boxed_str());
        if initial {
            // RFC 6121 §4.2.2: a newly available resource learns the presence of the
            // user's other available resources (they learn its own from the broadcast).
            let to = e.jid.to_string();
            for mut p in self
                .sessions
                .iter()
                .filter(|o| o.id != msg.id && o.available())
                .filter_map(|o| o.presence.as_deref()?.parse::<Element>().ok())
            {
                stanza::set_attr(&mut p, "to", &to);
                self.shared.route.do_send(Route(p));
            }
        }
        initial
    }
}

/// Why every session of the user ends at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The server stops: connected sessions end with `system-shutdown`, unacked
    /// messages go to offline storage (D23).
    Shutdown,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct EndSessions(pub EndReason);

impl Handler<EndSessions> for User {
    type Result = ();

    fn handle(&mut self, EndSessions(reason): EndSessions, ctx: &mut Context<Self>) {
        self.count_router_message(ctx);
        let kind = match reason {
            EndReason::Shutdown => {
                self.stopping = true;
                EndKind::Shutdown
            }
        };
        let ids = self.session_ids(Entry::live);
        for id in ids {
            self.end_session(id, kind, ctx);
        }
        self.report_if_idle(ctx);
    }
}
