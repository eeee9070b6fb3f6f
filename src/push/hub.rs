//! `PushHub`: the module's front door. It validates push IQs, routes every host event to
//! the user's [`UserPush`] (starting it on demand, within `push_max_active_users`), and
//! unloads idle ones.

use std::collections::HashMap;
use std::sync::Arc;

use actix::dev::SendError;
use actix::prelude::*;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::executor::PushLinks;
use super::interface::*;
use super::messages::{Command, RoutedResponse, Stop, UserGone, UserIdle};
use super::protocol;
use super::publish;
use super::rules::{self, Path};
use super::user::{HubLink, UserPush};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Change, StoreClient, StoreError, Write};

mod admin;

struct Entry {
    addr: Addr<UserPush>,
    route: u64,
    /// Messages given to the actor; equal to its `handled` count when nothing is in flight.
    sent: u64,
}

pub struct PushHub {
    cfg: Arc<Config>,
    store: StoreClient,
    router: Recipient<RoutePublish>,
    users: HashMap<String, Entry>,
    routes: HashMap<u64, String>,
    metrics: Arc<Metrics>,
    /// Made on the first user's start (after `with_metrics`).
    links: Option<Arc<PushLinks>>,
}

/// How many users have push state in memory.
#[derive(Message)]
#[rtype(result = "HubStats")]
pub struct GetHubStats;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubStats {
    pub active_users: usize,
}

impl PushHub {
    pub fn new(cfg: Arc<Config>, store: StoreClient, router: Recipient<RoutePublish>) -> Self {
        PushHub {
            cfg,
            store,
            router,
            users: HashMap::new(),
            routes: HashMap::new(),
            metrics: Arc::default(),
            links: None,
        }
    }

    /// Counts publishes into `metrics` (the server's) instead of a private set.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    fn entry(&mut self, user: &str, spawn: bool, ctx: &mut Context<Self>) -> Option<&mut Entry> {
        if !self.users.contains_key(user) {
            if !spawn {
                return None;
            }
            self.spawn(user, ctx)?;
        }
        self.users.get_mut(user)
    }

    fn spawn(&mut self, user: &str, ctx: &mut Context<Self>) -> Option<()> {
        if self.users.len() >= self.cfg.push_max_active_users {
            tracing::warn!(
                limit = self.cfg.push_max_active_users,
                "push_max_active_users reached: event for a new user refused"
            );
            return None;
        }
        let Some(user_jid) = protocol::user_jid(user, &self.cfg.domain) else {
            tracing::warn!("push event for an invalid user name ignored");
            return None;
        };
        let mut route = publish::new_route();
        while self.routes.contains_key(&route) {
            route = publish::new_route();
        }
        let links = self
            .links
            .get_or_insert_with(|| {
                Arc::new(PushLinks {
                    store: self.store.clone(),
                    router: self.router.clone(),
                    metrics: self.metrics.clone(),
                })
            })
            .clone();
        let addr = UserPush::new(
            user.to_string(),
            user_jid,
            self.cfg.clone(),
            links,
            HubLink {
                idle: ctx.address().recipient(),
                gone: ctx.address().recipient(),
                route,
            },
        )
        .start();
        self.routes.insert(route, user.to_string());
        self.users.insert(
            user.to_string(),
            Entry {
                addr,
                route,
                sent: 0,
            },
        );
        Some(())
    }

    fn remove(&mut self, user: &str) -> Option<Entry> {
        let e = self.users.remove(user)?;
        self.routes.remove(&e.route);
        Some(e)
    }

    /// Hands a session's lifecycle event (resumed, closed) to the user's actor. These are
    /// never dropped: losing one would leave a stale link behind. There is at most one of
    /// each per session, so they cannot flood the mailbox.
    fn forward_lifecycle<M>(&mut self, user: &str, msg: M, ctx: &mut Context<Self>)
    where
        M: Message<Result = ()> + Send + 'static,
        UserPush: Handler<M>,
    {
        if let Some(e) = self.entry(user, false, ctx) {
            e.sent += 1;
            e.addr.do_send(msg);
        }
    }

    /// Hands a data event to the user's actor without waiting. A full mailbox drops the
    /// event with a warning (the bound on memory); a stopped actor is replaced once.
    fn forward<M>(&mut self, user: &str, msg: M, spawn: bool, ctx: &mut Context<Self>)
    where
        M: Message<Result = ()> + Send + 'static,
        UserPush: Handler<M>,
    {
        let Some(e) = self.entry(user, spawn, ctx) else {
            return;
        };
        match e.addr.try_send(msg) {
            Ok(()) => e.sent += 1,
            Err(SendError::Full(_)) => {
                tracing::warn!(%user, "push events for this user arrive faster than handled: event dropped")
            }
            Err(SendError::Closed(msg)) => {
                self.remove(user);
                if spawn
                    && let Some(e) = self.entry(user, true, ctx)
                    && e.addr.try_send(msg).is_ok()
                {
                    e.sent += 1;
                }
            }
        }
    }

    /// Sends a request to the user's actor; `None` when no actor could take it.
    fn request<M>(
        &mut self,
        user: &str,
        msg: M,
        spawn: bool,
        ctx: &mut Context<Self>,
    ) -> Option<actix::dev::Request<UserPush, M>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        UserPush: Handler<M>,
    {
        let e = self.entry(user, spawn, ctx)?;
        e.sent += 1;
        Some(e.addr.send(msg))
    }
}

impl Actor for PushHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<PushRequest> for PushHub {
    type Result = ResponseFuture<Option<Element>>;

    fn handle(&mut self, msg: PushRequest, ctx: &mut Context<Self>) -> Self::Result {
        let session = msg.session;
        let parsed = protocol::parse_push_iq(
            &msg.iq,
            &session.jid,
            self.cfg.push_max_publish_options_size,
        );
        let req = match parsed {
            Ok(req) => req,
            Err(reply) => return Box::pin(async move { reply }),
        };
        let jid = session.jid.clone();
        let id = req.id.clone();
        let user = jid.node().map(|n| n.to_string()).unwrap_or_default();
        let cmd = Command {
            session,
            id: req.id,
            command: req.command,
        };
        let Some(pending) = self.request(&user, cmd, true, ctx) else {
            return Box::pin(async move {
                Some(protocol::error_reply(
                    &id,
                    &jid,
                    ErrorType::Wait,
                    DefinedCondition::ResourceConstraint,
                    None,
                ))
            });
        };
        Box::pin(async move {
            Some(pending.await.unwrap_or_else(|_| {
                protocol::error_reply(
                    &id,
                    &jid,
                    ErrorType::Wait,
                    DefinedCondition::InternalServerError,
                    None,
                )
            }))
        })
    }
}

impl Handler<SessionHibernated> for PushHub {
    type Result = ResponseFuture<TimerOwner>;

    fn handle(&mut self, msg: SessionHibernated, ctx: &mut Context<Self>) -> Self::Result {
        // No actor means no session of this user is linked: the host keeps its timer.
        let user = msg.user.clone();
        match self.request(&user, msg, false, ctx) {
            None => Box::pin(async { TimerOwner::Host }),
            Some(pending) => Box::pin(async move { pending.await.unwrap_or(TimerOwner::Host) }),
        }
    }
}

impl Handler<StanzaQueued> for PushHub {
    type Result = ();
    fn handle(&mut self, msg: StanzaQueued, ctx: &mut Context<Self>) {
        let user = msg.user.clone();
        self.forward(&user, msg, false, ctx);
    }
}

impl Handler<AckOverdue> for PushHub {
    type Result = ();
    fn handle(&mut self, msg: AckOverdue, ctx: &mut Context<Self>) {
        let user = msg.user.clone();
        self.forward(&user, msg, false, ctx);
    }
}

impl Handler<SessionResumed> for PushHub {
    type Result = ();
    fn handle(&mut self, msg: SessionResumed, ctx: &mut Context<Self>) {
        let user = msg.user.clone();
        self.forward_lifecycle(&user, msg, ctx);
    }
}

impl Handler<SessionClosed> for PushHub {
    type Result = ();
    fn handle(&mut self, msg: SessionClosed, ctx: &mut Context<Self>) {
        let user = msg.user.clone();
        self.forward_lifecycle(&user, msg, ctx);
    }
}

impl Handler<OfflineMessage> for PushHub {
    type Result = ();
    fn handle(&mut self, msg: OfflineMessage, ctx: &mut Context<Self>) {
        // Decided here too, so a stanza that cannot publish never loads a user.
        if rules::wakes(&msg.stanza, Path::Offline, self.cfg.push_notify_on) {
            let user = msg.user.clone();
            self.forward(&user, msg, true, ctx);
        }
    }
}

impl Handler<MessageArchived> for PushHub {
    type Result = ();
    fn handle(&mut self, msg: MessageArchived, ctx: &mut Context<Self>) {
        if msg.user_has_sessions
            && rules::wakes(&msg.stanza, Path::Archive, self.cfg.push_notify_on)
        {
            let user = msg.user.clone();
            self.forward(&user, msg, true, ctx);
        }
    }
}

impl Handler<AppServerResponse> for PushHub {
    type Result = ();
    fn handle(&mut self, msg: AppServerResponse, ctx: &mut Context<Self>) {
        let Some(resp) = publish::read_response(&msg.iq) else {
            return;
        };
        let Some(user) = publish::route_of(&resp.id)
            .and_then(|r| self.routes.get(&r))
            .cloned()
        else {
            tracing::debug!(id = %resp.id, "answer to an unknown publish ignored");
            return;
        };
        self.forward(&user, RoutedResponse(resp), false, ctx);
    }
}

/// A publish the host's server-to-server layer could not deliver (D21), for the user
/// whose route its id carries.
impl Handler<PublishUndelivered> for PushHub {
    type Result = ();
    fn handle(&mut self, msg: PublishUndelivered, ctx: &mut Context<Self>) {
        let Some(user) = publish::route_of(&msg.id)
            .and_then(|r| self.routes.get(&r))
            .cloned()
        else {
            tracing::debug!(id = %msg.id, "undelivered publish unknown");
            return;
        };
        self.forward(&user, msg, false, ctx);
    }
}

impl Handler<PingUser> for PushHub {
    type Result = ResponseFuture<usize>;
    fn handle(&mut self, msg: PingUser, ctx: &mut Context<Self>) -> Self::Result {
        let user = msg.user.clone();
        match self.request(&user, msg, true, ctx) {
            None => Box::pin(async { 0 }),
            Some(pending) => Box::pin(async move { pending.await.unwrap_or(0) }),
        }
    }
}

impl Handler<DeleteUser> for PushHub {
    type Result = ResponseFuture<Result<(), StoreError>>;
    fn handle(&mut self, msg: DeleteUser, _: &mut Context<Self>) -> Self::Result {
        if let Some(e) = self.remove(&msg.user) {
            e.addr.do_send(Stop { flush: false });
        }
        let write = self.store.write.send(Write {
            changes: vec![Change::DeleteUser { user: msg.user }],
            durable: true,
        });
        Box::pin(async move {
            write
                .await
                .map_err(|e| StoreError::Failed(e.to_string()))
                .and_then(|r| r)
        })
    }
}

impl Handler<Barrier> for PushHub {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, msg: Barrier, ctx: &mut Context<Self>) -> Self::Result {
        let user = msg.user.clone();
        match self.request(&user, msg, false, ctx) {
            None => Box::pin(async {}),
            Some(pending) => Box::pin(async move {
                let _ = pending.await;
            }),
        }
    }
}

impl Handler<GetUserStats> for PushHub {
    type Result = ResponseFuture<Option<UserStats>>;
    fn handle(&mut self, msg: GetUserStats, ctx: &mut Context<Self>) -> Self::Result {
        let user = msg.user.clone();
        match self.request(&user, msg, false, ctx) {
            None => Box::pin(async { None }),
            Some(pending) => Box::pin(async move { pending.await.ok().flatten() }),
        }
    }
}

impl Handler<Shutdown> for PushHub {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.routes.clear();
        let stops: Vec<_> = self
            .users
            .drain()
            .map(|(_, e)| e.addr.send(Stop { flush: true }))
            .collect();
        Box::pin(async move {
            for stop in stops {
                let _ = stop.await;
            }
        })
    }
}

impl Handler<UserIdle> for PushHub {
    type Result = ();
    fn handle(&mut self, msg: UserIdle, _: &mut Context<Self>) {
        let quiet = self
            .users
            .get(&msg.user)
            .is_some_and(|e| e.route == msg.route && e.sent == msg.handled);
        if quiet && let Some(e) = self.remove(&msg.user) {
            e.addr.do_send(Stop { flush: true });
        }
    }
}

impl Handler<UserGone> for PushHub {
    type Result = ();
    fn handle(&mut self, msg: UserGone, _: &mut Context<Self>) {
        if self
            .users
            .get(&msg.user)
            .is_some_and(|e| e.route == msg.route)
        {
            self.remove(&msg.user);
        }
    }
}

impl Handler<GetHubStats> for PushHub {
    type Result = MessageResult<GetHubStats>;
    fn handle(&mut self, _: GetHubStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(HubStats {
            active_users: self.users.len(),
        })
    }
}
