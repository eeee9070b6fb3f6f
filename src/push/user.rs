//! `UserPush`: one actor per user with push state in memory.
//!
//! It owns the user's registrations (loaded from the store when it starts), the links of
//! the user's sessions to registrations, the hibernation timers of push-linked sessions,
//! the batches, and the publishes awaiting an answer. It stops when idle; everything that
//! must survive is in the store.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::batch::{Batch, Candidate};
use super::hub::{PushHub, UserGone, UserIdle};
use super::interface::*;
use super::marks::Marks;
use super::protocol::{self, DisableRequest, EnableRequest, PushCommand};
use super::publish::{self, Outcome, Response, Summary};
use super::registration::{self, Registration, RegistrationSet};
use super::rules::{self, Path};
use super::window::Window;
use crate::config::Config;
use crate::metrics::{Metrics, PublishOutcome};
use crate::store::ledger::{RemovalReason, RemovalRecord};
use crate::store::{Change, ErrorNote, RegistrationRecord, StoreClient, StoreError, Write};

mod admin;

/// Sessions of one user that may be linked at once. A user has a handful of devices; the
/// bound stops a misbehaving client from growing the map with endless resources.
pub const MAX_LINKED_SESSIONS: usize = 32;

/// Mailbox room; the hub refuses (and logs) events past it rather than queue without end.
pub const MAILBOX: usize = 256;

/// A validated push command for this user, forwarded by the hub.
#[derive(Message)]
#[rtype(result = "Element")]
pub(super) struct Command {
    pub session: Session,
    pub id: String,
    pub command: PushCommand,
}

/// The hub agreed that this actor is idle and has removed it: flush and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Stop {
    pub flush: bool,
}

enum State {
    Loading,
    Loaded(RegistrationSet),
    Failed,
}

struct Hibernation {
    normal_timeout: Duration,
    timer: SpawnHandle,
    /// An important publish happened in this hibernation and the timer was cut back.
    cut_back: bool,
}

struct Link {
    /// The registration this session enabled last; `None` after a disable or removal.
    identifier: Option<String>,
    control: Recipient<SessionControl>,
    hibernation: Option<Hibernation>,
    /// D20: the leading-edge window of the §8.5 and §8.6 paths.
    window: Window,
    marks: Marks,
}

struct Outstanding {
    identifier: String,
    timer: SpawnHandle,
    sent_at: tokio::time::Instant,
    /// A test push (`TestPush`) waits for this publish's end.
    waiter: Option<tokio::sync::oneshot::Sender<(TestOutcome, Option<Duration>)>>,
}

pub struct UserPush {
    user: String,
    user_jid: BareJid,
    cfg: Arc<Config>,
    store: StoreClient,
    router: Recipient<RoutePublish>,
    hub: Addr<PushHub>,
    route: u64,
    metrics: Arc<Metrics>,
    state: State,
    sessions: HashMap<SessionId, Link>,
    outstanding: HashMap<String, Outstanding>,
    /// Publish ids in sending order, to find the oldest when the map is full.
    outstanding_order: VecDeque<String>,
    /// Registrations whose ledger changed without a durable write yet.
    dirty: HashSet<String>,
    /// Messages handled, compared with the hub's count before unloading.
    handled: u64,
    idle_timer: Option<SpawnHandle>,
    span: tracing::Span,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl UserPush {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        user: String,
        user_jid: BareJid,
        cfg: Arc<Config>,
        store: StoreClient,
        router: Recipient<RoutePublish>,
        hub: Addr<PushHub>,
        route: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        let span = tracing::info_span!("push_user", user = %user_jid);
        UserPush {
            user,
            user_jid,
            cfg,
            store,
            router,
            hub,
            route,
            metrics,
            state: State::Loading,
            sessions: HashMap::new(),
            outstanding: HashMap::new(),
            outstanding_order: VecDeque::new(),
            dirty: HashSet::new(),
            handled: 0,
            idle_timer: None,
            span,
        }
    }

    fn registrations(&self) -> Option<&RegistrationSet> {
        match &self.state {
            State::Loaded(set) => Some(set),
            _ => None,
        }
    }

    /// Every handled message goes through here: counts it and restarts the idle clock.
    /// Returns the user's span, entered, for the rest of the handler.
    fn touch(&mut self, ctx: &mut Context<Self>) -> tracing::span::EnteredSpan {
        self.handled += 1;
        if let Some(h) = self.idle_timer.take() {
            ctx.cancel_future(h);
        }
        self.idle_timer =
            Some(ctx.run_later(self.cfg.push_user_idle_time, |act, ctx| act.idle_check(ctx)));
        self.span.clone().entered()
    }

    fn idle_check(&mut self, ctx: &mut Context<Self>) {
        self.idle_timer = None;
        if self.sessions.is_empty() && self.outstanding.is_empty() {
            self.hub.do_send(UserIdle {
                user: self.user.clone(),
                route: self.route,
                handled: self.handled,
            });
        } else {
            self.idle_timer =
                Some(ctx.run_later(self.cfg.push_user_idle_time, |act, ctx| act.idle_check(ctx)));
        }
    }

    // ------------------------------------------------------------------ storage

    fn record_changes(&mut self) -> Vec<Change> {
        let Some(set) = self.registrations() else {
            return Vec::new();
        };
        let changes = self
            .dirty
            .iter()
            .filter_map(|id| set.get(id))
            .map(|r| Change::PutRegistration {
                user: self.user.clone(),
                identifier: r.identifier.clone(),
                record: r.record.clone(),
            })
            .collect();
        self.dirty.clear();
        changes
    }

    /// Writes in the background; used for ledger updates, whose failure is logged and
    /// changes no answer already given.
    fn write_in_background(
        &mut self,
        mut changes: Vec<Change>,
        durable: bool,
        ctx: &mut Context<Self>,
    ) {
        // Ledger changes first: the explicit changes come later and so win.
        let mut all = self.record_changes();
        all.append(&mut changes);
        let changes = all;
        if changes.is_empty() {
            return;
        }
        let user = self.user.clone();
        let fut = self.store.write.send(Write { changes, durable });
        ctx.spawn(fut.into_actor(self).map(move |res, _, _| {
            if let Err(e) = res
                .map_err(|e| StoreError::Failed(e.to_string()))
                .and_then(|r| r)
            {
                tracing::error!(%user, error = %e, "push ledger write failed");
            }
        }));
    }

    fn put(&self, reg: &Registration) -> Change {
        Change::PutRegistration {
            user: self.user.clone(),
            identifier: reg.identifier.clone(),
            record: reg.record.clone(),
        }
    }

    /// The removal log's entry for a registration going now (written with its delete).
    fn log_removal(&self, record: &RegistrationRecord, reason: RemovalReason) -> Change {
        Change::LogRemoval {
            user: self.user.clone(),
            at_us: now_us(),
            record: RemovalRecord::new(record, reason),
        }
    }

    // ------------------------------------------------------------------ enable / disable

    fn error(id: &str, session: &FullJid, t: ErrorType, c: DefinedCondition) -> Element {
        protocol::error_reply(id, session, t, c, None)
    }

    fn enable(
        &mut self,
        session: Session,
        id: String,
        req: EnableRequest,
    ) -> ResponseActFuture<Self, Element> {
        let Some(set) = self.registrations() else {
            return Box::pin(fut::ready(Self::error(
                &id,
                &session.jid,
                ErrorType::Wait,
                DefinedCondition::InternalServerError,
            )));
        };
        if !self.sessions.contains_key(&session.id) && self.sessions.len() >= MAX_LINKED_SESSIONS {
            tracing::warn!(user = %self.user, limit = MAX_LINKED_SESSIONS, "too many push-linked sessions; enable refused");
            return Box::pin(fut::ready(protocol::error_reply(
                &id,
                &session.jid,
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                Some("Too many sessions"),
            )));
        }
        let identifier = registration::identifier(&req.jid, req.node.as_deref());
        let record = RegistrationRecord {
            jid: req.jid.to_string(),
            node: req.node,
            publish_options: req.publish_options,
            enabled_at_us: set.next_enabled_at(now_us()),
            client: session.jid.resource().to_string(),
            language: req.language,
            // D5: a re-enable starts the registration's error count afresh.
            error_count: 0,
            last_success: None,
            last_error: None,
            last_timeout: None,
        };
        let reg = match Registration::from_record(identifier.clone(), record) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(user = %self.user, error = %e, "enable refused");
                return Box::pin(fut::ready(Self::error(
                    &id,
                    &session.jid,
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                )));
            }
        };
        let evicted = set
            .would_evict(&identifier, self.cfg.push_max_devices)
            .map(|r| (r.identifier.clone(), r.record.clone()));
        // Pending ledger writes go first, so the new record and the eviction win.
        let mut changes = self.record_changes();
        changes.push(self.put(&reg));
        if let Some((old, record)) = evicted {
            changes.push(Change::DeleteRegistration {
                user: self.user.clone(),
                identifier: old,
            });
            changes.push(self.log_removal(&record, RemovalReason::Evicted));
        }
        let write = self.store.write.send(Write {
            changes,
            durable: true,
        });
        Box::pin(write.into_actor(self).map(move |res, act, ctx| {
            let res = res.map_err(|e| StoreError::Failed(e.to_string())).and_then(|r| r);
            if let Err(e) = res {
                tracing::error!(user = %act.user, error = %e, "enable not stored");
                return Self::error(
                    &id,
                    &session.jid,
                    ErrorType::Wait,
                    DefinedCondition::InternalServerError,
                );
            }
            let State::Loaded(set) = &mut act.state else {
                return Self::error(&id, &session.jid, ErrorType::Wait, DefinedCondition::InternalServerError);
            };
            if let Some(old) = set.upsert(reg, act.cfg.push_max_devices) {
                tracing::info!(user = %act.user, evicted = %old.identifier, "push_max_devices reached: registration enabled longest ago evicted");
                act.forget_registration(&old.identifier, ctx);
            }
            tracing::info!(user = %act.user, registration = %identifier, client = %session.jid.resource(), "push enabled");
            let link = act.sessions.entry(session.id).or_insert_with(|| Link {
                identifier: None,
                control: session.control.clone(),
                hibernation: None,
                window: Window::default(),
                marks: Marks::default(),
            });
            link.identifier = Some(identifier);
            link.control = session.control.clone();
            if let Some(h) = &mut link.hibernation {
                h.cut_back = false;
            }
            protocol::result_reply(&id, &session.jid)
        }))
    }

    fn disable(
        &mut self,
        session: Session,
        id: String,
        req: DisableRequest,
    ) -> ResponseActFuture<Self, Element> {
        let Some(set) = self.registrations() else {
            return Box::pin(fut::ready(Self::error(
                &id,
                &session.jid,
                ErrorType::Wait,
                DefinedCondition::InternalServerError,
            )));
        };
        let doomed: Vec<(String, RegistrationRecord)> = set
            .iter()
            .filter(|r| r.jid == req.jid && req.node.matches(r.node()))
            .map(|r| (r.identifier.clone(), r.record.clone()))
            .collect();
        if doomed.is_empty() {
            return Box::pin(fut::ready(protocol::result_reply(&id, &session.jid)));
        }
        let by = session.jid.resource().to_string();
        let mut changes = Vec::with_capacity(2 * doomed.len());
        for (identifier, record) in &doomed {
            changes.push(Change::DeleteRegistration {
                user: self.user.clone(),
                identifier: identifier.clone(),
            });
            changes.push(self.log_removal(record, RemovalReason::Disabled { by: by.clone() }));
        }
        let doomed: Vec<String> = doomed.into_iter().map(|(id, _)| id).collect();
        let write = self.store.write.send(Write {
            changes,
            durable: true,
        });
        Box::pin(write.into_actor(self).map(move |res, act, ctx| {
            let res = res
                .map_err(|e| StoreError::Failed(e.to_string()))
                .and_then(|r| r);
            if let Err(e) = res {
                tracing::error!(user = %act.user, error = %e, "disable not stored");
                return Self::error(
                    &id,
                    &session.jid,
                    ErrorType::Wait,
                    DefinedCondition::InternalServerError,
                );
            }
            for identifier in &doomed {
                tracing::info!(user = %act.user, registration = %identifier, "push disabled");
                act.forget_registration(identifier, ctx);
            }
            protocol::result_reply(&id, &session.jid)
        }))
    }

    /// Removes a registration from memory, unlinks every session linked to it (D8) and
    /// stops tracking its publishes. A hibernated session whose extended timer the module
    /// holds goes back to its normal timeout, counted from now (§9.1).
    fn forget_registration(&mut self, identifier: &str, ctx: &mut Context<Self>) {
        if let State::Loaded(set) = &mut self.state {
            set.remove(identifier);
        }
        self.dirty.remove(identifier);
        let stale: Vec<String> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.identifier == identifier)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(o) = self.outstanding.remove(&id) {
                // A waiting test push hears `Gone` as its sender drops.
                ctx.cancel_future(o.timer);
                self.metrics.pending_publishes_add(-1);
            }
        }
        let linked: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, l)| l.identifier.as_deref() == Some(identifier))
            .map(|(id, _)| *id)
            .collect();
        for sid in linked {
            if let Some(link) = self.sessions.get_mut(&sid) {
                link.identifier = None;
                link.window.reset();
            }
            if let Some(normal) = self
                .sessions
                .get(&sid)
                .and_then(|l| l.hibernation.as_ref())
                .map(|h| h.normal_timeout)
            {
                self.arm_hibernation_timer(sid, normal, ctx);
            }
        }
    }

    // ------------------------------------------------------------------ publishing

    /// Sends one publish to one registration. `false` when nothing was sent.
    fn publish(&mut self, identifier: &str, summary: &Summary, ctx: &mut Context<Self>) -> bool {
        self.publish_id(identifier, summary, ctx).is_some()
    }

    /// [`publish`](Self::publish), returning the publish's id.
    fn publish_id(
        &mut self,
        identifier: &str,
        summary: &Summary,
        ctx: &mut Context<Self>,
    ) -> Option<String> {
        let reg = self.registrations().and_then(|s| s.get(identifier))?;
        let id = publish::new_publish_id(self.route);
        let xml = publish::publish_xml(&self.cfg.domain, reg, summary, &id);
        let to = reg.jid.clone();
        if let Err(e) = self.router.try_send(RoutePublish {
            to: to.clone(),
            xml,
        }) {
            tracing::warn!(user = %self.user, registration = %identifier, error = %e, "publish not routed: host queue unavailable");
            return None;
        }
        tracing::debug!(user = %self.user, registration = %identifier, %to, id = %id, body = summary.body_kind(&self.cfg), "publish sent");
        if self.outstanding.len() >= self.cfg.push_max_pending_publishes {
            // Past the bound the oldest publish is given up on, as at its timeout (D10).
            while let Some(oldest) = self.outstanding_order.pop_front() {
                if self.outstanding.contains_key(&oldest) {
                    tracing::debug!(user = %self.user, "pending publishes full: oldest treated as unanswered");
                    self.response_timed_out(oldest, ctx);
                    break;
                }
            }
        }
        let timer_id = id.clone();
        let timer = ctx.run_later(self.cfg.push_response_timeout, move |act, ctx| {
            act.response_timed_out(timer_id, ctx)
        });
        self.outstanding.insert(
            id.clone(),
            Outstanding {
                identifier: identifier.to_string(),
                timer,
                sent_at: tokio::time::Instant::now(),
                waiter: None,
            },
        );
        self.metrics.pending_publishes_add(1);
        self.outstanding_order.push_back(id.clone());
        // The order list may hold ids already answered; keep it from outgrowing the map.
        if self.outstanding_order.len() > 2 * self.cfg.push_max_pending_publishes {
            let live = &self.outstanding;
            self.outstanding_order.retain(|id| live.contains_key(id));
        }
        Some(id)
    }

    /// The app server's domain of a registration, for the metrics.
    fn app_server_of(&self, identifier: &str) -> Option<String> {
        self.registrations()
            .and_then(|s| s.get(identifier))
            .map(|r| r.jid.domain().to_string())
    }

    fn response_timed_out(&mut self, id: String, ctx: &mut Context<Self>) {
        let Some(o) = self.outstanding.remove(&id) else {
            return;
        };
        ctx.cancel_future(o.timer);
        self.metrics.pending_publishes_add(-1);
        if let Some(domain) = self.app_server_of(&o.identifier) {
            self.metrics
                .publish_ended(&domain, PublishOutcome::Timeout, None);
        }
        if let Some(w) = o.waiter {
            let _ = w.send((TestOutcome::Timeout, None));
        }
        tracing::debug!(user = %self.user, registration = %o.identifier, id = %id, "publish unanswered within push_response_timeout");
        if let State::Loaded(set) = &mut self.state
            && let Some(reg) = set.get_mut(&o.identifier)
        {
            reg.record.last_timeout = Some(now_secs());
            self.dirty.insert(o.identifier);
        }
    }

    fn handle_response(&mut self, resp: Response, ctx: &mut Context<Self>) {
        let Some(o) = self.outstanding.get(&resp.id) else {
            tracing::debug!(user = %self.user, id = %resp.id, "answer to an unknown publish ignored");
            return;
        };
        let identifier = o.identifier.clone();
        let max_errors = self.cfg.push_max_errors;
        let State::Loaded(set) = &mut self.state else {
            return;
        };
        let Some(reg) = set.get_mut(&identifier) else {
            return;
        };
        // D11: compare normalised JIDs. An answer from elsewhere changes nothing (B66).
        if resp.from.as_ref() != Some(&reg.jid) {
            tracing::debug!(user = %self.user, id = %resp.id, from = ?resp.from.as_ref().map(|j| j.to_string()), "answer from an unexpected JID ignored");
            return;
        }
        if let Some(o) = self.outstanding.remove(&resp.id) {
            ctx.cancel_future(o.timer);
            self.metrics.pending_publishes_add(-1);
            let latency = o.sent_at.elapsed();
            let (kind, test) = match &resp.outcome {
                Outcome::Success => (PublishOutcome::Success, TestOutcome::Success),
                Outcome::Error {
                    error_type,
                    condition,
                    text,
                } => (
                    PublishOutcome::Error,
                    TestOutcome::Error {
                        error_type: error_type.clone(),
                        condition: condition.clone(),
                        text: text.clone(),
                    },
                ),
            };
            self.metrics
                .publish_ended(reg.jid.domain().as_str(), kind, Some(latency));
            if let Some(w) = o.waiter {
                let _ = w.send((test, Some(latency)));
            }
        }
        match resp.outcome {
            Outcome::Success => {
                reg.record.last_success = Some(now_secs());
                if reg.record.error_count > 0 {
                    reg.record.error_count = 0;
                    let change = Change::PutRegistration {
                        user: self.user.clone(),
                        identifier: identifier.clone(),
                        record: reg.record.clone(),
                    };
                    self.write_in_background(vec![change], true, ctx);
                } else {
                    self.dirty.insert(identifier);
                }
            }
            outcome @ Outcome::Error { .. } => {
                let counts = outcome.counts_as_error();
                let Outcome::Error {
                    error_type,
                    condition,
                    text,
                } = outcome
                else {
                    return;
                };
                tracing::debug!(user = %self.user, registration = %identifier, %error_type, %condition, "app server answered with an error");
                reg.record.last_error = Some(ErrorNote {
                    at: now_secs(),
                    error_type,
                    condition,
                    text,
                });
                if !counts {
                    self.dirty.insert(identifier);
                    return;
                }
                reg.record.error_count += 1;
                if reg.record.error_count >= max_errors {
                    tracing::info!(user = %self.user, registration = %identifier, errors = reg.record.error_count, "push_max_errors reached: registration removed");
                    let reason = RemovalReason::Errors {
                        count: reg.record.error_count,
                    };
                    let record = reg.record.clone();
                    let changes = vec![
                        Change::DeleteRegistration {
                            user: self.user.clone(),
                            identifier: identifier.clone(),
                        },
                        self.log_removal(&record, reason),
                    ];
                    self.forget_registration(&identifier, ctx);
                    self.write_in_background(changes, true, ctx);
                } else {
                    let change = Change::PutRegistration {
                        user: self.user.clone(),
                        identifier,
                        record: reg.record.clone(),
                    };
                    self.write_in_background(vec![change], true, ctx);
                }
            }
        }
    }

    // ------------------------------------------------------------------ paths

    /// Paths A and B: every registration, once per stanza (§8.1, §8.2).
    fn offline(&mut self, stanza: &Element, key: Option<StanzaKey>, ctx: &mut Context<Self>) {
        if !rules::wakes(stanza, Path::Offline, self.cfg.push_notify_on) {
            return;
        }
        let summary = Summary::of(Some(stanza), rules::is_important(stanza), &self.cfg);
        let ids: Vec<String> = self.all_identifiers();
        for identifier in ids {
            // Only read the marks: a keyed offline message comes from a session being
            // destroyed, so no later path can take it, and inserting here would evict the
            // marks of stanzas not yet handled.
            let already = key.is_some_and(|k| {
                self.sessions
                    .get(&k.session)
                    .is_some_and(|l| l.marks.contains(k.seq, &identifier))
            });
            if !already {
                self.publish(&identifier, &summary, ctx);
            }
        }
    }

    /// Path C (§8.7): registrations no current session is linked to; every registration
    /// for a call (urgent).
    fn archived(&mut self, stanza: &Element, ctx: &mut Context<Self>) {
        if !rules::wakes(stanza, Path::Archive, self.cfg.push_notify_on) {
            return;
        }
        // D15: the user's own outgoing messages are archived too; compare bare JIDs.
        let to_user = match stanza.attr("to").map(str::parse::<Jid>) {
            None => true,
            Some(Ok(to)) => to.to_bare() == self.user_jid,
            Some(Err(_)) => false,
        };
        let urgent = rules::is_urgent(stanza);
        // D17: a call answered or refused on one of the user's devices is archived as
        // the user's outgoing message; the other devices must hear of it to stop ringing.
        let from_user = stanza
            .attr("from")
            .and_then(|f| f.parse::<Jid>().ok())
            .is_some_and(|f| f.to_bare() == self.user_jid);
        if !(to_user || (urgent && from_user)) {
            return;
        }
        let summary = Summary::of(Some(stanza), rules::is_important(stanza), &self.cfg);
        let linked: HashSet<&str> = self
            .sessions
            .values()
            .filter_map(|l| l.identifier.as_deref())
            .collect();
        // A hibernated session gets the stanza in its queue and is pushed from there; the
        // archive path must not push the same stanza to its registration again (D13).
        let hibernating: HashSet<&str> = self
            .sessions
            .values()
            .filter(|l| l.hibernation.is_some())
            .filter_map(|l| l.identifier.as_deref())
            .collect();
        let ids: Vec<String> = self
            .all_identifiers()
            .into_iter()
            .filter(|id| {
                if urgent {
                    !hibernating.contains(id.as_str())
                } else {
                    !linked.contains(id.as_str())
                }
            })
            .collect();
        for identifier in ids {
            self.publish(&identifier, &summary, ctx);
        }
    }

    fn all_identifiers(&self) -> Vec<String> {
        self.registrations()
            .map(|s| s.iter().map(|r| r.identifier.clone()).collect())
            .unwrap_or_default()
    }

    /// The stanzas of a session that would wake its registration (spec §7, D18), in
    /// queue order, leaving out those already pushed to it (D13): each with its
    /// importance.
    fn wakeable<'q>(
        &self,
        session: SessionId,
        stanzas: &'q [QueuedStanza],
    ) -> Vec<(&'q QueuedStanza, bool)> {
        let Some(link) = self.sessions.get(&session) else {
            return Vec::new();
        };
        let Some(identifier) = link.identifier.as_deref() else {
            return Vec::new();
        };
        stanzas
            .iter()
            .filter(|qs| {
                rules::wakes(&qs.stanza, Path::Smacks, self.cfg.push_notify_on)
                    && !link.marks.contains(qs.key.seq, identifier)
            })
            .map(|qs| (qs, rules::is_important(&qs.stanza)))
            .collect()
    }

    /// A publish for this stanza; the summary is built only for stanzas that publish.
    fn candidate(&self, qs: &QueuedStanza, important: bool) -> Candidate {
        Candidate {
            seq: qs.key.seq,
            important,
            summary: Summary::of(Some(&qs.stanza), important, &self.cfg),
        }
    }

    /// §8.3 step 3: the queue a session hibernates with gives at most one important and
    /// one unimportant publish, at once.
    fn publish_queue_at_hibernation(
        &mut self,
        session: SessionId,
        queue: &[QueuedStanza],
        ctx: &mut Context<Self>,
    ) {
        let mut batch = Batch::default();
        for (qs, important) in self.wakeable(session, queue) {
            if batch.wants(important) {
                batch.offer(self.candidate(qs, important));
            }
        }
        self.publish_candidates(session, batch.take(), ctx);
    }

    /// §8.5 and §8.6 with D20: each stanza passes through the session's leading-edge
    /// window, and what it admits publishes at once.
    fn publish_through_window(
        &mut self,
        session: SessionId,
        stanzas: &[QueuedStanza],
        ctx: &mut Context<Self>,
    ) {
        let wakeable = self.wakeable(session, stanzas);
        let now = tokio::time::Instant::now();
        let length = self.cfg.push_batch_window;
        let Some(link) = self.sessions.get_mut(&session) else {
            return;
        };
        let admitted: Vec<(&QueuedStanza, bool)> = wakeable
            .into_iter()
            .filter(|(_, important)| link.window.admit(now, length, *important))
            .collect();
        let candidates = admitted
            .into_iter()
            .map(|(qs, important)| self.candidate(qs, important))
            .collect();
        self.publish_candidates(session, candidates, ctx);
    }

    /// Publishes for the session's registration and marks each stanza pushed (D13); an
    /// important publish during hibernation cuts the extended timer back to the normal
    /// timeout (§8.3 step 4).
    fn publish_candidates(
        &mut self,
        session: SessionId,
        candidates: Vec<Candidate>,
        ctx: &mut Context<Self>,
    ) {
        let Some(identifier) = self
            .sessions
            .get(&session)
            .and_then(|l| l.identifier.clone())
        else {
            return;
        };
        let mut important_sent = false;
        for c in candidates {
            if !self.publish(&identifier, &c.summary, ctx) {
                continue;
            }
            if let Some(link) = self.sessions.get_mut(&session) {
                link.marks.insert(c.seq, &identifier);
            }
            important_sent |= c.important;
        }
        if important_sent {
            self.cut_back(session, ctx);
        }
    }

    fn cut_back(&mut self, session: SessionId, ctx: &mut Context<Self>) {
        let Some(h) = self
            .sessions
            .get(&session)
            .and_then(|l| l.hibernation.as_ref())
        else {
            return;
        };
        if h.cut_back {
            return;
        }
        let normal = h.normal_timeout;
        self.arm_hibernation_timer(session, normal, ctx);
        if let Some(h) = self
            .sessions
            .get_mut(&session)
            .and_then(|l| l.hibernation.as_mut())
        {
            h.cut_back = true;
        }
    }

    /// (Re)arms the timer that ends a hibernation the module holds.
    fn arm_hibernation_timer(
        &mut self,
        session: SessionId,
        after: Duration,
        ctx: &mut Context<Self>,
    ) {
        let timer = ctx.run_later(after, move |act, _| act.expire(session));
        let Some(link) = self.sessions.get_mut(&session) else {
            ctx.cancel_future(timer);
            return;
        };
        match &mut link.hibernation {
            Some(h) => {
                ctx.cancel_future(std::mem::replace(&mut h.timer, timer));
            }
            None => {
                link.hibernation = Some(Hibernation {
                    normal_timeout: after,
                    timer,
                    cut_back: false,
                });
            }
        }
    }

    /// D14: the held hibernation is over; the host destroys the session as at a normal
    /// timeout and then reports `SessionClosed`.
    fn expire(&mut self, session: SessionId) {
        let Some(link) = self.sessions.get_mut(&session) else {
            return;
        };
        link.hibernation = None;
        tracing::debug!(user = %self.user, session = session.0, "hibernation over: session told to expire");
        let msg = SessionControl {
            session,
            action: SessionAction::Expire,
        };
        // Never dropped: the host handed its timer over and waits for this.
        link.control.do_send(msg);
    }

    fn hibernated(&mut self, msg: SessionHibernated, ctx: &mut Context<Self>) -> TimerOwner {
        let linked = self
            .sessions
            .get(&msg.session)
            .is_some_and(|l| l.identifier.is_some());
        if !linked {
            return TimerOwner::Host;
        }
        if let Some(link) = self.sessions.get_mut(&msg.session) {
            if let Some(h) = link.hibernation.take() {
                ctx.cancel_future(h.timer);
            }
            link.window.reset();
        }
        let timer = ctx.run_later(self.cfg.push_max_hibernation_timeout, move |act, _| {
            act.expire(msg.session)
        });
        if let Some(link) = self.sessions.get_mut(&msg.session) {
            link.hibernation = Some(Hibernation {
                normal_timeout: msg.normal_timeout,
                timer,
                cut_back: false,
            });
        }
        tracing::debug!(user = %self.user, session = msg.session.0, queued = msg.queue.len(), "push-linked session hibernated: timeout extended");
        self.prune_marks(msg.session, &msg.queue);
        self.publish_queue_at_hibernation(msg.session, &msg.queue, ctx);
        TimerOwner::Module
    }

    /// Marks of stanzas older than the session's unacked queue can never be needed again.
    fn prune_marks(&mut self, session: SessionId, queue: &[QueuedStanza]) {
        if let (Some(link), Some(oldest)) = (
            self.sessions.get_mut(&session),
            queue.iter().map(|q| q.key.seq).min(),
        ) {
            link.marks.prune_acked(oldest.saturating_sub(1));
        }
    }

    fn resumed(&mut self, session: SessionId, acked: u64, ctx: &mut Context<Self>) {
        let Some(link) = self.sessions.get_mut(&session) else {
            return;
        };
        if let Some(h) = link.hibernation.take() {
            ctx.cancel_future(h.timer);
        }
        // D12: nothing of the old batch survives a resume.
        link.window.reset();
        link.marks.prune_acked(acked);
    }

    fn closed(&mut self, session: SessionId, ctx: &mut Context<Self>) {
        if let Some(h) = self.sessions.remove(&session).and_then(|l| l.hibernation) {
            ctx.cancel_future(h.timer);
        }
    }
}

impl Actor for UserPush {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        let load = self.store.load.send(crate::store::LoadRegistrations {
            user: self.user.clone(),
        });
        // `wait` holds every message until the registrations are in memory.
        ctx.wait(load.into_actor(self).map(|res, act, ctx| {
            let rows = match res.map_err(|e| StoreError::Failed(e.to_string())).and_then(|r| r) {
                Ok(rows) => rows,
                Err(e) => {
                    // D6: answer with an error and keep nothing, so nothing is overwritten.
                    tracing::error!(user = %act.user, error = %e, "cannot read push registrations");
                    act.state = State::Failed;
                    return;
                }
            };
            let mut regs = Vec::with_capacity(rows.len());
            for (identifier, record) in rows {
                match Registration::from_record(identifier, record) {
                    Ok(r) => regs.push(r),
                    Err(e) => {
                        tracing::error!(user = %act.user, error = %e, "unusable stored registration");
                        act.state = State::Failed;
                        return;
                    }
                }
            }
            let (set, extra) = RegistrationSet::from_rows(regs, act.cfg.push_max_devices);
            act.state = State::Loaded(set);
            if !extra.is_empty() {
                tracing::info!(user = %act.user, count = extra.len(), "more registrations stored than push_max_devices: oldest evicted");
                let mut changes = Vec::with_capacity(2 * extra.len());
                for r in &extra {
                    changes.push(Change::DeleteRegistration {
                        user: act.user.clone(),
                        identifier: r.identifier.clone(),
                    });
                    changes.push(act.log_removal(&r.record, RemovalReason::Evicted));
                }
                act.write_in_background(changes, true, ctx);
            }
        }));
        self.idle_timer =
            Some(ctx.run_later(self.cfg.push_user_idle_time, |act, ctx| act.idle_check(ctx)));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Publishes still awaited are forgotten with the actor (a waiting test push
        // hears `Gone`).
        self.metrics
            .pending_publishes_add(-(self.outstanding.len() as i64));
        self.hub.do_send(UserGone {
            user: self.user.clone(),
            route: self.route,
        });
    }
}

impl Handler<Command> for UserPush {
    type Result = AtomicResponse<Self, Element>;

    fn handle(&mut self, msg: Command, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        if let State::Failed = self.state {
            // Retry the read on the next request: this actor goes, a new one loads again.
            ctx.stop();
        }
        // Atomic: no other message runs until the write is answered, so each enable or
        // disable computes its changes from the state the previous one left.
        AtomicResponse::new(match msg.command {
            PushCommand::Enable(req) => self.enable(msg.session, msg.id, req),
            PushCommand::Disable(req) => self.disable(msg.session, msg.id, req),
        })
    }
}

impl Handler<Stop> for UserPush {
    type Result = ();

    fn handle(&mut self, msg: Stop, ctx: &mut Context<Self>) {
        if !msg.flush {
            // The user is being deleted: hibernations the module holds end now rather
            // than never (the timers die with this actor).
            let held: Vec<SessionId> = self
                .sessions
                .iter()
                .filter(|(_, l)| l.hibernation.is_some())
                .map(|(id, _)| *id)
                .collect();
            for id in held {
                self.expire(id);
            }
        }
        if msg.flush {
            let changes = self.record_changes();
            if !changes.is_empty() {
                // Ledger-only data: no fsync of its own, durable with the next commit.
                // `do_send`: one message per unloading user, and it must not be dropped.
                self.store.write.do_send(Write {
                    changes,
                    durable: false,
                });
            }
        }
        ctx.stop();
    }
}

macro_rules! event_handler {
    ($msg:ty, |$act:ident, $m:ident, $ctx:ident| $body:expr) => {
        impl Handler<$msg> for UserPush {
            type Result = ();
            fn handle(&mut self, $m: $msg, $ctx: &mut Context<Self>) {
                let _span = self.touch($ctx);
                let $act = self;
                $body
            }
        }
    };
}

event_handler!(StanzaQueued, |act, m, ctx| {
    let session = m.stanza.key.session;
    let hibernating = act
        .sessions
        .get(&session)
        .is_some_and(|l| l.hibernation.is_some());
    if hibernating {
        act.publish_through_window(session, std::slice::from_ref(&m.stanza), ctx);
    }
});

event_handler!(AckOverdue, |act, m, ctx| {
    act.prune_marks(m.session, &m.queue);
    act.publish_through_window(m.session, &m.queue, ctx);
});

event_handler!(Barrier, |act, _m, ctx| {
    let _ = (act, ctx);
});
event_handler!(SessionResumed, |act, m, ctx| act
    .resumed(m.session, m.acked, ctx));
event_handler!(SessionClosed, |act, m, ctx| act.closed(m.session, ctx));
event_handler!(OfflineMessage, |act, m, ctx| act
    .offline(&m.stanza, m.key, ctx));
event_handler!(MessageArchived, |act, m, ctx| {
    if m.user_has_sessions {
        act.archived(&m.stanza, ctx)
    }
});

/// An answer already matched to this user by its publish id.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct RoutedResponse(pub Response);

event_handler!(RoutedResponse, |act, m, ctx| act.handle_response(m.0, ctx));

impl Handler<SessionHibernated> for UserPush {
    type Result = MessageResult<SessionHibernated>;

    fn handle(&mut self, msg: SessionHibernated, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        MessageResult(self.hibernated(msg, ctx))
    }
}

impl Handler<GetUserStats> for UserPush {
    type Result = Option<UserStats>;

    fn handle(&mut self, _: GetUserStats, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        Some(UserStats {
            registrations: self.registrations().map_or(0, |s| s.len()),
            linked_sessions: self
                .sessions
                .values()
                .filter(|l| l.identifier.is_some())
                .count(),
            hibernations_held: self
                .sessions
                .values()
                .filter(|l| l.hibernation.is_some())
                .count(),
            pending_publishes: self.outstanding.len(),
            open_batch_windows: {
                let now = tokio::time::Instant::now();
                self.sessions
                    .values()
                    .filter(|l| l.window.is_open(now))
                    .count()
            },
        })
    }
}

impl Handler<PingUser> for UserPush {
    type Result = usize;

    fn handle(&mut self, _: PingUser, ctx: &mut Context<Self>) -> usize {
        let _span = self.touch(ctx);
        let ids = self.all_identifiers();
        self.ping(&ids, ctx).iter().filter(|p| p.is_some()).count()
    }
}

impl UserPush {
    /// The ping notification (§6.2: a summary with no sender and no body) to each of
    /// these registrations; the publish id of each, `None` where nothing was sent.
    fn ping(&mut self, identifiers: &[String], ctx: &mut Context<Self>) -> Vec<Option<String>> {
        identifiers
            .iter()
            .map(|id| self.publish_id(id, &Summary::default(), ctx))
            .collect()
    }
}
