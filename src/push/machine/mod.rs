//! The push module's decisions for one user, as a state machine: [`Event`]s in,
//! [`Effect`]s out. It does no I/O, holds no actor and reads no clock: the host hands it
//! the time ([`Clock`]) with every event and executes what comes back. A host keeps one
//! `PushMachine` per user with live push state, inside the actor (or task) that owns
//! that user, and feeds it every event in the order they happen.
//!
//! What the machine owns: the user's registrations (at most `push_max_devices`, D4), the
//! links of sessions to them, the hibernations it holds (D14, §8.3), the D20 windows, the
//! D13 marks, the error counts and health ledger (D5, D10) and the publishes awaiting an
//! answer. What the host owns: delivering publishes, timers, the store, the sessions.
//!
//! The host's contract:
//!
//! - Start with [`PushMachine::new`], then feed [`Event::Loaded`] with the user's stored
//!   registrations before any other event.
//! - Execute effects in order. [`Effect::Arm`] replaces a timer of the same name and
//!   [`Effect::Cancel`] forgets one; when an armed timer is due, feed
//!   [`Event::TimerFired`].
//! - A [`Effect::Write`] with a request is awaited: feed [`Event::Written`] with the
//!   store's answer; only then does the [`Reply`] come. Hold the user's other events
//!   until then, so each request decides from the state the previous one left.
//! - When a [`Effect::Publish`] cannot be delivered, feed [`Event::NotRouted`].
//!
//! A host loop, in outline: a store that always succeeds, timers in a map, and time that
//! jumps to the next timer when nothing else happens (as a paused clock would):
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//!
//! use cloud_notify::config::Config;
//! use cloud_notify::push::SessionId;
//! use cloud_notify::push::machine::{Clock, Effect, Event, PushMachine, RequestId, Timer};
//! use cloud_notify::push::protocol::EnableRequest;
//!
//! let cfg = Arc::new(Config { domain: "example.com".into(), ..Config::default() });
//! let hold = cfg.push_max_hibernation_timeout;
//! let mut m = PushMachine::new("juliet".into(), "juliet@example.com".parse()?, cfg, 1);
//! let mut clock = Clock { now: Instant::now(), wall_us: 1_700_000_000_000_000 };
//! let start = clock.now;
//! let mut timers: HashMap<Timer, Instant> = HashMap::new();
//! let mut events = vec![
//!     Event::Loaded(Ok(Vec::new())), // what the store holds for juliet
//!     Event::Enable {
//!         request: RequestId(1),
//!         session: SessionId(1),
//!         jid: "juliet@example.com/phone".parse()?,
//!         iq_id: "e1".into(),
//!         req: EnableRequest {
//!             jid: "push.example.net".parse()?,
//!             node: Some("n1".into()),
//!             publish_options: None,
//!             extensions: None,
//!             language: None,
//!         },
//!     },
//!     Event::Hibernated {
//!         request: RequestId(2),
//!         session: SessionId(1),
//!         normal_timeout: Duration::from_secs(300),
//!         queue: Vec::new(),
//!     },
//! ];
//! let mut expired = Vec::new();
//! loop {
//!     let event = if !events.is_empty() {
//!         events.remove(0)
//!     } else if let Some((timer, at)) = timers.iter().min_by_key(|(_, at)| **at) {
//!         let (timer, at) = (timer.clone(), *at);
//!         timers.remove(&timer);
//!         clock.now = at;
//!         Event::TimerFired(timer)
//!     } else {
//!         break;
//!     };
//!     for effect in m.handle(clock, event) {
//!         match effect {
//!             // The store answers at once; the reply to the enable follows from it.
//!             Effect::Write { request: Some(request), .. } => {
//!                 events.insert(0, Event::Written { request, result: Ok(()) })
//!             }
//!             Effect::Arm { timer, at } => {
//!                 timers.insert(timer, at);
//!             }
//!             Effect::Cancel(timer) => {
//!                 timers.remove(&timer);
//!             }
//!             Effect::Expire(session) => expired.push((session, clock.now)),
//!             // Publishes, replies, background writes, metrics: the host's own business.
//!             _ => {}
//!         }
//!     }
//! }
//! // The linked session was held for push_max_hibernation_timeout, not the host's 300 s.
//! assert_eq!(expired, [(SessionId(1), start + hold)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod admin;
mod batch;
mod clock;
mod contacts;
mod effect;
mod event;
mod hibernation;
mod link;
mod marks;
mod outstanding;
mod paths;
mod pending;
mod requests;
mod responses;
mod state;
#[cfg(test)]
mod tests;
mod window;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use xmpp_parsers::jid::BareJid;

pub use clock::Clock;
pub use effect::{Effect, Metric, Reply, TestTarget};
pub use event::{Event, RequestId, Timer};
pub use state::{MAX_LINKED_SESSIONS, MAX_PENDING_REQUESTS, PushMachine};

use self::contacts::Contacts;
use self::outstanding::Outstanding;
use self::state::State;
use super::interface::{SessionId, UserStats};
use super::registration::{Registration, RegistrationSet};
use crate::config::Config;

impl PushMachine {
    /// The machine of `user` (its local part; `user_jid` is its bare JID). `route` goes
    /// into every publish id ([`publish::route_of`](crate::push::publish::route_of)
    /// reads it back from an answer).
    pub fn new(user: String, user_jid: BareJid, cfg: Arc<Config>, route: u64) -> PushMachine {
        PushMachine {
            user,
            user_jid,
            cfg,
            route,
            state: State::Loading,
            sessions: HashMap::new(),
            outstanding: Outstanding::default(),
            dirty: HashSet::new(),
            pending: HashMap::new(),
            contacts: None,
        }
    }

    /// The configuration from the next event on (a host that reloads its configuration
    /// hands the new one): each limit applies at the next decision it takes part in;
    /// nothing already held is judged again.
    pub fn set_config(&mut self, cfg: Arc<Config>) {
        self.cfg = cfg;
    }

    /// Takes one event at `clock`; returns what the host must do, in order.
    pub fn handle(&mut self, clock: Clock, event: Event) -> Vec<Effect> {
        let mut out = Vec::new();
        self.step(clock, event, &mut out);
        out
    }

    fn step(&mut self, c: Clock, event: Event, out: &mut Vec<Effect>) {
        match event {
            Event::Loaded(rows) => self.loaded(c, rows, out),
            Event::Enable {
                request,
                session,
                jid,
                iq_id,
                req,
            } => self.enable(c, request, session, jid, iq_id, req, out),
            Event::Disable {
                request,
                jid,
                iq_id,
                req,
            } => self.disable(c, request, jid, iq_id, req, out),
            Event::Remove { request, selector } => self.remove(c, request, &selector, out),
            Event::TestPush { request, selector } => self.test_push(request, &selector, c, out),
            Event::Written { request, result } => self.written(c, request, result, out),
            Event::Hibernated {
                request,
                session,
                normal_timeout,
                queue,
            } => {
                let owner = self.hibernated(c, session, normal_timeout, &queue, out);
                out.push(Effect::Reply {
                    request,
                    reply: Reply::TimerOwner(owner),
                });
            }
            Event::StanzaQueued(qs) => {
                let session = qs.key.session;
                if self
                    .sessions
                    .get(&session)
                    .is_some_and(|l| l.hibernation.is_some())
                {
                    self.publish_through_window(c, session, std::slice::from_ref(&qs), out);
                }
            }
            Event::AckOverdue { session, queue } => {
                self.prune_marks(session, &queue);
                self.publish_through_window(c, session, &queue, out);
            }
            Event::Resumed { session, acked } => self.resumed(session, acked, out),
            Event::Closed { session } => {
                if let Some(link) = self.sessions.remove(&session)
                    && link.hibernation.is_some()
                {
                    out.push(Effect::Cancel(Timer::Hibernation(session)));
                }
            }
            Event::Offline { stanza, key } => self.offline(c, &stanza, key, out),
            Event::Archived {
                stanza,
                user_has_sessions,
                all_away,
            } => {
                if user_has_sessions {
                    self.archived(c, &stanza, all_away, out)
                }
            }
            Event::Response(resp) => self.response(c, resp, out),
            Event::NotRouted { id } => self.not_routed(&id, out),
            Event::Undelivered(u) => self.undelivered(c, u, out),
            Event::Ping => {
                for id in self.all_identifiers() {
                    self.publish(c, &id, &Default::default(), out);
                }
            }
            Event::TimerFired(Timer::Hibernation(session)) => self.expire(session, out),
            Event::TimerFired(Timer::Response(id)) => self.response_timed_out(c, id, out),
            Event::Unload { flush } => self.unload(flush, out),
            Event::Contacts(jids) => {
                self.contacts = Some(Contacts::new(jids, self.cfg.roster_max_items));
            }
            Event::Contact { jid, contact } => {
                let max = self.cfg.roster_max_items;
                if let Some(c) = self.contacts.as_mut() {
                    c.set(&jid, contact, max);
                }
            }
        }
    }

    fn registrations(&self) -> Option<&RegistrationSet> {
        match &self.state {
            State::Loaded(set) => Some(set),
            _ => None,
        }
    }

    /// A registration filters unknown senders (`tigase:push:filter:ignore-unknown:0`)
    /// and the machine has not been told the user's contacts: the host should read the
    /// roster and feed [`Event::Contacts`] before the next stanza.
    pub fn wants_contacts(&self) -> bool {
        self.contacts.is_none()
            && self.registrations().is_some_and(|set| {
                set.iter().any(|r| {
                    r.record
                        .extensions
                        .as_deref()
                        .is_some_and(|e| e.ignore_unknown)
                })
            })
    }

    /// The machine holds the user's contacts: the host should feed every roster change
    /// as an [`Event::Contact`].
    pub fn knows_contacts(&self) -> bool {
        self.contacts.is_some()
    }

    /// The stored registrations could not be read: the host should drop this machine
    /// after answering, so the next request reads them again.
    pub fn load_failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    /// Nothing is linked and no answer is awaited: the host may unload the user (after
    /// an [`Event::Unload`]).
    pub fn is_idle(&self) -> bool {
        self.sessions.is_empty() && self.outstanding.is_empty() && self.pending.is_empty()
    }

    /// Whether `session` has a link (made by its enable; kept until it closes).
    pub fn has_link(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    /// Whether the publish with this id still awaits an answer.
    pub fn is_pending(&self, id: &str) -> bool {
        self.outstanding.contains(id)
    }

    /// The registrations' bytes in memory (their strings included), for the memory
    /// figures.
    pub fn registration_bytes(&self) -> usize {
        self.registrations()
            .map_or(0, |set| set.iter().map(Registration::bytes).sum())
    }

    /// Publishes awaiting an answer.
    pub fn pending_publishes(&self) -> usize {
        self.outstanding.len()
    }

    /// What the machine holds, at `now`.
    pub fn stats(&self, now: std::time::Instant) -> UserStats {
        UserStats {
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
            open_batch_windows: self
                .sessions
                .values()
                .filter(|l| l.window.is_open(now))
                .count(),
        }
    }

    fn unload(&mut self, flush: bool, out: &mut Vec<Effect>) {
        if flush {
            let changes = self.record_changes();
            if !changes.is_empty() {
                // Ledger-only data: no fsync of its own, durable with the next commit.
                out.push(Effect::Write {
                    changes,
                    durable: false,
                    request: None,
                });
            }
            return;
        }
        // The user is being deleted: hibernations the module holds end now rather than
        // never.
        let held: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, l)| l.hibernation.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in held {
            out.push(Effect::Cancel(Timer::Hibernation(id)));
            self.expire(id, out);
        }
        // With the account gone, nothing of its registrations may be written back (a
        // host that keeps the machine, such as a user actor still ending sessions, would
        // otherwise flush ledger changes over the deletion). Publishes already sent
        // still take their answers, which find no registration.
        self.state = State::Loaded(RegistrationSet::default());
        self.sessions.clear();
        self.dirty.clear();
    }
}
