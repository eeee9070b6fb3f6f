//! One client stream (RFC 6120): negotiation (STARTTLS, SASL, bind), then the bound
//! session, which stamps `from` on what the client sends, answers what is addressed to
//! the server or to the user's own account, and writes what the router delivers.
//!
//! Each session is a task on the actor thread; the router reaches it through a bounded
//! channel. Stream management (XEP-0198: acks, resumption, hibernation) is not built yet,
//! so a dropped connection ends the session.

use std::rc::Rc;
use std::time::Duration;

use tokio::net::TcpStream;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;

use super::admission::{Negotiating, Place};
use super::connection::{Shared, Xml, close_with, next_before};
use super::io::{self, SizeGuard, Transport};
use super::router::{BindSession, BoundSession, ResumeFailed, ResumeSession};
use super::sasl::{self, SaslOutcome};
use super::sm::SM_NS;
use super::socket::{self, Start};
use super::stanza::{self, CLIENT_NS};
use super::user::CSI_NS;
use super::xml::{self, Header, OurHeader, Read, XmlStream};
use crate::config::Config;

const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const BIND_NS: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const SESSION_NS: &str = "urn:ietf:params:xml:ns:xmpp-session";

use super::stanza::random_id;

/// Our stream features (RFC 6120 §4.3.2), built here so that they say exactly what is
/// offered: no `<mechanisms/>` when no mechanism is (an empty one stops xmpp.js), bind,
/// the optional session and stream management only after authentication.
fn features(cfg: &Config, tls: bool, authenticated: bool) -> Element {
    let mut f = Element::builder("features", xml::STREAM_NS);
    if authenticated {
        return f
            .append(Element::builder("bind", BIND_NS))
            .append(
                Element::builder("session", SESSION_NS)
                    .append(Element::builder("optional", SESSION_NS)),
            )
            .append(Element::builder("sm", SM_NS))
            .append(Element::builder("csi", CSI_NS))
            .build();
    }
    if !tls {
        let mut starttls = Element::builder("starttls", TLS_NS);
        if cfg.c2s_require_encryption {
            starttls = starttls.append(Element::builder("required", TLS_NS));
        }
        f = f.append(starttls);
    }
    let mut mechanisms = Vec::new();
    if tls || !cfg.c2s_require_encryption {
        mechanisms.extend(["SCRAM-SHA-256", "SCRAM-SHA-1"]);
        if tls || cfg.allow_unencrypted_plain_auth {
            mechanisms.push("PLAIN");
        }
    }
    if !mechanisms.is_empty() {
        f = f.append(
            Element::builder("mechanisms", ns::SASL).append_all(
                mechanisms
                    .into_iter()
                    .map(|m| Element::builder("mechanism", ns::SASL).append(m)),
            ),
        );
    }
    f.build()
}

/// One client connection, from accept to the end of its session. `place` is its place
/// under the connection limits; it stays with the socket (see [`io::hold`]).
/// `negotiating` is its place among the connections not yet bound.
pub async fn serve(
    tcp: TcpStream,
    shared: Rc<Shared>,
    direct_tls: bool,
    place: Place,
    negotiating: Negotiating,
) {
    // Boxed, like the session's phases: the task's future keeps the size of its largest
    // state for the session's whole life, and the TLS handshake's state is large.
    let Some(start) = Box::pin(establish(tcp, &shared, direct_tls, place, negotiating)).await
    else {
        return;
    };
    // Every log line of the session carries its JID.
    let span = tracing::info_span!("c2s", jid = %start.jid);
    span.in_scope(|| tracing::info!("session bound"));
    tracing::Instrument::instrument(Box::pin(socket::run(start, shared)), span).await;
}

/// TLS (for direct TLS), then the negotiation up to a bound resource, all within
/// `c2s_auth_timeout`. The negotiating place is given back when this returns.
async fn establish(
    tcp: TcpStream,
    shared: &Rc<Shared>,
    direct_tls: bool,
    place: Place,
    _negotiating: Negotiating,
) -> Option<Start> {
    let peer = tcp.peer_addr().ok();
    let ip = peer.map(|p| p.ip().to_string()).unwrap_or_default();
    let deadline = tokio::time::Instant::now() + shared.cfg.c2s_auth_timeout;
    let stages = async {
        let transport = if direct_tls {
            match tokio_rustls::TlsAcceptor::from(shared.tls.clone())
                .accept(tcp)
                .await
            {
                Ok(s) => Transport::Tls(Box::new(s)),
                Err(e) => {
                    tracing::debug!(?peer, error = %e, "negotiation ended: TLS handshake failed");
                    return None;
                }
            }
        } else {
            Transport::Plain(tcp)
        };
        negotiate(transport, shared, deadline, place).await
    };
    // The reads inside send `connection-timeout` themselves at the deadline; this outer
    // bound covers what has no stream to send it on (the TLS handshake, the header).
    // Every line of the negotiation names the client's address.
    let stages = tracing::Instrument::instrument(stages, tracing::info_span!("c2s", %ip));
    match tokio::time::timeout_at(deadline + Duration::from_secs(1), stages).await {
        Ok(bound) => bound,
        Err(_) => {
            tracing::debug!(
                ?peer,
                "negotiation ended: client did not authenticate in time"
            );
            None
        }
    }
}

/// Opens a stream on a fresh transport: reads the client's header.
async fn open(
    transport: Transport,
    place: Option<Place>,
    shared: &Shared,
) -> Option<(Xml, SizeGuard, Header)> {
    let (mut io, guard) = io::wrap(transport, shared.cfg.c2s_stanza_size_limit);
    io::hold(&mut io, place);
    let mut xml = XmlStream::new(io, CLIENT_NS, shared.cfg.xml_limits());
    let header = read_header(&mut xml, &shared.cfg.domain).await?;
    guard.reset();
    Some((xml, guard, header))
}

/// The client's stream header; without one the stream ends, with the error it
/// deserved after a header of ours (RFC 6120 §4.9.1.1).
pub(super) async fn read_header(xml: &mut Xml, domain: &str) -> Option<Header> {
    let condition = match xml.read_header().await {
        Ok(h) => return Some(h),
        Err(Read::Invalid(e)) => {
            tracing::debug!(error = %e, "stream closed: no valid stream header");
            e.condition()
        }
        Err(Read::Io(e)) => {
            tracing::debug!(error = %e, "connection ended before a stream header");
            return None;
        }
        Err(other) => {
            tracing::debug!(got = ?std::mem::discriminant(&other), "no stream header");
            return None;
        }
    };
    let _ = xml.feed_header(our_header(domain, &random_id()));
    close_with(xml, condition).await;
    None
}

fn our_header<'a>(domain: &'a str, id: &'a str) -> OurHeader<'a> {
    OurHeader {
        from: Some(domain),
        to: None,
        id: Some(id),
    }
}

/// `<failed/>` for a session that cannot be resumed, with its last `h` when remembered.
async fn fail_resume(xml: &mut Xml, h: Option<u32>) {
    let mut failed = Element::builder("failed", SM_NS)
        .append(Element::builder("item-not-found", stanza::STANZAS_NS))
        .build();
    if let Some(h) = h {
        stanza::set_attr(&mut failed, "h", &h.to_string());
    }
    let _ = xml.send(&failed).await;
}

async fn negotiate(
    transport: Transport,
    shared: &Shared,
    deadline: tokio::time::Instant,
    place: Place,
) -> Option<Start> {
    let cfg = &shared.cfg;
    let mut tls = transport.is_tls();
    let (mut xml, mut guard, mut header) = open(transport, Some(place), shared).await?;
    let mut user: Option<String> = None;
    let mut failures = 0;
    loop {
        let to_ok =
            header.to.as_deref().map(|t| t.to_ascii_lowercase()) == Some(cfg.domain.clone());
        xml.feed_header(our_header(&cfg.domain, &random_id()))
            .ok()?;
        // RFC 6120 §4.7.5: we speak 1.0; a higher major version cannot be served. (No
        // version means a pre-1.0 client; it is offered the 1.0 features all the same.)
        if header
            .version
            .as_deref()
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
            .is_some_and(|major| major > 1)
        {
            tracing::debug!(version = ?header.version, "stream closed: unsupported-version");
            close_with(&mut xml, "unsupported-version").await;
            return None;
        }
        if !to_ok {
            tracing::debug!(to = ?header.to, "stream closed: host-unknown");
            close_with(&mut xml, "host-unknown").await;
            return None;
        }
        xml.send(&features(cfg, tls, user.is_some())).await.ok()?;
        loop {
            let el = next_before(&mut xml, &guard, deadline, shared).await?;
            if el.is("starttls", TLS_NS) && !tls && user.is_none() {
                xml.send(&Element::builder("proceed", TLS_NS).build())
                    .await
                    .ok()?;
                let (Transport::Plain(tcp), place) = io::unwrap(xml.into_inner()) else {
                    return None;
                };
                let stream = tokio_rustls::TlsAcceptor::from(shared.tls.clone())
                    .accept(tcp)
                    .await
                    .ok()?;
                tls = true;
                (xml, guard, header) =
                    open(Transport::Tls(Box::new(stream)), place, shared).await?;
                break;
            }
            if el.has_ns(ns::SASL) && user.is_none() {
                if !tls && cfg.c2s_require_encryption {
                    close_with(&mut xml, "policy-violation").await;
                    return None;
                }
                match sasl::exchange(&mut xml, &guard, el, shared, tls, deadline).await? {
                    SaslOutcome::Success { username, success } => {
                        user = Some(username);
                        // The restart point is right after <success/>: whatever the
                        // client sent after its last element (a newline, say) belongs
                        // to the old stream and is skipped by the reader.
                        xml.restart();
                        xml.send(&success).await.ok()?;
                        header = read_header(&mut xml, &cfg.domain).await?;
                        guard.reset();
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
            if el.is("resume", SM_NS) && user.is_some() {
                let username = user.clone()?;
                let previd = el.attr("previd").unwrap_or_default().to_string();
                let Some(h) = el.attr("h").and_then(|h| h.parse::<u32>().ok()) else {
                    close_with(&mut xml, "undefined-condition").await;
                    return None;
                };
                let found = shared
                    .router
                    .send(ResumeSession {
                        user: username,
                        previd,
                        h,
                    })
                    .await
                    .ok()?;
                match found {
                    Ok(s) => {
                        return Some(Start {
                            xml: Box::new(xml),
                            guard,
                            jid: s.jid,
                            id: s.id,
                            owner: s.owner,
                            rx: s.rx,
                            received: s.received,
                            conn: s.conn,
                            gauges: s.gauges,
                            sm: true,
                            first: s.first,
                        });
                    }
                    Err(ResumeFailed::HandledCountTooHigh) => {
                        let _ = xml.send(&super::sm::handled_count_too_high()).await;
                        let _ = xml.shutdown().await;
                        return None;
                    }
                    Err(ResumeFailed::Unknown(old_h)) => {
                        fail_resume(&mut xml, old_h).await;
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
                    let username = user.clone()?;
                    let res = shared
                        .router
                        .send(BindSession {
                            user: username,
                            resource,
                        })
                        .await
                        .ok()?;
                    match res {
                        Ok(BoundSession {
                            id,
                            owner,
                            gauges,
                            bound,
                        }) => {
                            let payload = Element::builder("bind", BIND_NS)
                                .append(
                                    Element::builder("jid", BIND_NS).append(bound.jid.to_string()),
                                )
                                .build();
                            xml.send(&stanza::iq_result(&el, Some(payload)))
                                .await
                                .ok()?;
                            return Some(Start {
                                xml: Box::new(xml),
                                guard,
                                jid: bound.jid,
                                id,
                                owner,
                                rx: bound.rx,
                                received: bound.received,
                                conn: bound.conn,
                                gauges,
                                sm: false,
                                first: Vec::new(),
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
            // A stanza in another default namespace: the stream's namespace is wrong.
            if matches!(el.name(), "message" | "presence" | "iq") && !el.has_ns(CLIENT_NS) {
                close_with(&mut xml, "invalid-namespace").await;
                return None;
            }
            // Anything else before authentication is a protocol violation.
            close_with(&mut xml, "not-authorized").await;
            return None;
        }
    }
}
