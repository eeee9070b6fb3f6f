//! The outbound links, one per pair of our domain (ours or a component's: the stanza's
//! `from`) and remote domain: the actor the router hands remote stanzas and publishes to
//! (`ToRemote`). Each link's queue is bounded
//! (`s2s_queue_size`), and so is the number of links (`s2s_max_connections`). A domain
//! that just failed is not retried at once: for a backoff (1 s, doubling up to 60 s) its
//! stanzas bounce with the failure's condition without a new connection attempt.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;

use super::Shared;
use super::negotiate::served;
use super::outbound::{self, LinkEnded};
use crate::xmpp::route::{Remote, Route, ToRemote};
use crate::xmpp::stanza;
use xmpp_parsers::jid::Jid;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Which link: from our `local` domain to the `remote` one.
type Key = (String, String);

/// Our domain a stanza leaves from: its `from`'s domain when we serve it (a component's
/// answer to a remote server leaves as the component), otherwise ours.
fn local_of(item: &Remote, shared: &Shared) -> String {
    let from = match item {
        Remote::Stanza(s) => s.attr("from").and_then(|f| f.parse::<Jid>().ok()),
        Remote::Publish(_) => None,
    };
    match from {
        Some(f) if served(&shared.cfg, f.domain().as_str()) => f.domain().as_str().to_string(),
        _ => shared.cfg.domain.clone(),
    }
}

struct Link {
    tx: flume::Sender<Remote>,
    /// Kept so that whatever the link did not take when it ended is found here.
    rx: flume::Receiver<Remote>,
    generation: u64,
}

struct Failed {
    until: Instant,
    backoff: Duration,
    condition: &'static str,
}

pub struct Links {
    shared: Rc<Shared>,
    links: HashMap<Key, Link>,
    failed: HashMap<Key, Failed>,
    next_generation: u64,
}

impl Links {
    pub fn new(shared: Rc<Shared>) -> Self {
        Links {
            shared,
            links: HashMap::new(),
            failed: HashMap::new(),
            next_generation: 1,
        }
    }

    /// A stanza that cannot go out goes back to its sender with `condition`; a publish
    /// is dropped and logged, and the push module records it as unanswered, never as the
    /// app server's error (D21).
    fn bounce(&self, item: Remote, key: &Key, condition: &'static str) {
        let domain = &key.1;
        match item {
            Remote::Stanza(s) => {
                let error_type = match condition {
                    "remote-server-timeout" | "resource-constraint" => "wait",
                    _ => "cancel",
                };
                if let Some(reply) = stanza::error_reply(&s, error_type, condition) {
                    self.shared.router.do_send(Route(reply));
                }
            }
            Remote::Publish(_) => {
                tracing::warn!(%domain, condition, "publish to a remote app server not delivered");
            }
        }
    }

    fn start_link(&mut self, key: &Key, ctx: &mut Context<Self>) -> Option<&Link> {
        if self.links.len() >= self.shared.cfg.s2s_max_connections {
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

    fn send(&mut self, key: Key, item: Remote, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if let Some(f) = self.failed.get(&key)
            && f.until > now
        {
            let condition = f.condition;
            self.bounce(item, &key, condition);
            return;
        }
        let link = match self.links.contains_key(&key) {
            true => self.links.get(&key),
            false => self.start_link(&key, ctx),
        };
        let Some(link) = link else {
            tracing::warn!(domain = %key.1, "s2s_max_connections links open: stanza bounced");
            self.bounce(item, &key, "resource-constraint");
            return;
        };
        if let Err(flume::TrySendError::Full(item) | flume::TrySendError::Disconnected(item)) =
            link.tx.try_send(item)
        {
            tracing::warn!(domain = %key.1, "s2s_queue_size reached: stanza bounced");
            self.bounce(item, &key, "resource-constraint");
        }
    }

    fn note_failure(&mut self, key: &Key, condition: &'static str) {
        let now = Instant::now();
        self.failed.retain(|_, f| f.until > now);
        let backoff = self
            .failed
            .get(key)
            .map_or(FIRST_BACKOFF, |f| (f.backoff * 2).min(MAX_BACKOFF));
        if self.failed.len() >= self.shared.cfg.s2s_max_connections {
            // Bounded: the entry that would expire first makes room.
            if let Some(k) = self
                .failed
                .iter()
                .min_by_key(|(_, f)| f.until)
                .map(|(k, _)| k.clone())
            {
                self.failed.remove(&k);
            }
        }
        self.failed.insert(
            key.clone(),
            Failed {
                until: now + backoff,
                backoff,
                condition,
            },
        );
    }
}

impl Actor for Links {
    type Context = Context<Self>;
}

impl Handler<ToRemote> for Links {
    type Result = ();

    fn handle(&mut self, msg: ToRemote, ctx: &mut Context<Self>) {
        let key = (local_of(&msg.item, &self.shared), msg.domain);
        self.send(key, msg.item, ctx);
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
        // Every send happens in this actor, so nothing is added to the queue after this.
        let left: Vec<Remote> = link.rx.drain().collect();
        match msg.failure {
            Some(condition) => {
                self.note_failure(&key, condition);
                for item in left {
                    self.bounce(item, &key, condition);
                }
            }
            None => {
                self.failed.remove(&key);
                // Queued while the link was closing: they go out on a new one.
                for item in left {
                    self.send(key.clone(), item, ctx);
                }
            }
        }
    }
}
