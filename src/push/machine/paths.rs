//! The paths a stanza takes to a publish: offline and archive (§8.1, §8.2, §8.7) to
//! whole sets of registrations, the smacks paths (§8.3, §8.5, §8.6) to one session's
//! registration through its batch window (D20) and marks (D13).

use std::collections::HashSet;

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::batch::{Batch, Candidate};
use super::clock::Clock;
use super::effect::{Effect, Metric};
use super::event::Timer;
use super::outstanding::Publish;
use super::state::PushMachine;
use crate::push::interface::{QueuedStanza, SessionId, StanzaKey};
use crate::push::publish::{self, Summary};
use crate::push::registration::Registration;
use crate::push::rules::{self, Path};
use crate::push::tigase::filters;

impl PushMachine {
    /// The registration's Tigase filters keep this stanza from it.
    fn filtered(&self, reg: &Registration, summary: &Summary) -> bool {
        let (Some(ext), Some(notice)) =
            (reg.record.extensions.as_deref(), summary.notice.as_deref())
        else {
            return false;
        };
        // Only asked when it matters; the user's own JID is always known to them.
        let contact = match (notice.from_bare.as_deref(), &self.contacts) {
            (Some(from), _) if from == self.user_jid.as_str() => Some(true),
            (Some(from), Some(contacts)) => Some(contacts.contains(from)),
            _ => None,
        };
        !filters::allows(ext, notice, contact)
    }
}

impl PushMachine {
    /// Sends one publish to one registration; its id, `None` when there is no such
    /// registration.
    pub(super) fn publish(
        &mut self,
        c: Clock,
        identifier: &str,
        summary: &Summary,
        out: &mut Vec<Effect>,
    ) -> Option<String> {
        let reg = self.registrations().and_then(|s| s.get(identifier))?;
        if self.filtered(reg, summary) {
            tracing::debug!(user = %self.user, registration = %identifier, "filtered by the registration (muted, groupchat or ignore-unknown): no publish");
            return None;
        }
        let id = publish::new_publish_id(self.route);
        let xml = publish::publish_xml(&self.cfg.domain, reg, summary, &id);
        let to = reg.jid.clone();
        tracing::debug!(user = %self.user, registration = %identifier, %to, id = %id, body = summary.body_kind(&self.cfg), "publish sent");
        out.push(Effect::Publish {
            to,
            xml,
            id: id.clone(),
        });
        let max = self.cfg.push_max_pending_publishes;
        if let Some(oldest) = self.outstanding.oldest_if_full(max) {
            // Past the bound the oldest publish is given up on, as at its timeout (D10).
            tracing::debug!(user = %self.user, "pending publishes full: oldest treated as unanswered");
            self.response_timed_out(c, oldest, out);
        }
        out.push(Effect::Arm {
            timer: Timer::Response(id.clone()),
            at: c.now + self.cfg.push_response_timeout,
        });
        let sent = Publish {
            identifier: identifier.to_string(),
            sent_at: c.now,
            mark: None,
            watched: false,
            s2s_failure: None,
        };
        self.outstanding.insert(id.clone(), sent, max);
        out.push(Effect::Metric(Metric::Pending(1)));
        Some(id)
    }

    /// Paths A and B: every registration, once per stanza (§8.1, §8.2).
    pub(super) fn offline(
        &mut self,
        c: Clock,
        stanza: &Element,
        key: Option<StanzaKey>,
        out: &mut Vec<Effect>,
    ) {
        if !rules::wakes(stanza, Path::Offline, self.cfg.push_notify_on) {
            return;
        }
        let summary = self.summary(stanza, rules::is_important(stanza), None);
        for identifier in self.all_identifiers() {
            // Only read the marks: a keyed offline message comes from a session being
            // destroyed, so no later path can take it, and inserting here would evict the
            // marks of stanzas not yet handled.
            let already = key.is_some_and(|k| {
                self.sessions
                    .get(&k.session)
                    .is_some_and(|l| l.marks.contains(k.seq, &identifier))
            });
            if !already {
                self.publish(c, &identifier, &summary, out);
            }
        }
    }

    /// Path C (§8.7): registrations no current session is linked to; every registration
    /// for a call (urgent). With `all_away` (every online session is away or xa), also
    /// the registrations that enabled `tigase:push:away:0` whose session is connected:
    /// a device left away may not be looking at the message it was just delivered.
    pub(super) fn archived(
        &mut self,
        c: Clock,
        stanza: &Element,
        all_away: bool,
        out: &mut Vec<Effect>,
    ) {
        if !rules::wakes(stanza, Path::Archive, self.cfg.push_notify_on) {
            return;
        }
        // D15: the user's own outgoing messages are archived too; compare bare JIDs.
        let to_user = match stanza.attr("to").map(crate::jid::parse::<Jid>) {
            None => true,
            Some(Some(to)) => to.to_bare() == self.user_jid,
            Some(None) => false,
        };
        let urgent = rules::is_urgent(stanza);
        // D17: a call answered or refused on one of the user's devices is archived as
        // the user's outgoing message; the other devices must hear of it to stop ringing.
        let from = stanza.attr("from").and_then(crate::jid::parse::<Jid>);
        let from_user = from.as_ref().is_some_and(|f| f.to_bare() == self.user_jid);
        if !(to_user || (urgent && from_user)) {
            return;
        }
        // The device that answered is the one registration that need not hear of it: the
        // linked registration its resource enabled.
        let answering = from
            .as_ref()
            .filter(|_| from_user && !to_user)
            .and_then(|f| f.resource())
            .map(|r| r.to_string());
        let summary = self.summary(stanza, rules::is_important(stanza), None);
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
        let away_wanted: HashSet<&str> = if all_away {
            self.registrations()
                .map(|set| {
                    set.iter()
                        .filter(|r| r.record.extensions.as_deref().is_some_and(|e| e.away))
                        .map(|r| r.identifier.as_str())
                        .collect()
                })
                .unwrap_or_default()
        } else {
            HashSet::new()
        };
        let answered_here: Option<&str> = answering.as_deref().and_then(|resource| {
            self.registrations()?
                .iter()
                .find(|r| r.record.client == resource && linked.contains(r.identifier.as_str()))
                .map(|r| r.identifier.as_str())
        });
        let ids: Vec<String> = self
            .all_identifiers()
            .into_iter()
            .filter(|id| {
                let id = id.as_str();
                if answered_here == Some(id) {
                    return false;
                }
                if urgent || away_wanted.contains(id) {
                    !hibernating.contains(id)
                } else {
                    !linked.contains(id)
                }
            })
            .collect();
        for identifier in ids {
            self.publish(c, &identifier, &summary, out);
        }
    }

    pub(super) fn all_identifiers(&self) -> Vec<String> {
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
    fn candidate(&self, session: SessionId, qs: &QueuedStanza, important: bool) -> Candidate {
        let identifier = self
            .sessions
            .get(&session)
            .and_then(|l| l.identifier.as_deref());
        Candidate {
            seq: qs.key.seq,
            important,
            summary: self.summary(&qs.stanza, important, Some(identifier)),
        }
    }

    /// The summary of `stanza` for the registration `only` names (`None`: for every
    /// registration), with what the Tigase extensions need when one of them enabled any.
    fn summary(&self, stanza: &Element, important: bool, only: Option<Option<&str>>) -> Summary {
        let summary = Summary::of(Some(stanza), important, &self.cfg);
        let extended = self.registrations().is_some_and(|set| {
            set.iter()
                .filter(|r| only.is_none_or(|id| id == Some(r.identifier.as_str())))
                .any(|r| r.record.extensions.is_some())
        });
        if extended {
            summary.with_notice(Some(stanza), important, &self.cfg)
        } else {
            summary
        }
    }

    /// §8.3 step 3: the queue a session hibernates with gives at most one important and
    /// one unimportant publish, at once.
    pub(super) fn publish_queue_at_hibernation(
        &mut self,
        c: Clock,
        session: SessionId,
        queue: &[QueuedStanza],
        out: &mut Vec<Effect>,
    ) {
        let mut batch = Batch::default();
        for (qs, important) in self.wakeable(session, queue) {
            if batch.wants(important) {
                batch.offer(self.candidate(session, qs, important));
            }
        }
        self.publish_candidates(c, session, batch.take(), out);
    }

    /// §8.5 and §8.6 with D20: each stanza passes through the session's leading-edge
    /// window, and what it admits publishes at once.
    pub(super) fn publish_through_window(
        &mut self,
        c: Clock,
        session: SessionId,
        stanzas: &[QueuedStanza],
        out: &mut Vec<Effect>,
    ) {
        let wakeable = self.wakeable(session, stanzas);
        let length = self.cfg.push_batch_window;
        let Some(link) = self.sessions.get_mut(&session) else {
            return;
        };
        let admitted: Vec<(&QueuedStanza, bool)> = wakeable
            .into_iter()
            .filter(|(_, important)| link.window.admit(c.now, length, *important))
            .collect();
        let candidates = admitted
            .into_iter()
            .map(|(qs, important)| self.candidate(session, qs, important))
            .collect();
        self.publish_candidates(c, session, candidates, out);
    }

    /// Publishes for the session's registration and marks each stanza pushed (D13); an
    /// important publish during hibernation cuts the extended timer back to the normal
    /// timeout (§8.3 step 4).
    fn publish_candidates(
        &mut self,
        c: Clock,
        session: SessionId,
        candidates: Vec<Candidate>,
        out: &mut Vec<Effect>,
    ) {
        let Some(identifier) = self
            .sessions
            .get(&session)
            .and_then(|l| l.identifier.clone())
        else {
            return;
        };
        let mut important_sent = false;
        for cand in candidates {
            let Some(id) = self.publish(c, &identifier, &cand.summary, out) else {
                continue;
            };
            if let Some(link) = self.sessions.get_mut(&session) {
                link.marks.insert(cand.seq, &identifier);
            }
            if let Some(p) = self.outstanding.get_mut(&id) {
                p.mark = Some(StanzaKey {
                    session,
                    seq: cand.seq,
                });
            }
            important_sent |= cand.important;
        }
        if important_sent {
            self.cut_back(c, session, out);
        }
    }
}
