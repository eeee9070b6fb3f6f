//! The outbound links, one per remote domain: the actor the router hands remote
//! stanzas and publishes to (`ToRemote`). Each link's queue is bounded
//! (`s2s_queue_size`), and so is the number of links (`s2s_max_connections`). A domain
//! that just failed is not retried at once: for a backoff (1 s, doubling up to 60 s) its
//! stanzas bounce with the failure's condition without a new connection attempt.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;

use super::Shared;
use super::outbound::{self, LinkEnded};
use crate::xmpp::route::{Remote, Route, ToRemote};
use crate::xmpp::stanza;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

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
    links: HashMap<String, Link>,
    failed: HashMap<String, Failed>,
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
    fn bounce(&self, item: Remote, domain: &str, condition: &'static str) {
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

    fn start_link(&mut self, domain: &str, ctx: &mut Context<Self>) -> Option<&Link> {
        if self.links.len() >= self.shared.cfg.s2s_max_connections {
            return None;
        }
        let (tx, rx) = flume::bounded(self.shared.cfg.s2s_queue_size);
        let generation = self.next_generation;
        self.next_generation += 1;
        actix::spawn(outbound::run(
            domain.to_string(),
            generation,
            rx.clone(),
            self.shared.clone(),
            ctx.address().recipient(),
        ));
        self.links
            .insert(domain.to_string(), Link { tx, rx, generation });
        self.links.get(domain)
    }

    fn send(&mut self, domain: String, item: Remote, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if let Some(f) = self.failed.get(&domain)
            && f.until > now
        {
            let condition = f.condition;
            self.bounce(item, &domain, condition);
            return;
        }
        let link = match self.links.contains_key(&domain) {
            true => self.links.get(&domain),
            false => self.start_link(&domain, ctx),
        };
        let Some(link) = link else {
            tracing::warn!(%domain, "s2s_max_connections links open: stanza bounced");
            self.bounce(item, &domain, "resource-constraint");
            return;
        };
        if let Err(flume::TrySendError::Full(item) | flume::TrySendError::Disconnected(item)) =
            link.tx.try_send(item)
        {
            tracing::warn!(%domain, "s2s_queue_size reached: stanza bounced");
            self.bounce(item, &domain, "resource-constraint");
        }
    }

    fn note_failure(&mut self, domain: &str, condition: &'static str) {
        let now = Instant::now();
        self.failed.retain(|_, f| f.until > now);
        let backoff = self
            .failed
            .get(domain)
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
            domain.to_string(),
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
        self.send(msg.domain, msg.item, ctx);
    }
}

impl Handler<LinkEnded> for Links {
    type Result = ();

    fn handle(&mut self, msg: LinkEnded, ctx: &mut Context<Self>) {
        if self
            .links
            .get(&msg.domain)
            .is_none_or(|l| l.generation != msg.generation)
        {
            return;
        }
        let Some(link) = self.links.remove(&msg.domain) else {
            return;
        };
        // Every send happens in this actor, so nothing is added to the queue after this.
        let left: Vec<Remote> = link.rx.drain().collect();
        match msg.failure {
            Some(condition) => {
                self.note_failure(&msg.domain, condition);
                for item in left {
                    self.bounce(item, &msg.domain, condition);
                }
            }
            None => {
                self.failed.remove(&msg.domain);
                // Queued while the link was closing: they go out on a new one.
                for item in left {
                    self.send(msg.domain.clone(), item, ctx);
                }
            }
        }
    }
}
