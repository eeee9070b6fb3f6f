//! The outbound links, one per pair of our domain (ours or a component's: the stanza's
//! `from`) and remote domain: the actor the router hands remote stanzas and publishes to
//! (`ToRemote`). Each link's queue is bounded (`s2s_queue_size`), and so is the number
//! of links (`s2s_max_connections`).
//!
//! A pair that just failed is not retried at once: for a backoff (1 s, doubling up to
//! 60 s) its stanzas bounce with the failure's condition without a new connection
//! attempt. Publishes do not bounce (D21: our failure is no answer from the app server):
//! they are held, at most `s2s_queue_size` per pair, and sent again when the backoff
//! ends, until `push_response_timeout` after their first failure, when the push module
//! has stopped waiting for their answer anyway.
//!
//! A peer's inbound stream that asked to be used both ways (XEP-0288) and authenticated
//! a pair is registered here (`Bidi`): while we have no link of our own for that pair,
//! its stanzas go out on that stream, through a queue of the same bound. That is how a
//! peer behind NAT, which no one can connect to, gets our answers.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::Shared;
use super::negotiate::served;
use super::outbound::{self, Failure, LinkEnded};
use super::queue::{self, Bidi, Key, Queued};
use crate::metrics::held::Charge;
use crate::push::PublishUndelivered;
use crate::xmpp::route::{Remote, RemotePublish, Route, ToRemote};
use crate::xmpp::stanza;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Our domain a stanza leaves from: its `from`'s domain when we serve it (a component's
/// answer to a remote server leaves as the component), otherwise ours.
fn local_of(item: &Remote, shared: &Shared) -> String {
    let from = match item {
        Remote::Stanza(s) => s.attr("from").and_then(crate::jid::parse::<Jid>),
        Remote::Publish(_) => None,
    };
    match from {
        Some(f) if served(&shared.cfg, f.domain().as_str()) => f.domain().as_str().to_string(),
        _ => shared.cfg.domain.clone(),
    }
}

/// The pair an item left on a closed bidirectional stream was for: a stanza's own
/// addresses tell; a publish only says when the stream carried a single pair.
fn back_key(item: &Remote, pairs: &[Key], shared: &Shared) -> Option<Key> {
    match item {
        Remote::Stanza(s) => {
            let to = crate::jid::parse::<Jid>(s.attr("to")?)?;
            Some((local_of(item, shared), to.domain().as_str().to_string()))
        }
        Remote::Publish(_) => match pairs {
            [one] => Some(one.clone()),
            _ => None,
        },
    }
}

struct Link {
    tx: flume::Sender<Queued>,
    /// Kept so that whatever the link did not take when it ended is found here.
    rx: flume::Receiver<Queued>,
    generation: u64,
}

struct Failed {
    until: Instant,
    backoff: Duration,
    failure: Failure,
    /// Publishes waiting for the retry, each with the time it is given up.
    held: VecDeque<(Instant, RemotePublish, Charge)>,
}

/// The condition a stanza written on a connection that then broke bounces with.
const BROKEN: &str = "recipient-unavailable";

/// Our own limits, for a publish that could not even wait for a link.
fn limit(condition: &'static str, reason: &str) -> Failure {
    Failure {
        condition,
        reason: reason.to_string(),
    }
}

pub struct Links {
    shared: Rc<Shared>,
    links: HashMap<Key, Link>,
    /// Peers' inbound streams used both ways, by the pair they authenticated.
    bidi: HashMap<Key, (flume::Sender<Queued>, flume::Receiver<Queued>)>,
    failed: HashMap<Key, Failed>,
    next_generation: u64,
}

impl Links {
    pub fn new(shared: Rc<Shared>) -> Self {
        Links {
            shared,
            links: HashMap::new(),
            bidi: HashMap::new(),
            failed: HashMap::new(),
            next_generation: 1,
        }
    }

    /// A stanza that cannot go out goes back to its sender with the failure's
    /// condition. A publish that cannot go out is dropped, logged and reported to the
    /// push module, which records the failure in the registration's ledger, never as
    /// the app server's error (D21).
    fn bounce(&self, item: Remote, key: &Key, failure: &Failure) {
        match item {
            Remote::Stanza(s) => self.bounce_stanza(&s, failure.condition),
            Remote::Publish(p) => self.given_up(p, key, failure),
        }
    }

    fn bounce_stanza(&self, s: &Element, condition: &'static str) {
        let error_type = match condition {
            "remote-server-timeout" | "resource-constraint" | "recipient-unavailable" => "wait",
            _ => "cancel",
        };
        if let Some(reply) = stanza::error_reply(s, error_type, condition) {
            self.shared.router.do_send(Route(reply));
        }
    }

    /// Tells the push module about a publish that did not reach `key`'s domain;
    /// `given_up` when it will not be sent again.
    fn report(&self, p: &RemotePublish, failure: &Failure, given_up: bool) {
        self.shared.undelivered.do_send(PublishUndelivered {
            id: p.id.clone(),
            condition: failure.condition.to_string(),
            reason: failure.reason.clone(),
            given_up,
        });
    }

    fn given_up(&self, p: RemotePublish, key: &Key, failure: &Failure) {
        tracing::warn!(domain = %key.1, condition = failure.condition, reason = %failure.reason, "publish to a remote app server given up");
        self.report(&p, failure, true);
    }

    /// What a link or a peer's stream used both ways was writing when its connection
    /// broke (D22: one fate each). Whether the peer got it is unknown, as there is no
    /// stream management on server-to-server streams: a stanza bounces
    /// (`recipient-unavailable`, as Prosody bounces what a broken stream left
    /// unacknowledged); the publishes are given back, for the caller to send again its
    /// way, since a notification twice is harmless and none at all is not.
    fn bounce_broken(&self, unsent: Vec<Queued>) -> Vec<Queued> {
        let mut again = Vec::new();
        for queued in unsent {
            match &queued.item {
                Remote::Stanza(s) => self.bounce_stanza(s, BROKEN),
                Remote::Publish(_) => again.push(queued),
            }
        }
        again
    }

    fn start_link(&mut self, key: &Key, ctx: &mut Context<Self>) -> Option<&Link> {
        if self.links.len() >= self.shared.live.get().s2s_max_connections {
            return None;
        }
        let (tx, rx) = flume::bounded(self.shared.cfg.s2s_queue_size);
        let generation = self.next_generation;
        self.next_generation += 1;
        actix::spawn(outbound::run(
            key.0.clone(),
            key.1.clone(),
            generation,
            rx.clone(),
            self.shared.clone(),
            ctx.address().recipient(),
        ));
        self.links.insert(key.clone(), Link { tx, rx, generation });
        self.links.get(key)
    }

    fn send(&mut self, key: Key, mut queued: Queued, ctx: &mut Context<Self>) {
        // A link of our own wins; otherwise a peer's stream used both ways takes it.
        if !self.links.contains_key(&key)
            && let Some((tx, _)) = self.bidi.get(&key)
        {
            match tx.try_send(queued) {
                Ok(()) => return,
                Err(flume::TrySendError::Full(q)) => {
                    tracing::warn!(domain = %key.1, "s2s_queue_size reached on a bidirectional stream: stanza bounced");
                    let full = limit("resource-constraint", "s2s_queue_size reached");
                    self.bounce(q.item, &key, &full);
                    return;
                }
                Err(flume::TrySendError::Disconnected(q)) => {
                    self.bidi.remove(&key);
                    queued = q;
                }
            }
        }
        let now = Instant::now();
        if let Some(f) = self.failed.get(&key)
            && f.until > now
        {
            let failure = f.failure.clone();
            self.hold_or_bounce(&key, queued, &failure);
            return;
        }
        let link = match self.links.contains_key(&key) {
            true => self.links.get(&key),
            false => self.start_link(&key, ctx),
        };
        let Some(link) = link else {
            tracing::warn!(domain = %key.1, "s2s_max_connections links open: stanza bounced");
            let full = limit("resource-constraint", "s2s_max_connections links open");
            self.bounce(queued.item, &key, &full);
            return;
        };
        if let Err(flume::TrySendError::Full(q) | flume::TrySendError::Disconnected(q)) =
            link.tx.try_send(queued)
        {
            tracing::warn!(domain = %key.1, "s2s_queue_size reached: stanza bounced");
            let full = limit("resource-constraint", "s2s_queue_size reached");
            self.bounce(q.item, &key, &full);
        }
    }

    /// While a pair backs off: a publish waits for the retry (until its give-up time), a
    /// stanza bounces. The push module hears of the failure either way.
    fn hold_or_bounce(&mut self, key: &Key, queued: Queued, failure: &Failure) {
        let now = Instant::now();
        let max = self.shared.cfg.s2s_queue_size;
        let give_up_after = self.shared.live.get().push_response_timeout;
        let Queued {
            item,
            give_up,
            charge,
        } = queued;
        let publish = match item {
            Remote::Publish(p) => p,
            stanza => return self.bounce(stanza, key, failure),
        };
        let give_up = give_up.unwrap_or(now + give_up_after);
        if give_up <= now || !self.failed.contains_key(key) {
            return self.given_up(publish, key, failure);
        }
        self.report(&publish, failure, false);
        let Some(f) = self.failed.get_mut(key) else {
            return;
        };
        let oldest = match f.held.len() >= max {
            true => f.held.pop_front(),
            false => None,
        };
        f.held.push_back((give_up, publish, charge));
        if let Some((_, p, _)) = oldest {
            let full = limit(
                "resource-constraint",
                "s2s_queue_size publishes held for a retry",
            );
            self.given_up(p, key, &full);
        }
    }

    fn note_failure(&mut self, key: &Key, failure: Failure, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.failed
            .retain(|_, f| f.until > now || !f.held.is_empty());
        let backoff = self
            .failed
            .get(key)
            .map_or(FIRST_BACKOFF, |f| (f.backoff * 2).min(MAX_BACKOFF));
        if !self.failed.contains_key(key)
            && self.failed.len() >= self.shared.live.get().s2s_max_connections
        {
            // Bounded: the entry that would expire first makes room.
            if let Some(k) = self
                .failed
                .iter()
                .min_by_key(|(_, f)| f.until)
                .map(|(k, _)| k.clone())
                && let Some(gone) = self.failed.remove(&k)
                && !gone.held.is_empty()
            {
                tracing::warn!(domain = %k.1, publishes = gone.held.len(), "failed domains past s2s_max_connections: held publishes given up");
                for (_, p, _) in gone.held {
                    self.report(&p, &gone.failure, true);
                }
            }
        }
        let held = self.failed.remove(key).map(|f| f.held).unwrap_or_default();
        self.failed.insert(
            key.clone(),
            Failed {
                until: now + backoff,
                backoff,
                failure,
                held,
            },
        );
        let key = key.clone();
        ctx.run_later(backoff, move |act, ctx| act.retry(key, ctx));
    }

    /// The backoff ended: the held publishes that are still wanted go out on a new link.
    fn retry(&mut self, key: Key, ctx: &mut Context<Self>) {
        let Some(f) = self.failed.get_mut(&key) else {
            return;
        };
        let held = std::mem::take(&mut f.held);
        let now = Instant::now();
        // The backoff is over whatever the clock's rounding says: a publish sent now must
        // not be held again with no retry left to take it.
        f.until = f.until.min(now);
        let failure = f.failure.clone();
        for (give_up, p, charge) in held {
            if give_up <= now {
                self.given_up(p, &key, &failure);
                continue;
            }
            let queued = Queued {
                item: Remote::Publish(p),
                give_up: Some(give_up),
                charge,
            };
            self.send(key.clone(), queued, ctx);
        }
    }
}

impl Actor for Links {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let _ = self.shared.bidi.set(ctx.address().recipient());
    }
}

impl Handler<Bidi> for Links {
    type Result = ();

    fn handle(&mut self, msg: Bidi, ctx: &mut Context<Self>) {
        match msg {
            Bidi::Up { pairs, tx, rx } => {
                for key in pairs {
                    tracing::debug!(domain = %key.1, "a peer's stream carries our stanzas (bidi)");
                    self.bidi.insert(key, (tx.clone(), rx.clone()));
                }
            }
            Bidi::Down { pairs, tx, unsent } => {
                let mut rx = None;
                for key in &pairs {
                    if self.bidi.get(key).is_some_and(|(t, _)| t.same_channel(&tx))
                        && let Some((_, r)) = self.bidi.remove(key)
                    {
                        rx = Some(r);
                    }
                }
                // What the stream did not write goes out another way (our own link, or
                // another stream of the peer's): every send happens in this actor, so
                // nothing is added to this queue after it is gone from the map.
                let left: Vec<Queued> = rx.map(|r| r.drain().collect()).unwrap_or_default();
                let again = self.bounce_broken(unsent);
                for queued in again.into_iter().chain(left) {
                    match back_key(&queued.item, &pairs, &self.shared) {
                        Some(key) => self.send(key, queued, ctx),
                        None => {
                            tracing::warn!(
                                "publish left on a closed bidirectional stream of several domains: given up"
                            );
                            if let Remote::Publish(p) = &queued.item {
                                let closed = limit(
                                    "remote-server-not-found",
                                    "the peer's bidirectional stream closed",
                                );
                                self.report(p, &closed, true);
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Handler<ToRemote> for Links {
    type Result = ();

    fn handle(&mut self, msg: ToRemote, ctx: &mut Context<Self>) {
        let key = (local_of(&msg.item, &self.shared), msg.domain);
        let charge = self.shared.held.charge(queue::bytes_of(&msg.item));
        let queued = Queued {
            item: msg.item,
            give_up: None,
            charge,
        };
        self.send(key, queued, ctx);
    }
}

impl Handler<LinkEnded> for Links {
    type Result = ();

    fn handle(&mut self, msg: LinkEnded, ctx: &mut Context<Self>) {
        let key = (msg.local, msg.domain);
        if self
            .links
            .get(&key)
            .is_none_or(|l| l.generation != msg.generation)
        {
            return;
        }
        let Some(link) = self.links.remove(&key) else {
            return;
        };
        for publish in self.bounce_broken(msg.unsent) {
            self.send(key.clone(), publish, ctx);
        }
        // Every send happens in this actor, so nothing is added to the queue after this.
        let left: Vec<Queued> = link.rx.drain().collect();
        match msg.failure {
            Some(failure) => {
                self.note_failure(&key, failure.clone(), ctx);
                for queued in left {
                    self.hold_or_bounce(&key, queued, &failure);
                }
            }
            None => {
                self.failed.remove(&key);
                // Queued while the link was closing: they go out on a new one.
                for queued in left {
                    self.send(key.clone(), queued, ctx);
                }
            }
        }
    }
}
