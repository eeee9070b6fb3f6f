//! One client stream (RFC 6120): negotiation (STARTTLS, SASL, bind), then the bound
//! session, which stamps `from` on what the client sends, answers what is addressed to
//! the server or to the user's own account, and writes what the router delivers.
//!
//! Each session is a task on the actor thread; the router reaches it through a bounded
//! channel. Stream management (XEP-0198: acks, resumption, hibernation) is not built yet,
//! so a dropped connection ends the session.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_xmpp::xmlstream::{self, AcceptedStream, ReadError, StreamHeader, Timeouts, XmlStream};
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;

use super::io::{self, Io, SizeGuard, Transport};
use super::router::{Bind, Route, Router, SESSION_CHANNEL, SetAvailable, ToSession, Unbind};
use super::sasl::{self, SaslOutcome};
use super::stanza::{self, CLIENT_NS};
use crate::config::Config;
use crate::push::{PushHub, PushRequest, Session, SessionClosed, SessionId};
use crate::store::{Change, LoadOffline, Store, Write};

const STREAMS_NS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
const STREAM_NS: &str = "http://etherx.jabber.org/streams";
const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const BIND_NS: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const SESSION_NS: &str = "urn:ietf:params:xml:ns:xmpp-session";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const PING_NS: &str = "urn:xmpp:ping";

/// What every session needs from the server.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub tls: Arc<rustls::ServerConfig>,
    pub router: Addr<Router>,
    pub hub: Addr<PushHub>,
    pub store: Addr<Store>,
    /// Keys the decoy SCRAM credentials of unknown users (random per process).
    pub decoy_secret: [u8; 32],
}

type Xml = XmlStream<Io, Element>;

fn timeouts() -> Timeouts {
    Timeouts {
        read_timeout: Duration::from_secs(300),
        response_timeout: Duration::from_secs(60),
    }
}

fn stream_error(condition: &str) -> Element {
    Element::builder("error", STREAM_NS)
        .append(Element::builder(condition, STREAMS_NS))
        .build()
}

async fn close_with(xml: &mut Xml, condition: &str) {
    let _ = xml.send(&stream_error(condition)).await;
    let _ = xml.shutdown().await;
}

fn random_id() -> String {
    let mut b = [0u8; 12];
    let _ = getrandom::fill(&mut b);
    B64.encode(b).replace(['+', '/'], "x")
}

fn features(
    cfg: &Config,
    tls: bool,
    authenticated: bool,
) -> xmpp_parsers::stream_features::StreamFeatures {
    let mut f = xmpp_parsers::stream_features::StreamFeatures::default();
    if authenticated {
        f.others.push(Element::builder("bind", BIND_NS).build());
        f.others.push(
            Element::builder("session", SESSION_NS)
                .append(Element::builder("optional", SESSION_NS))
                .build(),
        );
        return f;
    }
    if !tls {
        let mut starttls = Element::builder("starttls", TLS_NS);
        if cfg.c2s_require_encryption {
            starttls = starttls.append(Element::builder("required", TLS_NS));
        }
        f.others.push(starttls.build());
    }
    if tls || !cfg.c2s_require_encryption {
        f.sasl_mechanisms.insert("SCRAM-SHA-256".into());
        f.sasl_mechanisms.insert("SCRAM-SHA-1".into());
        if tls || cfg.allow_unencrypted_plain_auth {
            f.sasl_mechanisms.insert("PLAIN".into());
        }
    }
    f
}

/// Serves one client connection to its end.
pub async fn serve(tcp: TcpStream, shared: Rc<Shared>, direct_tls: bool) {
    let peer = tcp.peer_addr().ok();
    let transport = if direct_tls {
        match tokio_rustls::TlsAcceptor::from(shared.tls.clone())
            .accept(tcp)
            .await
        {
            Ok(s) => Transport::Tls(Box::new(s)),
            Err(e) => {
                tracing::debug!(?peer, error = %e, "TLS handshake failed");
                return;
            }
        }
    } else {
        Transport::Plain(tcp)
    };
    let negotiated =
        tokio::time::timeout(shared.cfg.c2s_auth_timeout, negotiate(transport, &shared)).await;
    let bound = match negotiated {
        Ok(Some(b)) => b,
        Ok(None) => return,
        Err(_) => {
            tracing::debug!(?peer, "client did not authenticate in time");
            return;
        }
    };
    let span = tracing::info_span!("c2s", jid = %bound.jid);
    let _g = span.enter();
    tracing::info!("session bound");
    drop(_g);
    run(bound, &shared).await;
}

struct Bound {
    xml: Xml,
    guard: SizeGuard,
    jid: FullJid,
    id: SessionId,
    rx: mpsc::Receiver<ToSession>,
    tx: mpsc::Sender<ToSession>,
}

/// What reading the stream gave.
pub(super) enum Next {
    Element(Element),
    /// The peer was silent for the read timeout: poke it, or it is dropped soon.
    Idle,
    /// The stream is over (the stream error it deserved was sent).
    End,
}

/// Reads the next element, or `None` when the stream is over; a silence is answered
/// with a stream error (for streams that are still negotiating).
pub(super) async fn next(xml: &mut Xml, guard: &SizeGuard) -> Option<Element> {
    match read(xml, guard).await {
        Next::Element(el) => Some(el),
        Next::Idle => {
            close_with(xml, "connection-timeout").await;
            None
        }
        Next::End => None,
    }
}

pub(super) async fn read(xml: &mut Xml, guard: &SizeGuard) -> Next {
    match xml.next().await {
        Some(Ok(el)) => {
            guard.reset();
            Next::Element(el)
        }
        Some(Err(ReadError::SoftTimeout)) => Next::Idle,
        Some(Err(ReadError::ParseError(e))) => {
            tracing::debug!(error = %e, "invalid element");
            close_with(xml, "invalid-xml").await;
            Next::End
        }
        Some(Err(ReadError::HardError(e))) => {
            if guard.exceeded() {
                tracing::info!("stanza size limit exceeded");
                close_with(xml, "policy-violation").await;
            } else if e.kind() == std::io::ErrorKind::InvalidData {
                close_with(xml, "not-well-formed").await;
            } else {
                tracing::debug!(error = %e, "connection lost");
            }
            Next::End
        }
        Some(Err(ReadError::StreamFooterReceived)) | None => {
            let _ = xml.shutdown().await;
            Next::End
        }
    }
}

/// Opens a stream on a fresh transport: reads the header, checks the host.
async fn open(transport: Transport, shared: &Shared) -> Option<(AcceptedStream<Io>, SizeGuard)> {
    let (io, guard) = io::wrap(transport, shared.cfg.c2s_stanza_size_limit);
    match xmlstream::accept_stream(io, CLIENT_NS, timeouts()).await {
        Ok(a) => Some((a, guard)),
        Err(e) => {
            tracing::debug!(error = %e, "no valid stream header");
            None
        }
    }
}

async fn negotiate(transport: Transport, shared: &Shared) -> Option<Bound> {
    let cfg = &shared.cfg;
    let mut tls = transport.is_tls();
    let (mut accepted, mut guard) = open(transport, shared).await?;
    let mut user: Option<String> = None;
    let mut failures = 0;
    loop {
        let to_ok = accepted
            .header()
            .to
            .as_deref()
            .map(|t| t.to_ascii_lowercase())
            == Some(cfg.domain.clone());
        let pending = accepted
            .send_header(StreamHeader {
                from: Some(cfg.domain.as_str().into()),
                to: None,
                id: Some(random_id().into()),
            })
            .await
            .ok()?;
        if !to_ok {
            let error = xmpp_parsers::stream_error::StreamError {
                condition: xmpp_parsers::stream_error::DefinedCondition::HostUnknown,
                texts: Default::default(),
                application_specific: Vec::new(),
            };
            let _ = pending.send_error(&error).await;
            return None;
        }
        let mut xml: Xml = pending
            .send_features(&features(cfg, tls, user.is_some()))
            .await
            .ok()?;
        loop {
            let el = next(&mut xml, &guard).await?;
            if el.is("starttls", TLS_NS) && !tls && user.is_none() {
                xml.send(&Element::builder("proceed", TLS_NS).build())
                    .await
                    .ok()?;
                let Transport::Plain(tcp) = io::unwrap(xml.into_inner()) else {
                    return None;
                };
                let stream = tokio_rustls::TlsAcceptor::from(shared.tls.clone())
                    .accept(tcp)
                    .await
                    .ok()?;
                tls = true;
                (accepted, guard) = open(Transport::Tls(Box::new(stream)), shared).await?;
                break;
            }
            if el.has_ns(ns::SASL) && user.is_none() {
                if !tls && cfg.c2s_require_encryption {
                    close_with(&mut xml, "policy-violation").await;
                    return None;
                }
                match sasl::exchange(&mut xml, &guard, el, shared, tls).await? {
                    SaslOutcome::Success { username, success } => {
                        user = Some(username);
                        accepted = xml.accept_reset(&success).await.ok()?;
                        break;
                    }
                    SaslOutcome::Failed => {
                        failures += 1;
                        if failures >= sasl::MAX_ATTEMPTS {
                            close_with(&mut xml, "policy-violation").await;
                            return None;
                        }
                        continue;
                    }
                }
            }
            if el.is("iq", CLIENT_NS) && user.is_some() {
                if let Some(bind) = el
                    .get_child("bind", BIND_NS)
                    .filter(|_| el.attr("type") == Some("set"))
                {
                    let resource = bind.get_child("resource", BIND_NS).map(|r| r.text());
                    let (tx, rx) = mpsc::channel(SESSION_CHANNEL);
                    let username = user.clone()?;
                    let res = shared
                        .router
                        .send(Bind {
                            user: username,
                            resource,
                            tx: tx.clone(),
                        })
                        .await
                        .ok()?;
                    match res {
                        Ok((id, jid)) => {
                            let payload = Element::builder("bind", BIND_NS)
                                .append(Element::builder("jid", BIND_NS).append(jid.to_string()))
                                .build();
                            xml.send(&stanza::iq_result(&el, Some(payload)))
                                .await
                                .ok()?;
                            return Some(Bound {
                                xml,
                                guard,
                                jid,
                                id,
                                rx,
                                tx,
                            });
                        }
                        Err(condition) => {
                            if let Some(r) = stanza::error_reply(&el, "cancel", condition) {
                                xml.send(&r).await.ok()?;
                            }
                            continue;
                        }
                    }
                }
                if let Some(r) = stanza::error_reply(&el, "cancel", "not-allowed") {
                    xml.send(&r).await.ok()?;
                }
                continue;
            }
            // Anything else before authentication is a protocol violation.
            close_with(&mut xml, "not-authorized").await;
            return None;
        }
    }
}

/// The bound session: client → server, and router → client.
async fn run(b: Bound, shared: &Shared) {
    let Bound {
        mut xml,
        guard,
        jid,
        id,
        mut rx,
        tx,
    } = b;
    let user = jid.node().map(|n| n.to_string()).unwrap_or_default();
    let bare = jid.to_bare();
    let session = Session {
        id,
        jid: jid.clone(),
        control: shared.router.clone().recipient(),
    };
    let mut available = false;
    loop {
        tokio::select! {
            r = read(&mut xml, &guard) => match r {
                Next::Element(el) => {
                    if !handle_client(el, &mut xml, &jid, &bare, &session, &mut available, shared).await {
                        break;
                    }
                }
                Next::Idle => {
                    // XEP-0199 from the server: a live client answers before the hard timeout.
                    let mut ping = Element::builder("iq", CLIENT_NS)
                        .append(Element::builder("ping", PING_NS))
                        .build();
                    stanza::set_attr(&mut ping, "type", "get");
                    stanza::set_attr(&mut ping, "id", "keepalive");
                    stanza::set_attr(&mut ping, "to", &jid.to_string());
                    stanza::set_attr(&mut ping, "from", &shared.cfg.domain);
                    if xml.send(&ping).await.is_err() {
                        break;
                    }
                }
                Next::End => break,
            },
            out = rx.recv() => match out {
                Some(ToSession::Stanza(s)) => {
                    if xml.send(&s).await.is_err() {
                        break;
                    }
                }
                Some(ToSession::Close(condition)) => {
                    close_with(&mut xml, condition).await;
                    break;
                }
                // Without stream management there is no hibernation to end.
                Some(ToSession::Expire) | None => break,
            },
        }
    }
    drop(tx);
    shared.router.do_send(Unbind {
        user: user.clone(),
        id,
    });
    if available {
        let mut unavailable = Element::builder("presence", CLIENT_NS).build();
        stanza::set_attr(&mut unavailable, "type", "unavailable");
        stanza::set_attr(&mut unavailable, "from", &jid.to_string());
        stanza::set_attr(&mut unavailable, "to", &bare.to_string());
        shared.router.do_send(Route(unavailable));
    }
    shared.hub.do_send(SessionClosed { user, session: id });
    tracing::info!(%jid, "session ended");
}

/// Handles one element from the bound client. `false` ends the session.
async fn handle_client(
    mut el: Element,
    xml: &mut Xml,
    jid: &FullJid,
    bare: &BareJid,
    session: &Session,
    available: &mut bool,
    shared: &Shared,
) -> bool {
    if !el.has_ns(CLIENT_NS) || !matches!(el.name(), "message" | "presence" | "iq") {
        close_with(xml, "unsupported-stanza-type").await;
        return false;
    }
    stanza::set_attr(&mut el, "from", &jid.to_string());
    let to: Option<Jid> = match el.attr("to") {
        None => None,
        Some(t) => match t.parse() {
            Ok(j) => Some(j),
            Err(_) => {
                if let Some(r) = stanza::error_reply(&el, "modify", "jid-malformed") {
                    return xml.send(&r).await.is_ok();
                }
                return true;
            }
        },
    };
    let to_self = to
        .as_ref()
        .is_none_or(|t| t.resource().is_none() && t.to_bare() == *bare);
    let to_server = to.as_ref().is_some_and(|t| {
        t.node().is_none() && t.resource().is_none() && t.domain().as_str() == shared.cfg.domain
    });
    match el.name() {
        "iq" if to_self || to_server => {
            let reply = server_iq(&el, to_server, session, shared).await;
            match reply {
                Some(r) => xml.send(&r).await.is_ok(),
                None => true,
            }
        }
        "presence" if to.is_none() => {
            let t = el.attr("type");
            let now_available = t.is_none();
            let user = bare.node().map(|n| n.to_string()).unwrap_or_default();
            if t.is_none() || t == Some("unavailable") {
                let initial = now_available && !*available;
                *available = now_available;
                shared.router.do_send(SetAvailable {
                    user: user.clone(),
                    id: session.id,
                    available: now_available,
                });
                if initial {
                    return deliver_offline(xml, &user, jid, shared).await;
                }
            }
            true
        }
        _ => {
            shared.router.do_send(Route(el));
            true
        }
    }
}

/// After the initial presence: the messages stored while the user was away, oldest
/// first. They are deleted once written to the socket (with stream management they will
/// be deleted at the client's ack instead).
async fn deliver_offline(xml: &mut Xml, user: &str, jid: &FullJid, shared: &Shared) -> bool {
    let messages = match shared
        .store
        .send(LoadOffline {
            user: user.to_string(),
        })
        .await
    {
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
        stanza::set_attr(&mut el, "to", &jid.to_string());
        if xml.send(&el).await.is_err() {
            // Not delivered: the messages stay stored for the next login.
            return false;
        }
    }
    let delete = Write {
        changes: vec![Change::DeleteOffline {
            user: user.to_string(),
            up_to: last,
        }],
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
            .ok();
    }
    match payload {
        Some(p) if p.is("ping", PING_NS) && t == Some("get") => Some(stanza::iq_result(iq, None)),
        Some(p) if p.is("session", SESSION_NS) => Some(stanza::iq_result(iq, None)),
        Some(p) if p.is("query", DISCO_INFO) && t == Some("get") && p.attr("node").is_none() => {
            let mut q = Element::builder("query", DISCO_INFO);
            if to_server {
                q = q
                    .append(
                        Element::builder("identity", DISCO_INFO)
                            .attr(name("category"), "server")
                            .attr(name("type"), "im")
                            .attr(name("name"), "cloud-notify"),
                    )
                    .append(feature(DISCO_INFO))
                    .append(feature(PING_NS));
            } else {
                // B01/B02: the push feature is the account's, not the server's.
                q = q
                    .append(
                        Element::builder("identity", DISCO_INFO)
                            .attr(name("category"), "account")
                            .attr(name("type"), "registered"),
                    )
                    .append(feature(DISCO_INFO))
                    .append(feature(ns::PUSH));
            }
            Some(stanza::iq_result(iq, Some(q.build())))
        }
        _ => stanza::error_reply(iq, "cancel", "service-unavailable"),
    }
}

fn name(s: &'static str) -> xmpp_parsers::minidom::rxml::NcName {
    // Only literal attribute names reach here.
    xmpp_parsers::minidom::rxml::NcName::try_from(s).expect("literal is a valid XML name")
}

fn feature(var: &str) -> Element {
    Element::builder("feature", DISCO_INFO)
        .attr(name("var"), var)
        .build()
}
