//! One outbound link's task: open and authenticate within `s2s_timeout`, then write the
//! domain's queue until the link is idle for `s2s_idle_timeout`, the peer closes it or
//! the server stops. It tells the links actor when it ends, and how.

use std::rc::Rc;

use actix::{Message, Recipient};
use tokio::time::Instant;
use xmpp_parsers::minidom::Element;

use super::Shared;
use super::connect::{self, LinkError, Opened};
use super::inbound;
use super::negotiate::{Pair, admit, result_request};
use super::queue::{self, Queued, Unsent};
use crate::xmpp::xml::{DIALBACK_NS, Read, SERVER_NS, STREAM_NS};

/// A link's task ended: `failure` is why it could not be made, `None` once it was (it
/// closed when idle, or the peer closed it, or it broke: then `unsent` holds what it
/// was writing).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkEnded {
    /// Our side of the link: our domain or a component's.
    pub local: String,
    pub domain: String,
    pub generation: u64,
    pub failure: Option<Failure>,
    /// The batch the link was writing when its connection broke (see [`Unsent`]).
    pub unsent: Vec<Queued>,
}

/// Why a link could not be made.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The condition its stanzas bounce with.
    pub condition: &'static str,
    /// What failed, in words, for the registrations' ledger (D21) and the log.
    pub reason: String,
}

pub async fn run(
    local: String,
    domain: String,
    generation: u64,
    rx: flume::Receiver<Queued>,
    shared: Rc<Shared>,
    ended: Recipient<LinkEnded>,
) {
    let establish = establish(&local, &domain, &shared);
    let link = tokio::time::timeout(shared.cfg.s2s_timeout, establish).await;
    let (failure, unsent) = match link {
        Err(_) => (Some(LinkError::Timeout), Vec::new()),
        Ok(Err(e)) => (Some(e), Vec::new()),
        Ok(Ok(mut opened)) => {
            tracing::info!(%domain, "server-to-server link up");
            match exchange(&mut opened, &local, &domain, &rx, &shared).await {
                None => {
                    tracing::info!(%domain, "server-to-server link closed");
                    (None, Vec::new())
                }
                Some(broken) => {
                    tracing::warn!(%domain, reason = %broken.reason, stanzas = broken.batch.len(), "server-to-server link broke");
                    (None, broken.batch)
                }
            }
        }
    };
    if let Some(e) = &failure {
        tracing::warn!(%domain, error = %e, "no server-to-server link");
    }
    ended.do_send(LinkEnded {
        local,
        domain,
        generation,
        failure: failure.map(|e| Failure {
            condition: e.condition(),
            reason: e.to_string(),
        }),
        unsent,
    });
}

async fn establish(ours: &str, domain: &str, shared: &Shared) -> Result<Opened, LinkError> {
    let mut opened = connect::open(ours, domain, shared, true).await?;
    if opened.authenticated {
        return Ok(opened);
    }
    let key = shared.secret.key(domain, ours, &opened.stream_id);
    opened
        .xml
        .send(&result_request(ours, domain, &key))
        .await
        .map_err(LinkError::Connect)?;
    loop {
        match opened.xml.next().await {
            Read::Element(el) if el.is("result", DIALBACK_NS) => {
                opened.guard.reset();
                return match el.attr("type") {
                    Some("valid") => Ok(opened),
                    _ => {
                        let _ = opened.xml.shutdown().await;
                        Err(LinkError::Refused)
                    }
                };
            }
            Read::Element(el) if el.is("error", STREAM_NS) => {
                let condition = el.children().next().map_or("", |c| c.name()).to_string();
                return Err(LinkError::Stream(format!("stream error {condition}")));
            }
            // A peer may send other things before its answer (nothing we must act on).
            Read::Element(_) | Read::Idle => opened.guard.reset(),
            other => return Err(LinkError::Stream(format!("{other:?}"))),
        }
    }
}

async fn exchange(
    opened: &mut Opened,
    ours: &str,
    domain: &str,
    rx: &flume::Receiver<Queued>,
    shared: &Shared,
) -> Option<Unsent> {
    let idle = shared.cfg.s2s_idle_timeout;
    let mut stopping = shared.stopping.clone();
    let mut last = Instant::now();
    loop {
        tokio::select! {
            item = rx.recv_async() => {
                let Ok(first) = item else { break };
                if let Err(unsent) = queue::write(&mut opened.xml, first, rx).await {
                    return Some(unsent);
                }
                last = Instant::now();
            }
            read = opened.xml.next() => match read {
                Read::Element(el) => {
                    opened.guard.reset();
                    last = Instant::now();
                    if !opened.bidi {
                        tracing::debug!(%domain, element = el.name(), "ignored on an outbound link");
                    } else if !stanza_back(opened, el, ours, domain, shared).await {
                        return None;
                    }
                }
                Read::Idle => {}
                _ => return None,
            },
            _ = tokio::time::sleep_until(last + idle) => break,
            _ = stopping.wait_for(|stop| *stop) => break,
        }
    }
    let _ = opened.xml.shutdown().await;
    None
}

/// A stanza the peer sent back on our link used both ways (XEP-0288): it must come from
/// the peer's domain and be for ours, the pair this link authenticated, as on an inbound
/// stream; `false` when the stream is closed for it.
async fn stanza_back(
    opened: &mut Opened,
    el: Element,
    ours: &str,
    domain: &str,
    shared: &Shared,
) -> bool {
    if !matches!(el.name(), "message" | "presence" | "iq") || !el.has_ns(SERVER_NS) {
        tracing::debug!(%domain, element = el.name(), "ignored on an outbound link");
        return true;
    }
    let pair = [Pair {
        remote: domain.to_string(),
        local: ours.to_string(),
    }];
    if let Err(refused) = admit(&el, &pair, &shared.cfg) {
        tracing::info!(%domain, condition = refused.condition(), "stanza on a bidirectional link refused");
        opened.xml.close_with(refused.condition()).await;
        return false;
    }
    inbound::enter(el, shared);
    true
}
