//! The requests that change the stored registrations: loading, `<enable/>`,
//! `<disable/>` and the admin's removal. Each is written durably first and applied to
//! memory only once the store has answered, so a reply never promises what a crash
//! could lose.

use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::clock::Clock;
use super::effect::{Effect, Metric, Reply};
use super::event::{RequestId, Timer};
use super::pending::Pending;
use super::state::{MAX_LINKED_SESSIONS, MAX_PENDING_REQUESTS, PushMachine, State};
use crate::push::interface::{AdminPushError, RegistrationView, Selector, SessionId};
use crate::push::protocol::{self, DisableRequest, EnableRequest};
use crate::push::registration::{self, Registration, RegistrationSet};
use crate::push::tigase::enable::TOO_MANY_FILTER_JIDS;
use crate::store::ledger::{RemovalReason, RemovalRecord};
use crate::store::{Change, RegistrationRecord, StoreError};

fn error(iq_id: &str, jid: &FullJid, t: ErrorType, c: DefinedCondition) -> Element {
    protocol::error_reply(iq_id, jid, t, c, None)
}

fn internal_error(iq_id: &str, jid: &FullJid) -> Element {
    error(
        iq_id,
        jid,
        ErrorType::Wait,
        DefinedCondition::InternalServerError,
    )
}

fn reply(request: RequestId, reply: Reply) -> Effect {
    Effect::Reply { request, reply }
}

impl PushMachine {
    pub(super) fn loaded(
        &mut self,
        c: Clock,
        rows: Result<Vec<(String, RegistrationRecord)>, StoreError>,
        out: &mut Vec<Effect>,
    ) {
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                // D6: answer with an error and keep nothing, so nothing is overwritten.
                tracing::error!(user = %self.user, error = %e, "cannot read push registrations");
                self.state = State::Failed;
                return;
            }
        };
        let mut regs = Vec::with_capacity(rows.len());
        for (identifier, record) in rows {
            match Registration::from_record(identifier, record) {
                Ok(r) => regs.push(r),
                Err(e) => {
                    tracing::error!(user = %self.user, error = %e, "unusable stored registration");
                    self.state = State::Failed;
                    return;
                }
            }
        }
        let (set, extra) = RegistrationSet::from_rows(regs, self.cfg.push_max_devices);
        self.state = State::Loaded(set);
        if extra.is_empty() {
            return;
        }
        tracing::info!(user = %self.user, count = extra.len(), "more registrations stored than push_max_devices: oldest evicted");
        let mut changes = Vec::with_capacity(2 * extra.len());
        for r in &extra {
            changes.push(self.delete(&r.identifier));
            changes.push(self.log_removal(c, &r.record, RemovalReason::Evicted));
        }
        self.write(changes, true, out);
    }

    /// Room for one more request awaiting its write.
    fn room(&self) -> bool {
        self.pending.len() < MAX_PENDING_REQUESTS
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn enable(
        &mut self,
        c: Clock,
        request: RequestId,
        session: SessionId,
        jid: FullJid,
        iq_id: String,
        req: EnableRequest,
        out: &mut Vec<Effect>,
    ) {
        let Some(set) = self.registrations().filter(|_| self.room()) else {
            out.push(reply(request, Reply::Iq(internal_error(&iq_id, &jid))));
            return;
        };
        if !self.sessions.contains_key(&session) && self.sessions.len() >= MAX_LINKED_SESSIONS {
            tracing::warn!(user = %self.user, limit = MAX_LINKED_SESSIONS, "too many push-linked sessions; enable refused");
            let refused = protocol::error_reply(
                &iq_id,
                &jid,
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                Some("Too many sessions"),
            );
            out.push(reply(request, Reply::Iq(refused)));
            return;
        }
        let named = req.extensions.as_ref().map_or(0, |e| {
            e.muted.len() + e.groupchat.as_ref().map_or(0, |rooms| rooms.len())
        });
        if named > self.cfg.push_max_filter_jids {
            tracing::info!(user = %self.user, named, limit = self.cfg.push_max_filter_jids, "enable refused: push_max_filter_jids");
            let refused = protocol::error_reply(
                &iq_id,
                &jid,
                ErrorType::Modify,
                DefinedCondition::NotAcceptable,
                Some(TOO_MANY_FILTER_JIDS),
            );
            out.push(reply(request, Reply::Iq(refused)));
            return;
        }
        let identifier = registration::identifier(&req.jid, req.node.as_deref());
        let record = RegistrationRecord {
            jid: req.jid.to_string(),
            node: req.node,
            publish_options: req.publish_options,
            enabled_at_us: set.next_enabled_at(c.wall_us),
            client: jid.resource().to_string(),
            language: req.language,
            // D5: a re-enable starts the registration's error count afresh.
            error_count: 0,
            last_success: None,
            last_error: None,
            last_timeout: None,
            // A re-enable without an extension turns it off (the spec's way to disable
            // encryption), so the new record takes only what this enable says.
            extensions: req.extensions.map(Box::new),
            last_s2s_failure: None,
        };
        let reg = match Registration::from_record(identifier.clone(), record) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(user = %self.user, error = %e, "enable refused");
                let bad = error(
                    &iq_id,
                    &jid,
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                );
                out.push(reply(request, Reply::Iq(bad)));
                return;
            }
        };
        let evicted = set
            .would_evict(&identifier, self.cfg.push_max_devices)
            .map(|r| (r.identifier.clone(), r.record.clone()));
        // Pending ledger writes go first, so the new record and the eviction win.
        let mut changes = self.record_changes();
        changes.push(self.put(&reg));
        if let Some((old, record)) = evicted {
            changes.push(self.delete(&old));
            changes.push(self.log_removal(c, &record, RemovalReason::Evicted));
        }
        self.await_write(request, changes, out);
        let reg = Box::new(reg);
        self.pending.insert(
            request,
            Pending::Enable {
                session,
                jid,
                iq_id,
                reg,
            },
        );
    }

    pub(super) fn disable(
        &mut self,
        c: Clock,
        request: RequestId,
        jid: FullJid,
        iq_id: String,
        req: DisableRequest,
        out: &mut Vec<Effect>,
    ) {
        let Some(set) = self.registrations().filter(|_| self.room()) else {
            out.push(reply(request, Reply::Iq(internal_error(&iq_id, &jid))));
            return;
        };
        let doomed: Vec<(String, RegistrationRecord)> = set
            .iter()
            .filter(|r| r.jid == req.jid && req.node.matches(r.node()))
            .map(|r| (r.identifier.clone(), r.record.clone()))
            .collect();
        if doomed.is_empty() {
            let done = protocol::result_reply(&iq_id, &jid);
            out.push(reply(request, Reply::Iq(done)));
            return;
        }
        let by = jid.resource().to_string();
        let mut changes = Vec::with_capacity(2 * doomed.len());
        for (identifier, record) in &doomed {
            changes.push(self.delete(identifier));
            let reason = RemovalReason::Disabled { by: by.clone() };
            changes.push(self.log_removal(c, record, reason));
        }
        self.await_write(request, changes, out);
        let doomed = doomed.into_iter().map(|(id, _)| id).collect();
        self.pending
            .insert(request, Pending::Disable { jid, iq_id, doomed });
    }

    pub(super) fn remove(
        &mut self,
        c: Clock,
        request: RequestId,
        selector: &Selector,
        out: &mut Vec<Effect>,
    ) {
        let doomed = match self.select(selector, true) {
            Ok(_) if !self.room() => Err(AdminPushError::Busy),
            other => other,
        };
        let doomed = match doomed {
            Ok(d) => d,
            Err(e) => {
                out.push(reply(request, Reply::Removed(Err(e))));
                return;
            }
        };
        let mut removed = Vec::new();
        let mut changes = Vec::new();
        if let State::Loaded(set) = &self.state {
            for identifier in &doomed {
                if let Some(r) = set.get(identifier) {
                    removed.push(RegistrationView::new(&r.record));
                    changes.push(self.delete(identifier));
                    changes.push(self.log_removal(c, &r.record, RemovalReason::Admin));
                }
            }
        }
        self.await_write(request, changes, out);
        self.pending
            .insert(request, Pending::Remove { doomed, removed });
    }

    /// The store answered the write of `request`: apply it and reply.
    pub(super) fn written(
        &mut self,
        c: Clock,
        request: RequestId,
        result: Result<(), StoreError>,
        out: &mut Vec<Effect>,
    ) {
        let Some(pending) = self.pending.remove(&request) else {
            return;
        };
        if let Err(e) = &result {
            tracing::error!(user = %self.user, error = %e, "push request not stored");
        }
        let answer = match pending {
            Pending::Enable {
                session,
                jid,
                iq_id,
                reg,
            } => Reply::Iq(match result {
                Ok(()) => self.enabled(c, session, &jid, &iq_id, *reg, out),
                Err(_) => internal_error(&iq_id, &jid),
            }),
            Pending::Disable { jid, iq_id, doomed } => Reply::Iq(match result {
                Ok(()) => {
                    for identifier in &doomed {
                        tracing::info!(user = %self.user, registration = %identifier, "push disabled");
                        self.forget_registration(c, identifier, out);
                    }
                    protocol::result_reply(&iq_id, &jid)
                }
                Err(_) => internal_error(&iq_id, &jid),
            }),
            Pending::Remove { doomed, removed } => Reply::Removed(match result {
                Ok(()) => {
                    for identifier in &doomed {
                        tracing::info!(user = %self.user, registration = %identifier, "push registration removed by the admin");
                        self.forget_registration(c, identifier, out);
                    }
                    Ok(removed)
                }
                Err(e) => Err(e.into()),
            }),
        };
        out.push(reply(request, answer));
    }

    /// The enable is durable: the registration goes into memory and the session links to
    /// it.
    fn enabled(
        &mut self,
        c: Clock,
        session: SessionId,
        jid: &FullJid,
        iq_id: &str,
        reg: Registration,
        out: &mut Vec<Effect>,
    ) -> Element {
        let max = self.cfg.push_max_devices;
        let identifier = reg.identifier.clone();
        let State::Loaded(set) = &mut self.state else {
            return internal_error(iq_id, jid);
        };
        if let Some(old) = set.upsert(reg, max) {
            tracing::info!(user = %self.user, evicted = %old.identifier, "push_max_devices reached: registration enabled longest ago evicted");
            self.forget_registration(c, &old.identifier, out);
        }
        tracing::info!(user = %self.user, registration = %identifier, client = %jid.resource(), "push enabled");
        let link = self.sessions.entry(session).or_default();
        link.identifier = Some(identifier);
        if let Some(h) = &mut link.hibernation {
            h.cut_back = false;
        }
        protocol::result_reply(iq_id, jid)
    }

    /// Removes a registration from memory, unlinks every session linked to it (D8) and
    /// stops tracking its publishes. A hibernated session whose extended timer the module
    /// holds goes back to its normal timeout, counted from now (§9.1).
    pub(super) fn forget_registration(
        &mut self,
        c: Clock,
        identifier: &str,
        out: &mut Vec<Effect>,
    ) {
        if let State::Loaded(set) = &mut self.state {
            set.remove(identifier);
        }
        self.dirty.remove(identifier);
        for id in self.outstanding.of(identifier) {
            if let Some(p) = self.outstanding.remove(&id) {
                out.push(Effect::Cancel(Timer::Response(id.clone())));
                out.push(Effect::Metric(Metric::Pending(-1)));
                if p.watched {
                    out.push(Effect::Ended {
                        id,
                        outcome: crate::push::interface::TestOutcome::Gone,
                        round_trip: None,
                    });
                }
            }
        }
        for (sid, link) in &mut self.sessions {
            if link.identifier.as_deref() != Some(identifier) {
                continue;
            }
            link.identifier = None;
            link.window.reset();
            if let Some(h) = &link.hibernation {
                out.push(Effect::Arm {
                    timer: Timer::Hibernation(*sid),
                    at: c.now + h.normal_timeout,
                });
            }
        }
    }

    // ------------------------------------------------------------------ store changes

    /// The records whose ledger changed since the last write, to write now.
    pub(super) fn record_changes(&mut self) -> Vec<Change> {
        let Some(set) = self.registrations() else {
            return Vec::new();
        };
        let changes = self
            .dirty
            .iter()
            .filter_map(|id| set.get(id))
            .map(|r| self.put(r))
            .collect();
        self.dirty.clear();
        changes
    }

    /// A write nothing waits for (ledger updates, evictions at load): a failure is
    /// logged and changes no answer already given. Pending ledger changes go first, so
    /// the explicit ones win.
    pub(super) fn write(&mut self, mut changes: Vec<Change>, durable: bool, out: &mut Vec<Effect>) {
        let mut all = self.record_changes();
        all.append(&mut changes);
        if !all.is_empty() {
            out.push(Effect::Write {
                changes: all,
                durable,
                request: None,
            });
        }
    }

    fn await_write(&self, request: RequestId, changes: Vec<Change>, out: &mut Vec<Effect>) {
        out.push(Effect::Write {
            changes,
            durable: true,
            request: Some(request),
        });
    }

    pub(super) fn put(&self, reg: &Registration) -> Change {
        Change::PutRegistration {
            user: self.user.clone(),
            identifier: reg.identifier.clone(),
            record: reg.record.clone(),
        }
    }

    pub(super) fn delete(&self, identifier: &str) -> Change {
        Change::DeleteRegistration {
            user: self.user.clone(),
            identifier: identifier.to_string(),
        }
    }

    /// The removal log's entry for a registration going now (written with its delete).
    pub(super) fn log_removal(
        &self,
        c: Clock,
        record: &RegistrationRecord,
        reason: RemovalReason,
    ) -> Change {
        Change::LogRemoval {
            user: self.user.clone(),
            at_us: c.wall_us,
            record: RemovalRecord::new(record, reason),
        }
    }
}
