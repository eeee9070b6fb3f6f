//! What an app server's answer, or its absence, does to a registration: the health
//! ledger, the error count and the removal at `push_max_errors` (§9.1, D5, D10, D11);
//! and what our own failure to reach its domain does (D21): a ledger note, nothing more.

use super::clock::Clock;
use super::effect::{Effect, Metric};
use super::event::Timer;
use super::state::{PushMachine, State};
use crate::metrics::PublishOutcome;
use crate::push::interface::{PublishUndelivered, TestOutcome};
use crate::push::publish::{Outcome, Response};
use crate::store::ledger::RemovalReason;
use crate::store::{ErrorNote, S2sFailureNote, note_text};

impl PushMachine {
    /// The app server's domain of a registration, for the metrics.
    fn app_server_of(&self, identifier: &str) -> Option<String> {
        self.registrations()
            .and_then(|s| s.get(identifier))
            .map(|r| r.jid.domain().to_string())
    }

    /// D10: no answer in time (or given up on to make room); recorded in the ledger,
    /// never counted as an error. A publish our server-to-server layer failed to
    /// deliver ends as that failure instead (D21), already in the ledger.
    pub(super) fn response_timed_out(&mut self, c: Clock, id: String, out: &mut Vec<Effect>) {
        let Some(mut p) = self.outstanding.remove(&id) else {
            return;
        };
        if let Some((condition, reason)) = p.s2s_failure.take() {
            return self.end_undelivered(id, p, condition, reason, out);
        }
        self.ended_unanswered(&id, &p, PublishOutcome::Timeout, out);
        tracing::debug!(user = %self.user, registration = %p.identifier, id = %id, "publish unanswered within push_response_timeout");
        if p.watched {
            out.push(Effect::Ended {
                id,
                outcome: TestOutcome::Timeout,
                round_trip: None,
            });
        }
        if let State::Loaded(set) = &mut self.state
            && let Some(reg) = set.get_mut(&p.identifier)
        {
            reg.record.last_timeout = Some(c.wall_secs());
            self.dirty.insert(p.identifier);
        }
    }

    /// D21: our server-to-server layer could not deliver a publish to the app server's
    /// domain. The reason goes into the registration's ledger; nothing is counted
    /// towards `push_max_errors`. A publish the layer gave up on ends now; one it holds
    /// for a retry stays awaited (the app server may still answer it), and ends as this
    /// failure if no answer comes.
    pub(super) fn undelivered(&mut self, c: Clock, u: PublishUndelivered, out: &mut Vec<Effect>) {
        let PublishUndelivered {
            id,
            condition,
            reason,
            given_up,
        } = u;
        let Some(p) = self.outstanding.get_mut(&id) else {
            tracing::debug!(user = %self.user, %id, "undelivered publish no longer awaited");
            return;
        };
        let identifier = p.identifier.clone();
        tracing::debug!(user = %self.user, registration = %identifier, %condition, %reason, given_up, "publish not delivered to the app server's domain");
        if let State::Loaded(set) = &mut self.state
            && let Some(reg) = set.get_mut(&identifier)
        {
            reg.record.last_s2s_failure = Some(S2sFailureNote {
                at: c.wall_secs(),
                condition: condition.clone(),
                reason: note_text(&reason),
            });
            self.dirty.insert(identifier);
        }
        if !given_up {
            p.s2s_failure = Some((condition, reason));
            return;
        }
        if let Some(p) = self.outstanding.remove(&id) {
            self.end_undelivered(id, p, condition, reason, out);
        }
    }

    /// A publish ended without an answer: its timer, the pending count, the outcome.
    fn ended_unanswered(
        &self,
        id: &str,
        p: &super::outstanding::Publish,
        outcome: PublishOutcome,
        out: &mut Vec<Effect>,
    ) {
        out.push(Effect::Cancel(Timer::Response(id.to_string())));
        out.push(Effect::Metric(Metric::Pending(-1)));
        if let Some(app_server) = self.app_server_of(&p.identifier) {
            out.push(Effect::Metric(Metric::PublishEnded {
                app_server,
                outcome,
                latency: None,
            }));
        }
    }

    /// A publish ends as our server-to-server failure (D21).
    fn end_undelivered(
        &mut self,
        id: String,
        p: super::outstanding::Publish,
        condition: String,
        reason: String,
        out: &mut Vec<Effect>,
    ) {
        self.ended_unanswered(&id, &p, PublishOutcome::S2sFailure, out);
        if p.watched {
            out.push(Effect::Ended {
                id,
                outcome: TestOutcome::Undelivered { condition, reason },
                round_trip: None,
            });
        }
    }

    /// The host could not hand the publish over: nothing will answer it, and the stanza
    /// it was for may publish on a later path. (A hibernation it cut back stays cut back:
    /// the session then ends sooner and its messages go the offline path.)
    pub(super) fn not_routed(&mut self, id: &str, out: &mut Vec<Effect>) {
        let Some(p) = self.outstanding.remove(id) else {
            return;
        };
        if let Some(key) = p.mark
            && let Some(link) = self.sessions.get_mut(&key.session)
        {
            link.marks.remove(key.seq, &p.identifier);
        }
        tracing::warn!(user = %self.user, registration = %p.identifier, "publish not routed: host queue unavailable");
        out.push(Effect::Cancel(Timer::Response(id.to_string())));
        out.push(Effect::Metric(Metric::Pending(-1)));
        if p.watched {
            out.push(Effect::Ended {
                id: id.to_string(),
                outcome: TestOutcome::NotSent,
                round_trip: None,
            });
        }
    }

    pub(super) fn response(&mut self, c: Clock, resp: Response, out: &mut Vec<Effect>) {
        let Some(identifier) = self.outstanding_identifier(&resp.id) else {
            tracing::debug!(user = %self.user, id = %resp.id, "answer to an unknown publish ignored");
            return;
        };
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
        if let Some(p) = self.outstanding.remove(&resp.id) {
            out.push(Effect::Cancel(Timer::Response(resp.id.clone())));
            out.push(Effect::Metric(Metric::Pending(-1)));
            let latency = c.now.saturating_duration_since(p.sent_at);
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
            out.push(Effect::Metric(Metric::PublishEnded {
                app_server: reg.jid.domain().to_string(),
                outcome: kind,
                latency: Some(latency),
            }));
            if p.watched {
                out.push(Effect::Ended {
                    id: resp.id.clone(),
                    outcome: test,
                    round_trip: Some(latency),
                });
            }
        }
        let counts = resp.outcome.counts_as_error();
        match resp.outcome {
            Outcome::Success => {
                reg.record.last_success = Some(c.wall_secs());
                if reg.record.error_count > 0 {
                    reg.record.error_count = 0;
                    let change = self.put_of(&identifier);
                    self.write(change.into_iter().collect(), true, out);
                } else {
                    self.dirty.insert(identifier);
                }
            }
            Outcome::Error {
                error_type,
                condition,
                text,
            } => {
                tracing::debug!(user = %self.user, registration = %identifier, %error_type, %condition, "app server answered with an error");
                reg.record.last_error = Some(ErrorNote {
                    at: c.wall_secs(),
                    error_type,
                    condition,
                    text: text.as_deref().map(note_text),
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
                        self.delete(&identifier),
                        self.log_removal(c, &record, reason),
                    ];
                    self.forget_registration(c, &identifier, out);
                    self.write(changes, true, out);
                } else {
                    let change = self.put_of(&identifier);
                    self.write(change.into_iter().collect(), true, out);
                }
            }
        }
    }

    fn outstanding_identifier(&mut self, id: &str) -> Option<String> {
        self.outstanding.get_mut(id).map(|p| p.identifier.clone())
    }

    /// The stored form of a registration as it is now.
    fn put_of(&self, identifier: &str) -> Option<crate::store::Change> {
        self.registrations()
            .and_then(|s| s.get(identifier))
            .map(|r| self.put(r))
    }
}
