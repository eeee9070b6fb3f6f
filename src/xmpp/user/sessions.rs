//! The user's sessions: bind and unbind, hibernation, presence in force, resumption ids,
//! and the ends the router or the push module decide.

use actix::prelude::*;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;

use super::super::route::ToSession;
use super::{Entry, MAX_RESOURCES, User};
use crate::push::{SessionAction, SessionControl, SessionId};

/// A session binds a resource (`None`: the server picks one). Answered with its full
/// JID, or the bind error's condition.
#[derive(Message)]
#[rtype(result = "Result<FullJid, &'static str>")]
pub struct Bind {
    pub id: SessionId,
    pub resource: Option<String>,
    pub tx: flume::Sender<ToSession>,
}

impl Handler<Bind> for User {
    type Result = Result<FullJid, &'static str>;

    fn handle(&mut self, msg: Bind, _: &mut Context<Self>) -> Self::Result {
        self.from_router();
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
        let jid = FullJid::new(&format!("{}/{resource}", self.bare)).map_err(|_| "bad-request")?;
        // A second bind of the same resource replaces the older session (RFC 6120 §7.7.2.2).
        if let Some(i) = self
            .sessions
            .iter()
            .position(|e| *e.resource == *jid.resource().as_str())
        {
            let old = self.sessions.remove(i);
            self.shared.gauges.unbound(old.hibernated_since.is_some());
            let _ = old.tx.try_send(ToSession::Conflict);
        }
        if self.sessions.len() >= MAX_RESOURCES {
            // A client that logs in anew instead of resuming leaves hibernated sessions
            // behind; with push they are held for days. The oldest of them makes room
            // (its unacked messages go to offline storage as it ends) before a login is
            // refused.
            let Some(i) = oldest_hibernated(&self.sessions) else {
                return Err("resource-constraint");
            };
            let old = self.sessions.remove(i);
            self.shared.gauges.unbound(true);
            tracing::info!(user = %self.name, "session limit reached: the oldest hibernated session ends");
            let _ = old.tx.try_send(ToSession::Conflict);
        }
        self.shared.gauges.bound();
        self.sessions.push(Entry {
            id: msg.id,
            hibernated_since: None,
            resource: jid.resource().as_str().into(),
            tx: msg.tx,
            presence: None,
            resume_id: None,
        });
        Ok(jid)
    }
}

fn oldest_hibernated(entries: &[Entry]) -> Option<usize> {
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.hibernated_since.map(|t| (t, i)))
        .min()
        .map(|(_, i)| i)
}

/// A session lost its connection (`true`) or was resumed (`false`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetHibernated {
    pub id: SessionId,
    pub hibernated: bool,
}

impl Handler<SetHibernated> for User {
    type Result = ();

    fn handle(&mut self, msg: SetHibernated, _: &mut Context<Self>) {
        let gauges = self.shared.gauges.clone();
        if let Some(e) = self.entry_mut(msg.id)
            && e.hibernated_since.is_some() != msg.hibernated
        {
            gauges.hibernated(msg.hibernated);
            e.hibernated_since = msg.hibernated.then(std::time::Instant::now);
        }
    }
}

/// A session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unbind {
    pub id: SessionId,
}

impl Handler<Unbind> for User {
    type Result = ();

    fn handle(&mut self, msg: Unbind, _: &mut Context<Self>) {
        if let Some(i) = self.sessions.iter().position(|e| e.id == msg.id) {
            let e = self.sessions.remove(i);
            self.shared.gauges.unbound(e.hibernated_since.is_some());
        }
        self.report_if_idle();
    }
}

/// A session sent (or withdrew) its initial presence.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetAvailable {
    pub id: SessionId,
    /// The presence now in force; `None` when the session became unavailable.
    pub presence: Option<Element>,
}

impl Handler<SetAvailable> for User {
    type Result = ();

    fn handle(&mut self, msg: SetAvailable, _: &mut Context<Self>) {
        if let Some(e) = self.entry_mut(msg.id) {
            e.presence = msg.presence.map(|p| String::from(&p).into_boxed_str());
        }
    }
}

/// A session enabled resumption under this id.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SmRegister {
    pub id: String,
    pub session: SessionId,
}

impl Handler<SmRegister> for User {
    type Result = ();

    fn handle(&mut self, msg: SmRegister, _: &mut Context<Self>) {
        if let Some(e) = self.entry_mut(msg.session) {
            e.resume_id = Some(msg.id.into_boxed_str());
        }
    }
}

/// A resumable session ended; `h` is remembered (by the router, which outlives this
/// actor) for a late `<resume/>`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SmForget {
    pub id: String,
    pub session: SessionId,
    pub h: u32,
}

/// The router's record of an ended resumable session, for `<failed h=…/>`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndedSession {
    pub user: String,
    pub id: String,
    pub h: u32,
}

impl Handler<SmForget> for User {
    type Result = ();

    fn handle(&mut self, msg: SmForget, _: &mut Context<Self>) {
        if let Some(e) = self.entry_mut(msg.session) {
            e.resume_id = None;
        }
        self.shared.ended.do_send(EndedSession {
            user: self.name.clone(),
            id: msg.id,
            h: msg.h,
        });
    }
}

/// Where to send a `<resume/>` for `previd`: the session's channel, if it is this
/// user's and still there.
#[derive(Message)]
#[rtype(result = "Option<flume::Sender<ToSession>>")]
pub struct FindResumable {
    pub previd: String,
}

impl Handler<FindResumable> for User {
    type Result = Option<flume::Sender<ToSession>>;

    fn handle(&mut self, msg: FindResumable, _: &mut Context<Self>) -> Self::Result {
        self.from_router();
        let found = self
            .sessions
            .iter()
            .find(|e| e.resume_id.as_deref() == Some(msg.previd.as_str()))
            .map(|e| e.tx.clone());
        self.report_if_idle();
        found
    }
}

/// Why every session of the user ends at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The server stops: connected sessions end with `system-shutdown`, unacked
    /// messages go to offline storage (D23).
    Shutdown,
    /// The account was deleted: connected sessions end with `not-authorized`; what
    /// they held bounces, as the account is gone.
    Revoked,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct EndSessions(pub EndReason);

impl Handler<EndSessions> for User {
    type Result = ();

    fn handle(&mut self, EndSessions(reason): EndSessions, _: &mut Context<Self>) {
        self.from_router();
        for e in &self.sessions {
            let order = || match reason {
                EndReason::Shutdown => ToSession::Shutdown,
                EndReason::Revoked => ToSession::Revoked,
            };
            // A full channel still ends: the session reads its channel to the end.
            if e.tx.try_send(order()).is_err() {
                let tx = e.tx.clone();
                let order = order();
                actix::spawn(async move {
                    let _ = tx.send_async(order).await;
                });
            }
        }
        if reason == EndReason::Revoked {
            // The sessions are gone for the router at once: a new login of a re-created
            // account must not find them.
            for e in self.sessions.drain(..) {
                self.shared.gauges.unbound(e.hibernated_since.is_some());
            }
        }
        self.report_if_idle();
    }
}

/// The push module's instructions about a session's hibernation (D14), straight to the
/// session's own user.
impl Handler<SessionControl> for User {
    type Result = ();

    fn handle(&mut self, msg: SessionControl, _: &mut Context<Self>) {
        let SessionAction::Expire = msg.action;
        if let Some(e) = self.sessions.iter().find(|e| e.id == msg.session) {
            let _ = e.tx.try_send(ToSession::Expire);
        }
    }
}
