//! The socket task of a bound session: it reads the client's stream and writes what its
//! user actor sends. It holds no session state but the connection itself and the count
//! of stanzas received (which the user actor reads); the session lives in the user
//! actor, which outlives the connection when the session hibernates.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use actix::Addr;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;

use super::bound::Bound;
use super::client;
use super::connection::{Next, Shared, Xml, close_with, read};
use super::io::SizeGuard;
use super::ping;
use super::route::ToSocket;
use super::sm::SM_NS;
use super::stanza;
use super::user::{CSI_NS, ClientAck, EnableSm, Gauges, SetClientState, SocketEnded, User};
use crate::push::SessionId;

/// What a socket task starts with: its stream, and its place in the user actor.
pub struct Start {
    /// Boxed: the task's future keeps the size of its largest state.
    pub xml: Box<Xml>,
    pub guard: SizeGuard,
    pub jid: FullJid,
    pub id: SessionId,
    pub owner: Addr<User>,
    pub rx: flume::Receiver<ToSocket>,
    pub received: Arc<AtomicU32>,
    pub conn: u64,
    pub gauges: Arc<Gauges>,
    /// Stream management is on already (a resumed session).
    pub sm: bool,
    /// Written before anything else (`<resumed/>` and the unacked stanzas).
    pub first: Vec<Element>,
}

/// How the connection ended.
enum Ended {
    /// The stream was closed, by the client or by us: the session is over.
    Closed,
    /// The connection broke without a stream close: hibernate, if resumable.
    Lost,
}

pub(super) async fn run(start: Start, shared: Rc<Shared>) {
    let Start {
        mut xml,
        guard,
        jid,
        id,
        owner,
        rx,
        received,
        conn,
        gauges,
        sm,
        first,
    } = start;
    let mut st = Bound {
        user: jid.node().map(|n| n.to_string()).unwrap_or_default(),
        bare: jid.to_bare(),
        shared,
        owner,
        jid,
        id,
        sm,
    };
    let mut written = true;
    for el in &first {
        if xml.send(el).await.is_err() {
            written = false;
            break;
        }
    }
    let ended = if written {
        Box::pin(connected(
            &mut xml, &guard, &rx, &received, &gauges, &mut st,
        ))
        .await
    } else {
        Ended::Lost
    };
    // What the channel still holds was never written.
    let unwritten = rx
        .drain()
        .filter_map(|m| match m {
            ToSocket::Stanza(s) => {
                gauges.taken();
                Some(*s)
            }
            _ => None,
        })
        .collect();
    st.owner.do_send(SocketEnded {
        id,
        conn,
        lost: matches!(ended, Ended::Lost),
        unwritten,
    });
}

async fn connected(
    xml: &mut Xml,
    guard: &SizeGuard,
    rx: &flume::Receiver<ToSocket>,
    received: &AtomicU32,
    gauges: &Gauges,
    st: &mut Bound,
) -> Ended {
    loop {
        tokio::select! {
            r = read(xml, guard) => match r {
                Next::Element(el) => {
                    if el.has_ns(SM_NS) {
                        if !sm_nonza(el, xml, received, st).await {
                            return Ended::Closed;
                        }
                        continue;
                    }
                    // XEP-0352: a nonza, not counted; the user actor keeps the state.
                    if el.has_ns(CSI_NS) {
                        st.owner.do_send(SetClientState {
                            id: st.id,
                            active: el.name() == "active",
                        });
                        continue;
                    }
                    if st.sm {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    if !client::handle(el, xml, st).await {
                        return Ended::Closed;
                    }
                }
                // Counted like any stanza: the client acknowledges it.
                Next::Idle => {
                    let ping = ping::keepalive(&st.jid, &st.shared.cfg.domain);
                    if !st.reply(xml, ping).await {
                        return Ended::Lost;
                    }
                }
                Next::Closed => return Ended::Closed,
                Next::Lost => return Ended::Lost,
            },
            out = rx.recv_async() => match out.ok() {
                Some(ToSocket::Stanza(s)) => {
                    gauges.taken();
                    if xml.send(&s).await.is_err() {
                        return Ended::Lost;
                    }
                }
                Some(ToSocket::Nonza(n)) => {
                    if xml.send(&n).await.is_err() {
                        return Ended::Lost;
                    }
                }
                Some(ToSocket::Close(condition)) => {
                    close_with(xml, condition).await;
                    return Ended::Closed;
                }
                Some(ToSocket::Fail(error)) => {
                    let _ = xml.send(&error).await;
                    let _ = xml.shutdown().await;
                    return Ended::Closed;
                }
                // The user actor let the session go.
                None => return Ended::Closed,
            },
        }
    }
}

/// `<enable/>`, `<r/>`, `<a/>`. `false` ends the session.
async fn sm_nonza(el: Element, xml: &mut Xml, received: &AtomicU32, st: &mut Bound) -> bool {
    match el.name() {
        "enable" if !st.sm => {
            st.sm = true;
            // The user actor answers `<enabled/>` through the channel, ahead of any
            // stanza it counts.
            st.owner.do_send(EnableSm {
                id: st.id,
                resume: matches!(el.attr("resume"), Some("true") | Some("1")),
            });
            true
        }
        "enable" => {
            let failed = Element::builder("failed", SM_NS)
                .append(Element::builder("unexpected-request", stanza::STANZAS_NS))
                .build();
            xml.send(&failed).await.is_ok()
        }
        "r" if st.sm => {
            let mut a = Element::builder("a", SM_NS).build();
            stanza::set_attr(&mut a, "h", &received.load(Ordering::Relaxed).to_string());
            xml.send(&a).await.is_ok()
        }
        "a" if st.sm => {
            let Some(h) = el.attr("h").and_then(|h| h.parse::<u32>().ok()) else {
                close_with(xml, "undefined-condition").await;
                return false;
            };
            st.owner.do_send(ClientAck { id: st.id, h });
            true
        }
        _ => {
            close_with(xml, "unsupported-stanza-type").await;
            false
        }
    }
}
