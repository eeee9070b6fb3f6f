//! The bound client session: what the client sends is stamped and routed, what the router
//! delivers is written, and with XEP-0198 the session survives a lost connection
//! (hibernation) until it is resumed, or until its timeout ends it (the push module's,
//! for push-linked sessions, D14).

use futures::FutureExt;
use tokio::time::Instant;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;

use std::sync::Arc;

use actix::Addr;

use super::c2s::{Bound, Next, Shared, Xml, close_with, read};
use super::io::SizeGuard;
use super::roster;
use super::route::{Route, Takeover, ToSession};
use super::sm::SmState;
use super::stanza::random_id;
use super::stanza::{self, CLIENT_NS};
use super::user::{
    Gauges, SaveRosterItem, SetAvailable, SetHibernated, SmForget, SmRegister, Unbind, User,
};
use crate::push::{
    AckOverdue, OfflineMessage, PushRequest, QueuedStanza, Session, SessionClosed,
    SessionHibernated, SessionId, SessionResumed, StanzaKey, StanzaQueued, TimerOwner,
};
use crate::store::{
    Change, LoadOffline, LoadRoster, PushOffline, QueuedKey, RosterItem, StoreError, Write,
};

pub const SM_NS: &str = "urn:xmpp:sm:3";
const SESSION_NS: &str = "urn:ietf:params:xml:ns:xmpp-session";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const PING_NS: &str = "urn:xmpp:ping";

struct State {
    /// The user's actor: the owner of what the rest of the server knows of the session.
    owner: Addr<User>,
    gauges: Arc<Gauges>,
    jid: FullJid,
    bare: BareJid,
    user: String,
    id: SessionId,
    session: Session,
    rx: flume::Receiver<ToSession>,
    available: bool,
    sm: Option<SmState>,
    /// When the last unanswered `<r/>` must be answered by.
    ack_deadline: Option<Instant>,
    ack_overdue_sent: bool,
    /// Stanzas that arrived past `smacks_max_queue_size`: the session ends, and they
    /// take the unacked stanzas' way out after them (D22).
    spill: Vec<Element>,
}

/// How a connected phase ended.
enum Ended {
    /// The client closed the stream, or the server ended it: the session is over.
    Closed,
    /// The connection was lost: hibernate if resumption was enabled.
    Lost,
    /// Another connection resumed this session while it was connected.
    Replaced(Box<Takeover>),
}

pub(super) async fn run(b: Bound, shared: &Shared) {
    let Bound {
        xml,
        guard,
        jid,
        id,
        rx,
        tx,
        owner,
        gauges,
    } = b;
    let mut st = State {
        user: jid.node().map(|n| n.to_string()).unwrap_or_default(),
        bare: jid.to_bare(),
        session: Session {
            id,
            jid: jid.clone(),
            control: owner.clone().recipient(),
        },
        owner,
        gauges,
        jid,
        id,
        rx,
        available: false,
        sm: None,
        ack_deadline: None,
        ack_overdue_sent: false,
        spill: Vec::new(),
    };
    drop(tx);
    let mut live = Some((xml, guard));
    loop {
        let Some((mut xml, guard)) = live.take() else {
            break;
        };
        // Each phase is boxed: a task's future is as large as its largest state, and a
        // hibernated session (thousands of them, for days) must not carry the space of
        // the connected phase's stanza handling. Unboxed, every session cost 11 KB.
        match Box::pin(connected(&mut xml, &guard, &mut st, shared)).await {
            Ended::Closed => break,
            Ended::Replaced(t) => {
                Box::pin(close_with(&mut xml, "conflict")).await;
                live = Box::pin(resume(*t, &mut st, shared)).await;
            }
            Ended::Lost if st.sm.is_some() => {
                drop(xml);
                if let Some(t) = Box::pin(hibernate(&mut st, shared)).await {
                    live = Box::pin(resume(t, &mut st, shared)).await;
                }
            }
            Ended::Lost => break,
        }
    }
    Box::pin(destroy(&mut st, shared)).await;
}

async fn connected(xml: &mut Xml, guard: &SizeGuard, st: &mut State, shared: &Shared) -> Ended {
    loop {
        let deadline = st.ack_deadline;
        tokio::select! {
            r = read(xml, guard) => match r {
                Next::Element(el) => {
                    if el.has_ns(SM_NS) {
                        if !sm_nonza(el, xml, st, shared).await {
                            return Ended::Closed;
                        }
                        continue;
                    }
                    if let Some(sm) = &mut st.sm {
                        sm.on_received();
                    }
                    if !handle_client(el, xml, st, shared).await {
                        return Ended::Closed;
                    }
                }
                Next::Idle => {
                    if xml.send(&keepalive(st, shared)).await.is_err() {
                        return Ended::Lost;
                    }
                }
                Next::Closed => return Ended::Closed,
                Next::Lost => return Ended::Lost,
            },
            out = st.rx.recv_async() => match out.ok() {
                Some(ToSession::Stanza(s)) => {
                    st.gauges.taken();
                    if !send_stanza(xml, st, *s, shared).await {
                        // Past smacks_max_queue_size the session ends for good (its
                        // stream was closed with resource-constraint); otherwise the
                        // write failed: the connection is lost.
                        return if st.spill.is_empty() { Ended::Lost } else { Ended::Closed };
                    }
                }
                Some(ToSession::Conflict) => {
                    close_with(xml, "conflict").await;
                    return Ended::Closed;
                }
                Some(ToSession::Resume(t)) => return Ended::Replaced(t),
                Some(ToSession::Shutdown) => {
                    close_with(xml, "system-shutdown").await;
                    return Ended::Closed;
                }
                Some(ToSession::Revoked) => {
                    close_with(xml, "not-authorized").await;
                    return Ended::Closed;
                }
                Some(ToSession::Expire) => {}
                None => return Ended::Closed,
            },
            _ = sleep_until(deadline) => {
                st.ack_deadline = None;
                if !st.ack_overdue_sent {
                    st.ack_overdue_sent = true;
                    if let Some(sm) = &st.sm {
                        shared.hub.do_send(AckOverdue {
                            user: st.user.clone(),
                            session: st.id,
                            queue: queued(sm, st.id),
                        });
                    }
                }
            }
        }
    }
}

/// XEP-0198 §4: the client acknowledged more than was sent.
fn handled_count_too_high() -> Element {
    Element::builder("error", "http://etherx.jabber.org/streams")
        .append(Element::builder(
            "undefined-condition",
            "urn:ietf:params:xml:ns:xmpp-streams",
        ))
        .append(Element::builder("handled-count-too-high", SM_NS))
        .build()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn keepalive(st: &State, shared: &Shared) -> Element {
    // XEP-0199 from the server: a live client answers before the hard timeout.
    let mut ping = Element::builder("iq", CLIENT_NS)
        .append(Element::builder("ping", PING_NS))
        .build();
    stanza::set_attr(&mut ping, "type", "get");
    stanza::set_attr(&mut ping, "id", "keepalive");
    stanza::set_attr(&mut ping, "to", &st.jid.to_string());
    stanza::set_attr(&mut ping, "from", &shared.cfg.domain);
    ping
}

fn queued(sm: &SmState, session: SessionId) -> Vec<QueuedStanza> {
    sm.unacked()
        .into_iter()
        .map(|(seq, stanza)| QueuedStanza {
            key: StanzaKey { session, seq },
            stanza,
        })
        .collect()
}

/// Writes a delivered stanza, counting it for XEP-0198 and asking for an ack.
async fn send_stanza(xml: &mut Xml, st: &mut State, s: Element, shared: &Shared) -> bool {
    if let Some(sm) = &mut st.sm {
        if sm.on_sent(&s).is_none() {
            tracing::info!("smacks_max_queue_size reached: session closed");
            st.spill.push(s);
            close_with(xml, "resource-constraint").await;
            return false;
        }
        if xml.send(&s).await.is_err() {
            return false;
        }
        if sm.unacked_len() > shared.cfg.smacks_max_unacked_stanzas && st.ack_deadline.is_none() {
            if xml
                .send(&Element::builder("r", SM_NS).build())
                .await
                .is_err()
            {
                return false;
            }
            st.ack_deadline = Some(Instant::now() + shared.cfg.smacks_max_ack_delay);
        }
        return true;
    }
    xml.send(&s).await.is_ok()
}

/// `<enable/>`, `<r/>`, `<a/>`. `false` ends the session.
async fn sm_nonza(el: Element, xml: &mut Xml, st: &mut State, shared: &Shared) -> bool {
    match el.name() {
        "enable" if st.sm.is_none() => {
            let id = random_id();
            let resume = matches!(el.attr("resume"), Some("true") | Some("1"));
            st.sm = Some(SmState::new(id.clone(), shared.cfg.smacks_max_queue_size));
            let mut enabled = Element::builder("enabled", SM_NS).build();
            if resume {
                st.owner.do_send(SmRegister {
                    id: id.clone(),
                    session: st.id,
                });
                stanza::set_attr(&mut enabled, "id", &id);
                stanza::set_attr(&mut enabled, "resume", "true");
                stanza::set_attr(
                    &mut enabled,
                    "max",
                    &shared.cfg.smacks_hibernation_time.as_secs().to_string(),
                );
            } else if let Some(sm) = &mut st.sm {
                // Without resumption a lost connection ends the session.
                sm.id.clear();
            }
            xml.send(&enabled).await.is_ok()
        }
        "enable" => {
            let failed = Element::builder("failed", SM_NS)
                .append(Element::builder("unexpected-request", stanza::STANZAS_NS))
                .build();
            xml.send(&failed).await.is_ok()
        }
        "r" => {
            let Some(sm) = &st.sm else {
                close_with(xml, "unsupported-stanza-type").await;
                return false;
            };
            let mut a = Element::builder("a", SM_NS).build();
            stanza::set_attr(&mut a, "h", &sm.h().to_string());
            xml.send(&a).await.is_ok()
        }
        "a" => {
            let (Some(sm), Some(h)) =
                (&mut st.sm, el.attr("h").and_then(|h| h.parse::<u32>().ok()))
            else {
                close_with(xml, "undefined-condition").await;
                return false;
            };
            if let Err(e) = sm.on_ack(h) {
                tracing::info!(error = %e, "bad ack");
                let _ = xml.send(&handled_count_too_high()).await;
                let _ = xml.shutdown().await;
                return false;
            }
            st.ack_deadline = None;
            st.ack_overdue_sent = false;
            true
        }
        _ => {
            close_with(xml, "unsupported-stanza-type").await;
            false
        }
    }
}

/// The connection is gone but the session stays: stanzas for it queue up until it is
/// resumed or its timeout ends it.
///
/// D23: every chat or normal message waiting here has a stored copy, so a crash loses
/// none of them (the next start moves the copies to offline storage). The copies are
/// ordinary durable writes asked for as the messages arrive, so a burst shares the
/// store's group commits. The push module hears of a message only once its copy is
/// stored: a phone is never woken for a message a crash could still lose.
async fn hibernate(st: &mut State, shared: &Shared) -> Option<Takeover> {
    let sm = st.sm.as_ref()?;
    if sm.id.is_empty() {
        return None;
    }
    st.ack_deadline = None;
    st.owner.do_send(SetHibernated {
        id: st.id,
        hibernated: true,
    });
    // What the connection left unacknowledged, stored in one write before the module
    // may publish for it.
    let unacked = sm.unacked();
    if let Some(write) = keep_queued(st, unacked.iter().map(|(seq, s)| (*seq, s)), shared) {
        write.await;
    }
    let owner = shared
        .hub
        .send(SessionHibernated {
            user: st.user.clone(),
            session: st.id,
            normal_timeout: shared.cfg.smacks_hibernation_time,
            queue: unacked
                .into_iter()
                .map(|(seq, stanza)| QueuedStanza {
                    key: StanzaKey {
                        session: st.id,
                        seq,
                    },
                    stanza,
                })
                .collect(),
        })
        .await
        .unwrap_or(TimerOwner::Host);
    tracing::info!(?owner, "connection lost: session hibernated");
    let host_deadline =
        (owner == TimerOwner::Host).then(|| Instant::now() + shared.cfg.smacks_hibernation_time);
    let mut pending = Pending::new();
    let takeover = loop {
        tokio::select! {
            out = st.rx.recv_async() => match out.ok() {
                Some(ToSession::Stanza(s)) => {
                    st.gauges.taken();
                    let Some(sm) = &mut st.sm else { break None };
                    let Some(seq) = sm.on_sent(&s) else {
                        tracing::info!("smacks_max_queue_size reached while hibernated: session ends");
                        st.spill.push(*s);
                        break None;
                    };
                    let write = keep_queued(st, [(seq, &*s)], shared);
                    pending.push_back((
                        StanzaQueued {
                            user: st.user.clone(),
                            stanza: QueuedStanza {
                                key: StanzaKey { session: st.id, seq },
                                stanza: *s,
                            },
                        },
                        write,
                    ));
                }
                Some(ToSession::Resume(t)) => break Some(*t),
                Some(ToSession::Expire) if owner == TimerOwner::Module => {
                    tracing::info!("hibernation ended by the push module");
                    break None;
                }
                Some(ToSession::Expire) => {}
                Some(ToSession::Conflict | ToSession::Shutdown | ToSession::Revoked) | None => {
                    break None;
                }
            },
            () = oldest_written(&mut pending), if !pending.is_empty() => {
                if let Some((queued, _)) = pending.pop_front() {
                    shared.hub.do_send(queued);
                }
            }
            _ = sleep_until(host_deadline) => {
                tracing::info!("hibernation timed out");
                break None;
            }
        }
    };
    // Hibernation is over, without waiting for the store: the module hears of the
    // stanzas whose copy is stored already, and need not hear of the rest as queued. A
    // resumed client gets them at once; at the session's end they go to offline storage,
    // which tells the module of them (keyed, so nothing is pushed twice, D13) once they
    // are stored there. Waiting here would hold a resumption, or the closing of the
    // session's channel, behind a busy disk.
    while let Some((queued, write)) = pending.pop_front() {
        if let Some(mut write) = write
            && (&mut write).now_or_never().is_none()
        {
            break;
        }
        shared.hub.do_send(queued);
    }
    takeover
}

/// Stanzas queued while hibernated, each with the write of its stored copy (if it has
/// one) still to be answered.
type Pending = std::collections::VecDeque<(StanzaQueued, Option<Written>)>;

/// The answer to a write of stored copies, logged when it failed.
type Written = futures::future::LocalBoxFuture<'static, ()>;

/// Waits for the write of the oldest pending stanza. The store answers in the order it
/// was asked, so the ones after it are answered with it or later.
async fn oldest_written(pending: &mut Pending) {
    if let Some((_, Some(write))) = pending.front_mut() {
        write.await;
    }
}

/// Whether offline storage takes this stanza when its session ends (see `destroy`): only
/// those get a stored copy while they wait (D23). Other stanzas are bounced or dropped
/// at the session's end, which after a crash has happened already.
fn kept_offline(s: &Element) -> bool {
    s.name() == "message" && matches!(s.attr("type").unwrap_or("normal"), "chat" | "normal")
}

/// D23: asks the store, at once and in one durable write, to keep copies of the queued
/// messages among `stanzas` (delay-stamped, as offline storage keeps them), and returns
/// the wait for its answer. Asked at once, the write joins the store's next group commit
/// in order with every other request. The copies go as the client acknowledges them,
/// or as the session ends. Their deletion is durable too, though nobody waits for it:
/// it costs a commit per acknowledgement that lets copies go (about one per
/// resumption), shared with whatever else commits then, and it keeps a crash from
/// bringing back, as offline messages, what the client had acknowledged (a duplicate
/// remains possible in the time of that commit).
fn keep_queued<'a>(
    st: &mut State,
    stanzas: impl IntoIterator<Item = (u64, &'a Element)>,
    shared: &Shared,
) -> Option<Written> {
    let sm = st.sm.as_mut()?;
    let mut through = 0;
    let changes: Vec<Change> = stanzas
        .into_iter()
        .filter(|(_, s)| kept_offline(s))
        .map(|(seq, s)| {
            through = through.max(seq);
            Change::PutQueued {
                user: st.user.clone(),
                session: sm.id.clone(),
                seq,
                stanza: String::from(&stanza::delay_stamped(s, &shared.cfg.domain)),
            }
        })
        .collect();
    if changes.is_empty() {
        return None;
    }
    let (store, user, session) = (shared.store.clone(), st.user.clone(), sm.id.clone());
    sm.stored_through(through, move || {
        Box::new(move |up_to| {
            store.do_send(Write {
                changes: vec![Change::DeleteQueued {
                    user: user.clone(),
                    session: session.clone(),
                    up_to,
                }],
                durable: true,
            });
        })
    });
    // Through a clone of the address: a clone is never parked, so the request joins the
    // store's queue now, behind everything asked before it, even past the mailbox's soft
    // capacity (the store's own bound, `store_max_pending`, still holds). Through the
    // shared address a full mailbox would hold it back until this future is polled, which
    // is only when it is the oldest: one commit per message.
    let write = shared.store.clone().send(Write {
        changes,
        durable: true,
    });
    Some(Box::pin(async move {
        match write.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "queued message not stored: a crash would lose it")
            }
            Err(_) => tracing::error!("store gone: a queued message was not stored"),
        }
    }))
}

/// Moves the session onto a new connection: `<resumed/>`, then every unacked stanza again.
async fn resume(t: Takeover, st: &mut State, shared: &Shared) -> Option<(Box<Xml>, SizeGuard)> {
    let Takeover { mut xml, guard, h } = t;
    let sm = st.sm.as_mut()?;
    if sm.on_ack(h).is_err() {
        let _ = xml.send(&handled_count_too_high()).await;
        let _ = xml.shutdown().await;
        return None;
    }
    st.owner.do_send(SetHibernated {
        id: st.id,
        hibernated: false,
    });
    let mut resumed = Element::builder("resumed", SM_NS).build();
    stanza::set_attr(&mut resumed, "previd", &sm.id);
    stanza::set_attr(&mut resumed, "h", &sm.h().to_string());
    xml.send(&resumed).await.ok()?;
    for (_, s) in sm.unacked() {
        xml.send(&s).await.ok()?;
    }
    if sm.unacked_len() > 0 {
        xml.send(&Element::builder("r", SM_NS).build()).await.ok()?;
        st.ack_deadline = Some(Instant::now() + shared.cfg.smacks_max_ack_delay);
    }
    shared.hub.do_send(SessionResumed {
        user: st.user.clone(),
        session: st.id,
        acked: sm.acked(),
    });
    tracing::info!("session resumed");
    Some((xml, guard))
}

/// The session ends for good: its unacked messages go to offline storage (keyed, so the
/// push module does not push what it already pushed, D13), other stanzas bounce, and
/// everyone who should hear of it does.
async fn destroy(st: &mut State, shared: &Shared) {
    // The channel is emptied and closed in one step, with no await in between: the
    // router (on this thread) cannot slip a stanza in, and any it sends later fails and
    // is bounced there instead of vanishing with the channel.
    let (_, closed) = flume::bounded(0);
    let rx = std::mem::replace(&mut st.rx, closed);
    let mut leftovers = st.sm.as_mut().map(SmState::drain).unwrap_or_default();
    leftovers.extend(st.spill.drain(..).map(|s| (0, s)));
    // Stanzas delivered to the channel but never written count as unacked too.
    for item in rx.drain() {
        if let ToSession::Stanza(s) = item {
            st.gauges.taken();
            leftovers.push((0, *s));
        }
    }
    drop(rx);
    let mut to_store = Vec::new();
    for (seq, s) in leftovers {
        let kind = s.attr("type").unwrap_or("normal");
        let is_message = s.name() == "message";
        if is_message && matches!(kind, "chat" | "normal") {
            let key = (seq > 0).then_some(StanzaKey {
                session: st.id,
                seq,
            });
            to_store.push((s, key, stored_copy(st, seq)));
        } else if is_message && matches!(kind, "groupchat" | "headline") {
            // Neither is stored or bounced (RFC 6121 §8.5.2: a room re-sends history,
            // a headline is of the moment).
            tracing::debug!(
                kind,
                "unacked groupchat or headline dropped with the session"
            );
        } else if let Some(bounce) = stanza::error_reply(&s, "cancel", "recipient-unavailable") {
            shared.router.do_send(Route(bounce));
        } else {
            tracing::debug!("unacked error stanza dropped with the session");
        }
    }
    // Stored in chunks asked for at once, in order: they share the store's group
    // commits instead of waiting for an fsync each. A message's stored copy (D23) goes
    // in the same commit that stores it offline (or refuses it: it is then bounced).
    let mut unsettled = false;
    while !to_store.is_empty() {
        let rest = to_store.split_off(to_store.len().min(OFFLINE_CHUNK));
        let chunk = std::mem::replace(&mut to_store, rest);
        let requests = chunk.iter().map(|(s, _, release)| {
            shared.store.send(PushOffline {
                user: st.user.clone(),
                stanza: String::from(&stanza::delay_stamped(s, &shared.cfg.domain)),
                max: shared.cfg.offline_max_messages,
                max_bytes: shared.cfg.offline_max_bytes,
                release: release.clone(),
            })
        });
        let results = futures::future::join_all(requests).await;
        for ((s, key, release), stored) in chunk.into_iter().zip(results) {
            let stored = stored.unwrap_or(Err(StoreError::Closed));
            unsettled |= release.is_some()
                && matches!(&stored, Err(e) if !matches!(e, StoreError::Full | StoreError::NoSuchUser));
            after_offline(st, s, key, stored, shared);
        }
    }
    if unsettled && let Some(sm) = &mut st.sm {
        // A failed write left stored copies of messages that were bounced instead.
        sm.release_rest();
    }
    st.owner.do_send(Unbind { id: st.id });
    if let Some(sm) = &st.sm
        && !sm.id.is_empty()
    {
        st.owner.do_send(SmForget {
            id: sm.id.clone(),
            session: st.id,
            h: sm.h(),
        });
    }
    if st.available {
        let mut unavailable = Element::builder("presence", CLIENT_NS).build();
        stanza::set_attr(&mut unavailable, "type", "unavailable");
        stanza::set_attr(&mut unavailable, "from", &st.jid.to_string());
        broadcast(&unavailable, false, st, shared).await;
    }
    // After the keyed offline events, so the module still has this session's marks.
    shared.hub.do_send(SessionClosed {
        user: st.user.clone(),
        session: st.id,
    });
    tracing::info!(jid = %st.jid, "session ended");
}

/// Where the stanza `seq` of the session has a stored copy (D23), if it may have one.
fn stored_copy(st: &State, seq: u64) -> Option<QueuedKey> {
    let sm = st.sm.as_ref()?;
    (seq > 0 && sm.is_stored(seq)).then(|| QueuedKey {
        session: sm.id.clone(),
        seq,
    })
}

/// Unacked messages asked to be stored at once when a session ends (well within the
/// store's mailbox, so they keep their order).
const OFFLINE_CHUNK: usize = 64;

/// What becomes of an unacked message offered to offline storage: stored (and the push
/// module hears of it, keyed, D13), or bounced to its sender (D22).
fn after_offline(
    st: &State,
    mut s: Element,
    key: Option<StanzaKey>,
    stored: Result<u64, StoreError>,
    shared: &Shared,
) {
    match stored {
        Ok(_) => {
            // The bare JID, as a message to an absent resource is stored for the user.
            stanza::set_attr(&mut s, "to", &st.bare.to_string());
            shared.hub.do_send(OfflineMessage {
                user: st.user.clone(),
                stanza: s,
                key,
            });
        }
        Err(e) => {
            // D22: past offline storage's limit the sender learns it, like any full store.
            let (kind, condition) = match e {
                StoreError::Full => ("wait", "resource-constraint"),
                StoreError::NoSuchUser => ("cancel", "service-unavailable"),
                _ => ("wait", "internal-server-error"),
            };
            tracing::info!(error = %e, condition, "unacked message not stored offline: bounced");
            if let Some(b) = stanza::error_reply(&s, kind, condition) {
                shared.router.do_send(Route(b));
            }
        }
    }
}

/// Handles one element from the bound client. `false` ends the session.
async fn handle_client(mut el: Element, xml: &mut Xml, st: &mut State, shared: &Shared) -> bool {
    if !matches!(el.name(), "message" | "presence" | "iq") {
        close_with(xml, "unsupported-stanza-type").await;
        return false;
    }
    if !el.has_ns(CLIENT_NS) {
        close_with(xml, "invalid-namespace").await;
        return false;
    }
    stanza::set_attr(&mut el, "from", &st.jid.to_string());
    let to: Option<Jid> = match el.attr("to") {
        None => None,
        Some(t) => match t.parse() {
            Ok(j) => Some(j),
            Err(_) => {
                if let Some(r) = stanza::error_reply(&el, "modify", "jid-malformed") {
                    return send_stanza(xml, st, r, shared).await;
                }
                return true;
            }
        },
    };
    let to_self = to
        .as_ref()
        .is_none_or(|t| t.resource().is_none() && t.to_bare() == st.bare);
    let to_server = to.as_ref().is_some_and(|t| {
        t.node().is_none() && t.resource().is_none() && t.domain().as_str() == shared.cfg.domain
    });
    match el.name() {
        "iq" if el.has_child("query", roster::ROSTER_NS) && to_self => {
            match roster_iq(&el, st, shared).await {
                Some(r) => send_stanza(xml, st, r, shared).await,
                None => true,
            }
        }
        "iq" if to_self || to_server => {
            match server_iq(&el, to_server, &st.session, shared).await {
                Some(r) => send_stanza(xml, st, r, shared).await,
                None => true,
            }
        }
        "presence" if to.is_none() => {
            let t = el.attr("type");
            let now_available = t.is_none();
            if t.is_none() || t == Some("unavailable") {
                let initial = now_available && !st.available;
                st.available = now_available;
                st.owner.do_send(SetAvailable {
                    id: st.id,
                    presence: now_available.then(|| el.clone()),
                });
                let pending = broadcast(&el, initial, st, shared).await;
                if initial {
                    for request in pending {
                        if !send_stanza(xml, st, request, shared).await {
                            return false;
                        }
                    }
                    return deliver_offline(xml, st, shared).await;
                }
            }
            true
        }
        "presence"
            if matches!(
                el.attr("type"),
                Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")
            ) =>
        {
            if let Some(to) = to {
                subscribe_out(el, to.to_bare(), st, shared).await;
            }
            true
        }
        _ => {
            shared.router.do_send(Route(el));
            true
        }
    }
}

async fn load_roster(st: &State, shared: &Shared) -> Vec<(String, RosterItem)> {
    match shared
        .store
        .send(LoadRoster {
            user: st.user.clone(),
        })
        .await
    {
        Ok(Ok(r)) => r,
        _ => {
            tracing::error!("cannot read the roster");
            Vec::new()
        }
    }
}

/// RFC 6121 §4: the user's presence goes to the user's other resources and to every
/// contact allowed to see it; an initial presence also probes the contacts the user
/// sees. Returns the subscription requests that wait for the user's answer.
async fn broadcast(presence: &Element, initial: bool, st: &State, shared: &Shared) -> Vec<Element> {
    let roster = load_roster(st, shared).await;
    let mut own = presence.clone();
    stanza::set_attr(&mut own, "to", &st.bare.to_string());
    shared.router.do_send(Route(own));
    let mut pending = Vec::new();
    for (contact, item) in &roster {
        if item.subscription.from() {
            let mut copy = presence.clone();
            stanza::set_attr(&mut copy, "to", contact);
            shared.router.do_send(Route(copy));
        }
        if initial && item.subscription.to() {
            let mut probe = Element::builder("presence", CLIENT_NS).build();
            stanza::set_attr(&mut probe, "type", "probe");
            stanza::set_attr(&mut probe, "from", &st.bare.to_string());
            stanza::set_attr(&mut probe, "to", contact);
            shared.router.do_send(Route(probe));
        }
        if initial
            && let Some(request) = item
                .pending_in
                .as_deref()
                .and_then(|x| x.parse::<Element>().ok())
        {
            pending.push(request);
        }
    }
    pending
}

/// A subscription request or answer from the user (RFC 6121 §3): the user's roster item
/// changes and is pushed, then the presence goes out from the bare JID.
async fn subscribe_out(mut el: Element, contact: BareJid, st: &State, shared: &Shared) {
    let kind = el.attr("type").unwrap_or_default().to_string();
    let contact = contact.to_string();
    let roster = load_roster(st, shared).await;
    let existing = roster
        .iter()
        .find(|(c, _)| *c == contact)
        .map(|(_, i)| i.clone());
    if existing.is_none() && roster.len() >= shared.cfg.roster_max_items {
        tracing::info!("roster_max_items reached: subscription request not sent");
        return;
    }
    let mut item = existing.unwrap_or_default();
    if roster::outbound(&mut item, &kind) {
        let _ = st
            .owner
            .send(SaveRosterItem {
                contact: contact.clone(),
                item: Some(item),
            })
            .await;
    }
    stanza::set_attr(&mut el, "from", &st.bare.to_string());
    stanza::set_attr(&mut el, "to", &contact);
    shared.router.do_send(Route(el));
}

/// Roster get and set (RFC 6121 §2).
async fn roster_iq(iq: &Element, st: &State, shared: &Shared) -> Option<Element> {
    let query = iq.get_child("query", roster::ROSTER_NS)?;
    match iq.attr("type") {
        Some("get") => {
            let roster = load_roster(st, shared).await;
            let mut q = Element::builder("query", roster::ROSTER_NS).build();
            for (contact, item) in roster.iter().filter(|(_, i)| i.listed) {
                q.append_child(roster::item_element(contact, Some(item)));
            }
            Some(stanza::iq_result(iq, Some(q)))
        }
        Some("set") => {
            let set = match roster::parse_set(query, &st.bare) {
                Ok(s) => s,
                Err(condition) => return stanza::error_reply(iq, "modify", condition),
            };
            let roster = load_roster(st, shared).await;
            let (contact, item) = match set {
                roster::RosterSet::Update {
                    contact,
                    name,
                    groups,
                } => {
                    let contact = contact.to_string();
                    let existing = roster
                        .iter()
                        .find(|(c, _)| *c == contact)
                        .map(|(_, i)| i.clone());
                    if existing.is_none() && roster.len() >= shared.cfg.roster_max_items {
                        return stanza::error_reply(iq, "wait", "resource-constraint");
                    }
                    let mut item = existing.unwrap_or_default();
                    item.name = name;
                    item.groups = groups;
                    item.listed = true;
                    (contact, Some(item))
                }
                roster::RosterSet::Remove { contact } => {
                    let contact = contact.to_string();
                    // Removing a contact ends the subscriptions both ways (§2.5.2).
                    if let Some((_, item)) = roster.iter().find(|(c, _)| *c == contact) {
                        for (kind, wanted) in [
                            ("unsubscribe", item.subscription.to() || item.ask),
                            ("unsubscribed", item.subscription.from()),
                        ] {
                            if wanted {
                                let mut p = Element::builder("presence", CLIENT_NS).build();
                                stanza::set_attr(&mut p, "type", kind);
                                stanza::set_attr(&mut p, "from", &st.bare.to_string());
                                stanza::set_attr(&mut p, "to", &contact);
                                shared.router.do_send(Route(p));
                            }
                        }
                    } else {
                        return stanza::error_reply(iq, "cancel", "item-not-found");
                    }
                    (contact, None)
                }
            };
            let saved = st
                .owner
                .send(SaveRosterItem { contact, item })
                .await
                .unwrap_or(false);
            if saved {
                Some(stanza::iq_result(iq, None))
            } else {
                stanza::error_reply(iq, "wait", "internal-server-error")
            }
        }
        _ => None,
    }
}

/// After the initial presence: the messages stored while the user was away, oldest
/// first, deleted once written (with stream management, counted like any stanza).
async fn deliver_offline(xml: &mut Xml, st: &mut State, shared: &Shared) -> bool {
    let user = st.user.clone();
    let messages = match shared.store.send(LoadOffline { user: user.clone() }).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read offline messages");
            return true;
        }
        Err(_) => return true,
    };
    let Some(last) = messages.last().map(|(seq, _)| *seq) else {
        return true;
    };
    for (_, text) in messages {
        let Ok(mut el) = text.parse::<Element>() else {
            tracing::error!("unreadable offline message skipped");
            continue;
        };
        stanza::set_attr(&mut el, "to", &st.jid.to_string());
        if !send_stanza(xml, st, el, shared).await {
            // Not delivered: the messages stay stored for the next login.
            return false;
        }
    }
    let delete = Write {
        changes: vec![Change::DeleteOffline { user, up_to: last }],
        durable: true,
    };
    if !matches!(shared.store.send(delete).await, Ok(Ok(()))) {
        tracing::error!("delivered offline messages not deleted; they may come again");
    }
    true
}

/// IQs to the server or to the user's own account.
async fn server_iq(
    iq: &Element,
    to_server: bool,
    session: &Session,
    shared: &Shared,
) -> Option<Element> {
    let t = iq.attr("type");
    if !matches!(t, Some("get") | Some("set")) {
        return None;
    }
    let payload = iq.children().next();
    if payload.is_some_and(|p| p.has_ns(ns::PUSH)) {
        return shared
            .hub
            .send(PushRequest {
                session: session.clone(),
                iq: iq.clone(),
            })
            .await
            .ok()
            .flatten();
    }
    match payload {
        Some(p) if p.is("ping", PING_NS) && t == Some("get") => Some(stanza::iq_result(iq, None)),
        Some(p) if p.is("session", SESSION_NS) => Some(stanza::iq_result(iq, None)),
        Some(p) if p.is("query", DISCO_INFO) && t == Some("get") && p.attr("node").is_none() => {
            Some(stanza::iq_result(iq, Some(disco_info(to_server))))
        }
        // XEP-0030: the server's items are its components (the push app servers); an
        // account has none to list.
        Some(p) if p.is("query", DISCO_ITEMS) && t == Some("get") && p.attr("node").is_none() => {
            Some(stanza::iq_result(
                iq,
                Some(disco_items(to_server, &shared.cfg)),
            ))
        }
        Some(p) if p.is("query", DISCO_INFO) || p.is("query", DISCO_ITEMS) => {
            stanza::error_reply(iq, "cancel", "item-not-found")
        }
        // Everything else (carbons until they exist, private XML storage and bookmarks,
        // vCards, version, blocking): RFC 6120 §8.4, not implemented.
        _ => stanza::error_reply(iq, "cancel", "service-unavailable"),
    }
}

fn disco_items(server: bool, cfg: &crate::config::Config) -> Element {
    let mut q = Element::builder("query", DISCO_ITEMS).build();
    if server {
        for c in &cfg.components {
            let mut item = Element::builder("item", DISCO_ITEMS).build();
            stanza::set_attr(&mut item, "jid", &c.jid);
            q.append_child(item);
        }
    }
    q
}

/// B01/B02: the push feature is the account's, not the server's.
fn disco_info(server: bool) -> Element {
    let identity = |category: &str, kind: &str| {
        let mut e = Element::builder("identity", DISCO_INFO).build();
        stanza::set_attr(&mut e, "category", category);
        stanza::set_attr(&mut e, "type", kind);
        e
    };
    let feature = |var: &str| {
        let mut e = Element::builder("feature", DISCO_INFO).build();
        stanza::set_attr(&mut e, "var", var);
        e
    };
    let mut q = Element::builder("query", DISCO_INFO).build();
    if server {
        q.append_child(identity("server", "im"));
        q.append_child(feature(DISCO_INFO));
        q.append_child(feature(DISCO_ITEMS));
        q.append_child(feature(PING_NS));
        q.append_child(feature(SM_NS));
    } else {
        q.append_child(identity("account", "registered"));
        q.append_child(feature(DISCO_INFO));
        q.append_child(feature(ns::PUSH));
    }
    q
}
