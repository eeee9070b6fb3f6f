//! The router: which session or component a stanza goes to, and what happens when
//! nobody is there (RFC 6121 §8.5 for local users; a bounce for the rest).
//!
//! It also stands for the host at the push module's boundary: it receives the module's
//! publishes (`RoutePublish`, to a connected component) and session instructions
//! (`SessionControl`, to the session's task).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::prelude::*;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;

use super::roster;
use super::stanza;

mod stats;
use crate::config::Config;
use crate::push::{
    OfflineMessage, PushHub, RoutePublish, SessionAction, SessionControl, SessionId,
};
use crate::store::{Change, LoadRoster, PushOffline, RosterItem, Store, StoreError, Write};
pub use stats::{GetRouterStats, RouterStats};

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
    Resume(Box<super::session::Takeover>),
    /// The server stops: end with `system-shutdown`, unacked messages to offline storage.
    Shutdown,
    /// The account was deleted: end with `not-authorized`, no resumption.
    Revoked,
}

/// Room in each session's inbound channel; past it a chat or normal message goes to
/// offline storage, a bounce waits (bounded), anything else is bounced with
/// `resource-constraint` (D22).
pub const SESSION_CHANNEL: usize = 256;

/// Bounces waiting for room in their recipient's channel, server-wide; past it they are
/// dropped with a log line.
const WAITING_BOUNCES: usize = 4096;

/// Resources per user; past it a bind is refused with `resource-constraint`.
pub const MAX_RESOURCES: usize = 32;

struct OldSession {
    id: String,
    user: String,
    h: u32,
}

struct Entry {
    id: SessionId,
    /// Since when the session has no connection (XEP-0198 hibernation).
    hibernated_since: Option<std::time::Instant>,
    resource: String,
    tx: flume::Sender<ToSession>,
    /// The session's last available presence (answers probes); `None`: not available.
    /// Kept serialized: a minidom tree of even `<presence/>` is about 1 KB, and every
    /// session, hibernated ones included, holds one.
    presence: Option<Box<str>>,
}

impl Entry {
    fn available(&self) -> bool {
        self.presence.is_some()
    }
}

pub struct Router {
    /// Resumable sessions by XEP-0198 id.
    resumable: HashMap<String, (String, SessionId)>,
    /// Ended sessions' ids, users and final `h`, for `<failed h=…/>`
    /// (smacks_max_old_sessions). The user is kept so that only its owner learns an `h`.
    old_sessions: std::collections::VecDeque<OldSession>,
    cfg: Arc<Config>,
    hub: Addr<PushHub>,
    /// Who waits for the last session to end (orderly shutdown).
    drained: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Bounces waiting for room in a session's channel (bounded by WAITING_BOUNCES).
    waiting_bounces: Arc<AtomicUsize>,
    store: Addr<Store>,
    users: HashMap<String, Vec<Entry>>,
    components: HashMap<String, flume::Sender<ToComponent>>,
    next_id: u64,
}

impl Router {
    pub fn new(cfg: Arc<Config>, hub: Addr<PushHub>, store: Addr<Store>) -> Self {
        Router {
            resumable: HashMap::new(),
            old_sessions: std::collections::VecDeque::new(),
            cfg,
            hub,
            store,
            users: HashMap::new(),
            components: HashMap::new(),
            next_id: 1,
            drained: Vec::new(),
            waiting_bounces: Arc::default(),
        }
    }

    fn send_to(tx: &flume::Sender<ToSession>, stanza: Element) -> Result<(), Element> {
        match tx.try_send(ToSession::Stanza(Box::new(stanza))) {
            Ok(()) => Ok(()),
            Err(flume::TrySendError::Full(ToSession::Stanza(s)))
            | Err(flume::TrySendError::Disconnected(ToSession::Stanza(s))) => Err(*s),
            Err(_) => Ok(()),
        }
    }

    /// A stanza for a session that cannot take it (its channel is full, or it just
    /// ended): a chat or normal message goes to offline storage, which bounces only
    /// when it is full (D22); anything else is bounced.
    fn undeliverable(
        &self,
        user: &str,
        tx: &flume::Sender<ToSession>,
        stanza: Element,
        ctx: &mut Context<Self>,
    ) {
        let kind = stanza.attr("type").unwrap_or("normal");
        if stanza.name() == "message" && matches!(kind, "chat" | "normal") {
            tracing::debug!(%user, "session cannot take a message: stored offline");
            self.store_offline(user.to_string(), stanza, ctx);
        } else if kind == "error" && !tx.is_disconnected() {
            // A bounce cannot be bounced: it waits for room in the session's channel
            // (a burst of bounces comes from one commit), within a bound of its own.
            self.wait_for_room(user, tx, stanza);
        } else {
            self.bounce(&stanza, "resource-constraint", ctx);
        }
    }

    fn wait_for_room(&self, user: &str, tx: &flume::Sender<ToSession>, stanza: Element) {
        let waiting = self.waiting_bounces.clone();
        if waiting.load(Ordering::Relaxed) >= WAITING_BOUNCES {
            tracing::warn!(%user, "session too slow to take its bounces: one dropped");
            return;
        }
        waiting.fetch_add(1, Ordering::Relaxed);
        let tx = tx.clone();
        let user = user.to_string();
        actix::spawn(async move {
            if tx
                .send_async(ToSession::Stanza(Box::new(stanza)))
                .await
                .is_err()
            {
                tracing::info!(%user, "session ended before it could take a bounce");
            }
            waiting.fetch_sub(1, Ordering::Relaxed);
        });
    }

    fn bounce(&self, stanza: &Element, condition: &str, ctx: &mut Context<Self>) {
        let error_type =
            if condition == "resource-constraint" || condition == "internal-server-error" {
                "wait"
            } else {
                "cancel"
            };
        let Some(reply) = stanza::error_reply(stanza, error_type, condition) else {
            // An error is never answered with an error (RFC 6120 §8.3.1).
            tracing::debug!(condition, "undeliverable error stanza dropped");
            return;
        };
        // The bounce goes back to where the stanza came from, through the same rules.
        self.deliver(reply, ctx);
    }

    /// Stores a message for a user with no available session (XEP-0160), stamped with
    /// XEP-0203 delay; once durable the push module hears of it. A missing user or a full
    /// store bounces to the sender: nothing is dropped silently.
    fn store_offline(&self, user: String, stanza: Element, ctx: &mut Context<Self>) {
        let stamp = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let mut delay = Element::builder("delay", "urn:xmpp:delay").build();
        stanza::set_attr(&mut delay, "from", &self.cfg.domain);
        stanza::set_attr(&mut delay, "stamp", &stamp);
        let mut stamped = stanza.clone();
        stamped.append_child(delay);
        let fut = self.store.send(PushOffline {
            user: user.clone(),
            stanza: String::from(&stamped),
            max: self.cfg.offline_max_messages,
            max_bytes: self.cfg.offline_max_bytes,
            release: None,
        });
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            match res.unwrap_or(Err(StoreError::Closed)) {
                Ok(_) => act.hub.do_send(OfflineMessage {
                    user,
                    stanza,
                    key: None,
                }),
                Err(StoreError::NoSuchUser) => act.bounce(&stanza, "service-unavailable", ctx),
                Err(StoreError::Full) => {
                    tracing::info!(%user, "offline storage full: message bounced");
                    act.bounce(&stanza, "resource-constraint", ctx)
                }
                Err(e) => {
                    tracing::error!(%user, error = %e, "offline message not stored: bounced");
                    act.bounce(&stanza, "internal-server-error", ctx)
                }
            }
        }));
    }

    /// A stanza to the server itself from a component (clients' are answered by their
    /// session): ping is answered, other requests are `service-unavailable`, the rest is
    /// dropped.
    fn server_stanza(&self, stanza: Element, ctx: &mut Context<Self>) {
        if stanza.name() != "iq" || !matches!(stanza.attr("type"), Some("get") | Some("set")) {
            return;
        }
        let reply =
            if stanza.attr("type") == Some("get") && stanza.has_child("ping", "urn:xmpp:ping") {
                Some(stanza::iq_result(&stanza, None))
            } else {
                stanza::error_reply(&stanza, "cancel", "service-unavailable")
            };
        if let Some(r) = reply {
            self.deliver(r, ctx);
        }
    }

    /// Delivers a stanza whose `from` is already set.
    fn deliver(&self, stanza: Element, ctx: &mut Context<Self>) {
        let Some(to) = stanza.attr("to").and_then(|t| t.parse::<Jid>().ok()) else {
            return;
        };
        let domain = to.domain().as_str();
        if let Some(tx) = self.components.get(domain) {
            if let Err(
                flume::TrySendError::Full(ToComponent::Stanza(s))
                | flume::TrySendError::Disconnected(ToComponent::Stanza(s)),
            ) = tx.try_send(ToComponent::Stanza(Box::new(stanza)))
            {
                tracing::warn!(component = %domain, "component queue full: stanza bounced");
                self.bounce(&s, "resource-constraint", ctx);
            }
            return;
        }
        if domain != self.cfg.domain {
            // No server-to-server links yet: remote domains are unreachable.
            self.bounce(&stanza, "remote-server-not-found", ctx);
            return;
        }
        let Some(user) = to.node().map(|n| n.to_string()) else {
            self.server_stanza(stanza, ctx);
            return;
        };
        let sessions = self.users.get(&user);
        let name = stanza.name();
        // A full JID with a live session: that session.
        if let Some(res) = to.resource()
            && let Some(e) = sessions.and_then(|s| s.iter().find(|e| e.resource == res.as_str()))
        {
            if let Err(s) = Self::send_to(&e.tx, stanza) {
                self.undeliverable(&user, &e.tx, s, ctx);
            }
            return;
        }
        // An IQ to a full JID that is gone, or to someone else's bare JID: nobody answers.
        if name == "iq" {
            self.bounce(&stanza, "service-unavailable", ctx);
            return;
        }
        let available: Vec<&Entry> = sessions
            .map(|s| s.iter().filter(|e| e.available()).collect())
            .unwrap_or_default();
        let kind = stanza.attr("type").unwrap_or("normal");
        if name == "message" {
            if kind == "groupchat" && to.resource().is_some() {
                // Path B: a room writing to an occupant whose device left.
                self.hub.do_send(OfflineMessage {
                    user,
                    stanza: stanza.clone(),
                    key: None,
                });
                self.bounce(&stanza, "service-unavailable", ctx);
                return;
            }
            if available.is_empty() {
                match kind {
                    "chat" | "normal" => self.store_offline(user, stanza, ctx),
                    "groupchat" => {
                        self.hub.do_send(OfflineMessage {
                            user,
                            stanza: stanza.clone(),
                            key: None,
                        });
                        self.bounce(&stanza, "service-unavailable", ctx);
                    }
                    // RFC 6121 §8.5.2.2: headlines and errors to a user with no
                    // available session are not stored.
                    _ => tracing::debug!(%user, kind, "message for an absent user dropped"),
                }
                return;
            }
            // Delivered when any session took it; stored (once) when none could.
            let mut taken = false;
            for e in &available {
                taken |= Self::send_to(&e.tx, stanza.clone()).is_ok();
            }
            if !taken && let Some(e) = available.first() {
                self.undeliverable(&user, &e.tx, stanza, ctx);
            }
            return;
        }
        match kind {
            "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" => {
                self.inbound_subscription(user, stanza, ctx);
                return;
            }
            "probe" => {
                self.answer_probe(user, stanza, ctx);
                return;
            }
            _ => {}
        }
        // Presence to a bare JID: every available resource.
        for e in available {
            let _ = Self::send_to(&e.tx, stanza.clone());
        }
    }

    /// Subscription presence for a local user (RFC 6121 §3): the user's roster changes,
    /// is pushed to the user's sessions, and the presence reaches them when it should. A
    /// request that finds no session stays on the roster and is shown at the next login.
    fn inbound_subscription(&self, user: String, stanza: Element, ctx: &mut Context<Self>) {
        let Some(contact) = stanza
            .attr("from")
            .and_then(|f| f.parse::<Jid>().ok())
            .map(|f| f.to_bare().to_string())
        else {
            return;
        };
        let max = self.cfg.roster_max_items;
        let load = self.store.send(LoadRoster { user: user.clone() });
        ctx.spawn(load.into_actor(self).map(move |res, act, ctx| {
            let Ok(Ok(roster)) = res else {
                tracing::error!(%user, "cannot read the roster: subscription presence dropped");
                return;
            };
            let existing = roster
                .iter()
                .find(|(c, _)| *c == contact)
                .map(|(_, i)| i.clone());
            if existing.is_none() && roster.len() >= max {
                tracing::info!(%user, "roster_max_items reached: subscription request dropped");
                return;
            }
            let mut item = existing.unwrap_or_default();
            let kind = stanza.attr("type").unwrap_or_default().to_string();
            let (changed, deliver) = roster::inbound(&mut item, &kind, &stanza);
            if changed {
                ctx.notify(SaveRosterItem {
                    user: user.clone(),
                    contact: contact.clone(),
                    item: Some(item),
                });
            }
            if deliver {
                for e in act
                    .users
                    .get(&user)
                    .into_iter()
                    .flatten()
                    .filter(|e| e.available())
                {
                    let _ = Self::send_to(&e.tx, stanza.clone());
                }
            }
            // A local contact approved the user's request: its server (this one) sends
            // the contact's current presence right after the approval (RFC 6121
            // §3.1.5), so the user sees the contact online without waiting for the
            // contact's next presence change.
            if changed && kind == "subscribed" {
                let domain = act.cfg.domain.clone();
                if let Some(local) = contact
                    .strip_suffix(domain.as_str())
                    .and_then(|c| c.strip_suffix('@'))
                {
                    act.send_presences(local, &format!("{user}@{domain}"), ctx);
                }
            }
        }));
    }

    /// A contact asks for the user's presence: answered with each available session's
    /// presence, if the user lets the contact see it.
    fn answer_probe(&self, user: String, probe: Element, ctx: &mut Context<Self>) {
        let Some(from) = probe.attr("from").map(str::to_string) else {
            return;
        };
        let Some(contact) = from.parse::<Jid>().ok().map(|j| j.to_bare().to_string()) else {
            return;
        };
        let load = self.store.send(LoadRoster { user: user.clone() });
        ctx.spawn(load.into_actor(self).map(move |res, act, ctx| {
            let allowed = matches!(&res, Ok(Ok(r)) if r.iter().any(|(c, i)| *c == contact && i.subscription.from()));
            if allowed {
                act.send_presences(&user, &from, ctx);
            }
        }));
    }

    /// The current presence of each of the user's available sessions, to `to`.
    fn send_presences(&self, user: &str, to: &str, ctx: &mut Context<Self>) {
        let presences: Vec<Element> = self
            .users
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|e| e.presence.as_deref()?.parse::<Element>().ok())
            .map(|mut p| {
                stanza::set_attr(&mut p, "to", to);
                p
            })
            .collect();
        for p in presences {
            self.deliver(p, ctx);
        }
    }

    /// RFC 6121 §2.1.6: every session of the user learns of a roster change.
    fn roster_push(&self, user: &str, item: Element) {
        for e in self.users.get(user).into_iter().flatten() {
            let mut iq = Element::builder("iq", stanza::CLIENT_NS)
                .append(
                    Element::builder("query", roster::ROSTER_NS)
                        .append(item.clone())
                        .build(),
                )
                .build();
            stanza::set_attr(&mut iq, "type", "set");
            stanza::set_attr(&mut iq, "id", &format!("push-{}", super::c2s::random_id()));
            let _ = Self::send_to(&e.tx, iq);
        }
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
    }
}

/// A session bound a resource. Answered with its id and full JID.
#[derive(Message)]
#[rtype(result = "Result<(SessionId, FullJid), &'static str>")]
pub struct Bind {
    pub user: String,
    pub resource: Option<String>,
    pub tx: flume::Sender<ToSession>,
}

impl Handler<Bind> for Router {
    type Result = Result<(SessionId, FullJid), &'static str>;

    fn handle(&mut self, msg: Bind, _: &mut Context<Self>) -> Self::Result {
        let id = SessionId(self.next_id);
        self.next_id += 1;
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
        let jid = FullJid::new(&format!("{}@{}/{}", msg.user, self.cfg.domain, resource))
            .map_err(|_| "bad-request")?;
        let entries = self.users.entry(msg.user).or_default();
        // A second bind of the same resource replaces the older session (RFC 6120 §7.7.2.2).
        if let Some(i) = entries
            .iter()
            .position(|e| e.resource == jid.resource().as_str())
        {
            let old = entries.remove(i);
            let _ = old.tx.try_send(ToSession::Conflict);
        }
        if entries.len() >= MAX_RESOURCES {
            // A client that logs in anew instead of resuming leaves hibernated sessions
            // behind; with push they are held for days. The oldest of them makes room
            // (its unacked messages go to offline storage as it ends) before a login is
            // refused.
            let Some(i) = oldest_hibernated(entries) else {
                return Err("resource-constraint");
            };
            let old = entries.remove(i);
            tracing::info!(
                user = %jid.node().map(|n| n.as_str()).unwrap_or_default(),
                "session limit reached: the oldest hibernated session ends"
            );
            let _ = old.tx.try_send(ToSession::Conflict);
        }
        entries.push(Entry {
            id,
            hibernated_since: None,
            resource: jid.resource().to_string(),
            tx: msg.tx,
            presence: None,
        });
        Ok((id, jid))
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
    pub user: String,
    pub id: SessionId,
    pub hibernated: bool,
}

impl Handler<SetHibernated> for Router {
    type Result = ();

    fn handle(&mut self, msg: SetHibernated, _: &mut Context<Self>) {
        if let Some(e) = self
            .users
            .get_mut(&msg.user)
            .and_then(|v| v.iter_mut().find(|e| e.id == msg.id))
        {
            e.hibernated_since = msg.hibernated.then(std::time::Instant::now);
        }
    }
}

/// A session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unbind {
    pub user: String,
    pub id: SessionId,
}

impl Handler<Unbind> for Router {
    type Result = ();

    fn handle(&mut self, msg: Unbind, _: &mut Context<Self>) {
        if let Some(entries) = self.users.get_mut(&msg.user) {
            entries.retain(|e| e.id != msg.id);
            if entries.is_empty() {
                self.users.remove(&msg.user);
            }
        }
        if self.users.is_empty() {
            for done in self.drained.drain(..) {
                let _ = done.send(());
            }
        }
    }
}

/// An account was deleted: each of its sessions ends at once (connected ones with
/// `not-authorized`); what they held bounces, as the account is gone. Answered once
/// they were told.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndUserSessions {
    pub user: String,
}

impl Handler<EndUserSessions> for Router {
    type Result = ();

    fn handle(&mut self, msg: EndUserSessions, _: &mut Context<Self>) {
        let Some(entries) = self.users.remove(&msg.user) else {
            return;
        };
        for e in entries {
            if e.tx.try_send(ToSession::Revoked).is_err() {
                actix::spawn(async move {
                    let _ = e.tx.send_async(ToSession::Revoked).await;
                });
            }
        }
    }
}

/// The server stops: every session ends (connected ones with `system-shutdown`), and
/// each hands its unacknowledged messages to offline storage (D23). Answered once every
/// session is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndAllSessions;

impl Handler<EndAllSessions> for Router {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: EndAllSessions, _: &mut Context<Self>) -> Self::Result {
        for e in self.users.values().flatten() {
            // A full channel still ends: the session reads its channel to the end.
            if e.tx.try_send(ToSession::Shutdown).is_err() {
                let tx = e.tx.clone();
                actix::spawn(async move {
                    let _ = tx.send_async(ToSession::Shutdown).await;
                });
            }
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.users.is_empty() {
            let _ = done.send(());
        } else {
            self.drained.push(done);
        }
        Box::pin(async move {
            let _ = wait.await;
        })
    }
}

/// A session sent (or withdrew) its initial presence.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetAvailable {
    pub user: String,
    pub id: SessionId,
    /// The presence now in force; `None` when the session became unavailable.
    pub presence: Option<Element>,
}

impl Handler<SetAvailable> for Router {
    type Result = ();

    fn handle(&mut self, msg: SetAvailable, _: &mut Context<Self>) {
        if let Some(e) = self
            .users
            .get_mut(&msg.user)
            .and_then(|v| v.iter_mut().find(|e| e.id == msg.id))
        {
            e.presence = msg.presence.map(|p| String::from(&p).into_boxed_str());
        }
    }
}

/// A stanza from a session or component, `from` already stamped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Route(pub Element);

impl Handler<Route> for Router {
    type Result = ();

    fn handle(&mut self, Route(stanza): Route, ctx: &mut Context<Self>) {
        self.deliver(stanza, ctx);
    }
}

/// A component completed its handshake. `false`: one with that JID is connected already.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct AttachComponent {
    pub jid: String,
    pub tx: flume::Sender<ToComponent>,
}

/// What the router hands a component's connection.
pub enum ToComponent {
    /// A stanza routed to the component's domain.
    Stanza(Box<Element>),
    /// A publish from the push module, serialized without a namespace on its root.
    Publish(String),
}

impl Handler<AttachComponent> for Router {
    type Result = bool;

    fn handle(&mut self, msg: AttachComponent, _: &mut Context<Self>) -> bool {
        if self
            .components
            .get(&msg.jid)
            .is_some_and(|tx| !tx.is_disconnected())
        {
            return false;
        }
        self.components.insert(msg.jid, msg.tx);
        true
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct DetachComponent {
    pub jid: String,
}

impl Handler<DetachComponent> for Router {
    type Result = ();

    fn handle(&mut self, msg: DetachComponent, _: &mut Context<Self>) {
        self.components.remove(&msg.jid);
    }
}

impl Handler<RoutePublish> for Router {
    type Result = ();

    fn handle(&mut self, msg: RoutePublish, _: &mut Context<Self>) {
        let domain = msg.to.domain().as_str();
        match self.components.get(domain) {
            Some(tx) => {
                if tx.try_send(ToComponent::Publish(msg.xml)).is_err() {
                    tracing::warn!(component = %domain, "app server queue full: publish dropped");
                }
            }
            None => {
                tracing::warn!(to = %msg.to, "no connected component for this app server (server-to-server links are not built yet): publish dropped");
            }
        }
    }
}

impl Handler<SessionControl> for Router {
    type Result = ();

    fn handle(&mut self, msg: SessionControl, _: &mut Context<Self>) {
        let SessionAction::Expire = msg.action;
        for entries in self.users.values() {
            if let Some(e) = entries.iter().find(|e| e.id == msg.session) {
                let _ = e.tx.try_send(ToSession::Expire);
                return;
            }
        }
    }
}

/// A session enabled resumption under this id.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SmRegister {
    pub id: String,
    pub user: String,
    pub session: SessionId,
}

impl Handler<SmRegister> for Router {
    type Result = ();

    fn handle(&mut self, msg: SmRegister, _: &mut Context<Self>) {
        self.resumable.insert(msg.id, (msg.user, msg.session));
    }
}

/// A resumable session ended; `h` is remembered for a late `<resume/>`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SmForget {
    pub id: String,
    pub user: String,
    pub h: u32,
}

impl Handler<SmForget> for Router {
    type Result = ();

    fn handle(&mut self, msg: SmForget, _: &mut Context<Self>) {
        self.resumable.remove(&msg.id);
        self.old_sessions.push_back(OldSession {
            id: msg.id,
            user: msg.user,
            h: msg.h,
        });
        while self.old_sessions.len() > self.cfg.smacks_max_old_sessions {
            self.old_sessions.pop_front();
        }
    }
}

/// Where to send a `<resume/>` of `user` for `previd`: the session's channel, or the
/// `h` of an ended session (if remembered) for `<failed/>`.
#[derive(Message)]
#[rtype(result = "Result<flume::Sender<ToSession>, Option<u32>>")]
pub struct FindResumable {
    pub user: String,
    pub previd: String,
}

impl Handler<FindResumable> for Router {
    type Result = Result<flume::Sender<ToSession>, Option<u32>>;

    fn handle(&mut self, msg: FindResumable, _: &mut Context<Self>) -> Self::Result {
        let found = self
            .resumable
            .get(&msg.previd)
            .filter(|(user, _)| *user == msg.user)
            .and_then(|(user, id)| {
                self.users
                    .get(user)
                    .and_then(|v| v.iter().find(|e| e.id == *id))
                    .map(|e| e.tx.clone())
            });
        // Another account's ended session is "not found" like any unknown id: its
        // `h` would tell how many stanzas that user had received.
        found.ok_or_else(|| {
            self.old_sessions
                .iter()
                .find(|o| o.id == msg.previd && o.user == msg.user)
                .map(|o| o.h)
        })
    }
}

/// A session changed a roster item: store it and push it to all the user's sessions.
/// Answered once stored (the session then answers its client's roster set).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct SaveRosterItem {
    pub user: String,
    pub contact: String,
    /// `None` removes the item.
    pub item: Option<RosterItem>,
}

impl Handler<SaveRosterItem> for Router {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: SaveRosterItem, _: &mut Context<Self>) -> Self::Result {
        let push = roster::item_element(&msg.contact, msg.item.as_ref());
        let change = match msg.item {
            Some(item) => Change::PutRosterItem {
                user: msg.user.clone(),
                contact: msg.contact,
                item,
            },
            None => Change::DeleteRosterItem {
                user: msg.user.clone(),
                contact: msg.contact,
            },
        };
        let write = self.store.send(Write {
            changes: vec![change],
            durable: true,
        });
        let user = msg.user;
        Box::pin(write.into_actor(self).map(move |res, act, _| {
            let ok = matches!(res, Ok(Ok(())));
            if ok {
                act.roster_push(&user, push);
            } else {
                tracing::error!(%user, "roster change not stored");
            }
            ok
        }))
    }
}
