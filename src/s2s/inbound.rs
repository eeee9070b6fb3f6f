//! Inbound server-to-server streams (`s2s_listen`, and `s2s_direct_tls_listen` with TLS
//! from the first byte, XEP-0368, ALPN `xmpp-server`): STARTTLS with our certificate,
//! dialback (a peer's `<db:result/>` is checked with its authoritative server, and
//! `<db:verify/>` questions about keys we handed out are answered), then the peer's
//! stanzas: each must come from a domain authenticated on the stream and be addressed
//! to ours (`invalid-from`, `host-unknown` otherwise). A stream must authenticate within
//! `s2s_timeout`, and is closed once idle for `s2s_idle_timeout`; the connection quotas are `s2s_max_connections` and
//! `s2s_max_connections_per_ip`.

use std::rc::Rc;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::Shared;
use super::negotiate::{self, Pair, SASL_NS, TLS_NS, served};
use super::queue::{self, Bidi, Key, Queued};
use super::verify;
use crate::push::AppServerResponse;
use crate::xmpp::admission::{Admission, Place};
use crate::xmpp::io::{self, SizeGuard, Transport};
use crate::xmpp::route::Route;
use crate::xmpp::stanza::{self, CLIENT_NS};
use crate::xmpp::xml::{DIALBACK_NS, OurHeader, Read, SERVER_NS, XmlStream};

/// Domains one stream may authenticate (XEP-0220 multiplexing); more are refused.
const MAX_DOMAINS_PER_STREAM: usize = 16;

/// Accepts server connections until the server stops, on the STARTTLS listener and the
/// direct-TLS one, under one set of quotas (`admission`, made from `Quotas::s2s`; the
/// server changes them at a SIGHUP).
pub fn listen(
    plain: Option<TcpListener>,
    direct_tls: Option<TcpListener>,
    shared: Rc<Shared>,
    admission: Admission,
    stopped: watch::Receiver<bool>,
) {
    for (listener, direct) in [(plain, false), (direct_tls, true)] {
        if let Some(l) = listener {
            accept(
                l,
                direct,
                admission.clone(),
                shared.clone(),
                stopped.clone(),
            );
        }
    }
}

fn accept(
    listener: TcpListener,
    direct_tls: bool,
    admission: Admission,
    shared: Rc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    actix::spawn(async move {
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((tcp, peer)) => match admission.admit(peer.ip()) {
                        Ok((place, _)) => {
                            let _ = tcp.set_nodelay(true);
                            actix::spawn(serve(tcp, place, direct_tls, shared.clone()));
                        }
                        Err(refusal) => {
                            let limit = match refusal {
                                crate::xmpp::admission::Refusal::PerAddress => "s2s_max_connections_per_ip",
                                _ => "s2s_max_connections",
                            };
                            tracing::warn!(%peer, limit, "server connection refused at accept");
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "server accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
                _ = stopped.changed() => break,
            }
        }
    });
}

/// One inbound stream's state.
struct Stream {
    xml: XmlStream,
    guard: SizeGuard,
    tls: bool,
    id: String,
    authenticated: Vec<Pair>,
    deadline: Instant,
    /// The certificate chain the peer presented in the TLS handshake (may be empty).
    peer_certs: Vec<CertificateDer<'static>>,
    /// The header's `from` and `to` (ours), lowercase.
    peer_domain: Option<String>,
    local: String,
    /// SASL EXTERNAL succeeded: the restarted stream offers nothing more.
    sasl_done: bool,
    /// The peer asked to use the stream both ways (XEP-0288): our stanzas for the pairs
    /// it authenticated come through this queue, `back.2` of them registered so far.
    back: Option<(flume::Sender<Queued>, flume::Receiver<Queued>, usize)>,
}

enum Next {
    Element(Element),
    /// The stream ended (closed with the error it deserved, where there was one).
    Over,
    /// The connection broke under a batch of ours written on the stream used both ways:
    /// that batch, handed back with the queue.
    Broken(Vec<Queued>),
}

pub async fn serve(tcp: TcpStream, place: Place, direct_tls: bool, shared: Rc<Shared>) {
    let peer = tcp.peer_addr().ok();
    let deadline = Instant::now() + shared.cfg.s2s_timeout;
    let mut s = if direct_tls {
        let config = shared.tls_direct.clone();
        match secured(tcp, Some(place), config, deadline, &shared).await {
            Some(s) => s,
            None => return,
        }
    } else {
        let (mut io, guard) = io::wrap(Transport::Plain(tcp), shared.cfg.s2s_stanza_size_limit);
        io::hold(&mut io, Some(place));
        Stream {
            xml: XmlStream::new(io, SERVER_NS, shared.cfg.xml_limits()),
            guard,
            tls: false,
            id: String::new(),
            authenticated: Vec::new(),
            deadline,
            peer_certs: Vec::new(),
            peer_domain: None,
            local: String::new(),
            sasl_done: false,
            back: None,
        }
    };
    if !open(&mut s, &shared).await {
        return;
    }
    let mut unsent = Vec::new();
    loop {
        let el = match read(&mut s, &shared).await {
            Next::Element(el) => el,
            Next::Over => break,
            Next::Broken(batch) => {
                unsent = batch;
                break;
            }
        };
        if el.is("starttls", TLS_NS) && !s.tls {
            match starttls(s, &shared).await {
                Some(upgraded) => s = upgraded,
                None => return,
            }
            if !open(&mut s, &shared).await {
                return;
            }
        } else if el.is("result", DIALBACK_NS) {
            if !dialback_result(&mut s, &el, &shared).await {
                break;
            }
        } else if el.is("auth", SASL_NS) {
            match external(&mut s, &el, &shared).await {
                Some(true) => {
                    if !open(&mut s, &shared).await {
                        return;
                    }
                }
                Some(false) => {}
                None => break,
            }
        } else if el.is("bidi", negotiate::BIDI_NS) && s.authenticated.is_empty() {
            if s.back.is_none() {
                let (tx, rx) = flume::bounded(shared.cfg.s2s_queue_size);
                s.back = Some((tx, rx, 0));
            }
        } else if el.is("verify", DIALBACK_NS) {
            let answer = verify_answer(&el, &shared);
            if s.xml.send(&answer).await.is_err() {
                break;
            }
        } else if !stanza_in(&mut s, el, &shared).await {
            break;
        }
        carry_back(&mut s, &shared);
    }
    if let Some((tx, _, n)) = s.back.take()
        && n > 0
        && let Some(links) = shared.bidi.get()
    {
        let pairs = s.authenticated.iter().map(key).collect();
        links.do_send(Bidi::Down { pairs, tx, unsent });
    }
    tracing::debug!(?peer, domains = ?s.authenticated, "inbound server stream ended");
}

fn key(p: &Pair) -> Key {
    (p.local.clone(), p.remote.clone())
}

/// On a stream used both ways, the pairs authenticated since the last look are handed
/// to the links actor, so our stanzas for them come out here.
fn carry_back(s: &mut Stream, shared: &Shared) {
    let Some((tx, rx, registered)) = s.back.as_mut() else {
        return;
    };
    if *registered >= s.authenticated.len() {
        return;
    }
    let Some(links) = shared.bidi.get() else {
        return;
    };
    let pairs = s.authenticated[*registered..].iter().map(key).collect();
    *registered = s.authenticated.len();
    links.do_send(Bidi::Up {
        pairs,
        tx: tx.clone(),
        rx: rx.clone(),
    });
}

/// Reads the peer's header and answers with ours and the features.
async fn open(s: &mut Stream, shared: &Shared) -> bool {
    let header = match tokio::time::timeout_at(s.deadline, s.xml.read_header()).await {
        Ok(Ok(h)) => h,
        Ok(Err(Read::Invalid(e))) => {
            s.xml.close_with(e.condition()).await;
            return false;
        }
        Ok(Err(_)) => return false,
        Err(_) => {
            s.xml.close_with("connection-timeout").await;
            return false;
        }
    };
    s.id = stanza::random_id();
    s.peer_domain = header.from.as_deref().map(str::to_ascii_lowercase);
    let to = header.to.as_deref().map(str::to_ascii_lowercase);
    let addressed = to.as_deref().filter(|t| served(&shared.cfg, t));
    let ok = s
        .xml
        .feed_header(OurHeader {
            from: Some(addressed.unwrap_or(&shared.cfg.domain)),
            to: header.from.as_deref(),
            id: Some(&s.id),
        })
        .is_ok();
    if !ok {
        return false;
    }
    let Some(addressed) = addressed else {
        tracing::info!(to = ?header.to, "inbound server stream for another domain refused");
        s.xml.close_with("host-unknown").await;
        return false;
    };
    s.local = addressed.to_string();
    let features = match s.sasl_done {
        true => Element::builder("features", crate::xmpp::xml::STREAM_NS).build(),
        false => {
            let external = s
                .peer_domain
                .as_deref()
                .is_some_and(|d| shared.trust.valid_for(&s.peer_certs, d));
            let dialback = s
                .peer_domain
                .as_deref()
                .is_none_or(|d| negotiate::dialback_allowed(&shared.cfg, d));
            let require = shared.cfg.s2s_require_encryption;
            negotiate::inbound_features(s.tls, require, external, dialback)
        }
    };
    s.xml.send(&features).await.is_ok()
}

async fn read(s: &mut Stream, shared: &Shared) -> Next {
    let mut stopping = shared.stopping.clone();
    // An authenticated stream with nothing from the peer (whitespace keepalives are
    // nothing) and nothing of ours written for `s2s_idle_timeout` is closed, as our own
    // links are; an unauthenticated one has its lifetime, `s2s_timeout`, from the start.
    let mut idle_until = Instant::now() + shared.cfg.s2s_idle_timeout;
    loop {
        let authenticated = !s.authenticated.is_empty();
        let deadline = match authenticated {
            true => idle_until,
            false => s.deadline,
        };
        let back = async {
            match &s.back {
                Some((_, rx, n)) if *n > 0 => rx.recv_async().await.ok(),
                _ => std::future::pending().await,
            }
        };
        let read = tokio::select! {
            Some(queued) = back => {
                let rx = s.back.as_ref().map(|(_, rx, _)| rx.clone());
                let Some(rx) = rx else {
                    return Next::Over;
                };
                if let Err(unsent) = queue::write(&mut s.xml, queued, &rx).await {
                    tracing::info!(domains = ?s.authenticated, reason = %unsent.reason, "inbound server stream broke while carrying our stanzas");
                    return Next::Broken(unsent.batch);
                }
                idle_until = Instant::now() + shared.cfg.s2s_idle_timeout;
                continue;
            }
            r = tokio::time::timeout_at(deadline, s.xml.next()) => match r {
                Ok(r) => r,
                Err(_) if authenticated => {
                    tracing::info!(domains = ?s.authenticated, "inbound server stream idle for s2s_idle_timeout: closed");
                    let _ = s.xml.shutdown().await;
                    return Next::Over;
                }
                Err(_) => {
                    tracing::info!("inbound server stream did not authenticate within s2s_timeout");
                    s.xml.close_with("connection-timeout").await;
                    return Next::Over;
                }
            },
            _ = stopping.wait_for(|stop| *stop) => {
                s.xml.close_with("system-shutdown").await;
                return Next::Over;
            }
        };
        return match read {
            Read::Element(el) => {
                s.guard.reset();
                Next::Element(el)
            }
            // Quiet for the reader's own idle time: the deadlines above still run.
            Read::Idle => continue,
            Read::Invalid(e) => {
                tracing::info!(error = %e, "inbound server stream closed: bad XML");
                s.xml.close_with(e.condition()).await;
                Next::Over
            }
            Read::Io(_) if s.guard.exceeded() => {
                tracing::info!("inbound server stream closed: s2s_stanza_size_limit exceeded");
                s.xml.close_with("policy-violation").await;
                Next::Over
            }
            Read::Header(_) => {
                s.xml.close_with("not-well-formed").await;
                Next::Over
            }
            Read::Footer => {
                let _ = s.xml.shutdown().await;
                Next::Over
            }
            Read::Eof | Read::Io(_) => Next::Over,
        };
    }
}

async fn starttls(s: Stream, shared: &Shared) -> Option<Stream> {
    let Stream {
        mut xml, deadline, ..
    } = s;
    xml.send(&Element::builder("proceed", TLS_NS).build())
        .await
        .ok()?;
    let (Transport::Plain(tcp), place) = io::unwrap(xml.into_inner()) else {
        return None;
    };
    secured(tcp, place, shared.tls_server.clone(), deadline, shared).await
}

/// TLS on `tcp` (after `<proceed/>`, or from the first byte); the stream over it, or
/// `None` when the handshake failed or missed the deadline.
async fn secured(
    tcp: TcpStream,
    place: Option<Place>,
    config: Arc<rustls::ServerConfig>,
    deadline: Instant,
    shared: &Shared,
) -> Option<Stream> {
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
    let tls = match tokio::time::timeout_at(deadline, accept).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "inbound server TLS handshake failed");
            return None;
        }
        Err(_) => return None,
    };
    let peer_certs = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let (mut io, guard) = io::wrap(
        Transport::Tls(Box::new(tls)),
        shared.cfg.s2s_stanza_size_limit,
    );
    io::hold(&mut io, place);
    Some(Stream {
        xml: XmlStream::new(io, SERVER_NS, shared.cfg.xml_limits()),
        guard,
        tls: true,
        id: String::new(),
        authenticated: Vec::new(),
        deadline,
        peer_certs,
        peer_domain: None,
        local: String::new(),
        sasl_done: false,
        back: None,
    })
}

/// SASL EXTERNAL (XEP-0178): the peer is authenticated as the domain it asks for when
/// its certificate is valid for that domain. `Some(true)`: success, the stream restarts;
/// `Some(false)`: refused, the peer may still use dialback; `None`: the stream is over.
async fn external(s: &mut Stream, auth: &Element, shared: &Shared) -> Option<bool> {
    let identity = negotiate::external_identity(auth, s.peer_domain.as_deref());
    let valid = s.tls
        && !s.sasl_done
        && identity
            .as_deref()
            .is_some_and(|d| shared.trust.valid_for(&s.peer_certs, d));
    let Some(domain) = identity.filter(|_| valid) else {
        tracing::info!(peer = ?s.peer_domain, "SASL EXTERNAL refused: no valid certificate for the domain");
        let failure = negotiate::sasl_failure("not-authorized");
        return s.xml.send(&failure).await.ok().map(|_| false);
    };
    s.xml.send(&negotiate::sasl_success()).await.ok()?;
    tracing::info!(%domain, local = %s.local, "inbound server stream authenticated (SASL EXTERNAL)");
    s.authenticated.push(Pair {
        remote: domain,
        local: s.local.clone(),
    });
    s.sasl_done = true;
    s.xml.restart();
    Some(true)
}

/// A peer's `<db:result/>`: its key checked with its authoritative server; `false` when
/// the stream is over.
async fn dialback_result(s: &mut Stream, el: &Element, shared: &Shared) -> bool {
    let Some(from) = el.attr("from").and_then(crate::jid::parse::<Jid>) else {
        s.xml.close_with("invalid-from").await;
        return false;
    };
    let from = from.domain().as_str().to_string();
    let Some(to) = el
        .attr("to")
        .map(str::to_ascii_lowercase)
        .filter(|t| served(&shared.cfg, t))
    else {
        s.xml.close_with("host-unknown").await;
        return false;
    };
    if !negotiate::dialback_allowed(&shared.cfg, &from) {
        tracing::info!(domain = %from, "dialback refused (s2s_secure_auth): a valid certificate is required");
        s.xml.close_with("not-authorized").await;
        return false;
    }
    if shared.cfg.s2s_require_encryption && !s.tls {
        tracing::info!(domain = %from, "dialback before STARTTLS refused (s2s_require_encryption)");
        s.xml.close_with("policy-violation").await;
        return false;
    }
    if s.authenticated.len() >= MAX_DOMAINS_PER_STREAM {
        s.xml.close_with("policy-violation").await;
        return false;
    }
    let valid = verify::confirmed(&from, &to, &s.id, &el.text(), shared).await;
    let answer = negotiate::result_answer(&to, &from, valid);
    if s.xml.send(&answer).await.is_err() {
        return false;
    }
    if !valid {
        tracing::info!(domain = %from, "dialback failed: inbound stream closed");
        let _ = s.xml.shutdown().await;
        return false;
    }
    tracing::info!(domain = %from, local = %to, "inbound server stream authenticated (dialback)");
    let pair = Pair {
        remote: from,
        local: to,
    };
    if !s.authenticated.contains(&pair) {
        s.authenticated.push(pair);
    }
    true
}

/// The authoritative side of dialback: is this the key we made for that stream?
fn verify_answer(el: &Element, shared: &Shared) -> Element {
    let from = el.attr("from").unwrap_or("");
    let id = el.attr("id").unwrap_or("");
    let to = el
        .attr("to")
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let valid = served(&shared.cfg, &to) && shared.secret.verify(from, &to, id, &el.text());
    negotiate::verify_answer(&to, from, id, valid)
}

/// A stanza from an authenticated peer enters the router (an answer to a publish goes to
/// the push module, as a component's does); `false` when the stream is over.
async fn stanza_in(s: &mut Stream, el: Element, shared: &Shared) -> bool {
    if s.authenticated.is_empty() {
        tracing::info!("stanza before dialback on an inbound server stream");
        s.xml.close_with("not-authorized").await;
        return false;
    }
    if !matches!(el.name(), "message" | "presence" | "iq") || !el.has_ns(SERVER_NS) {
        s.xml.close_with("unsupported-stanza-type").await;
        return false;
    }
    if let Err(refused) = negotiate::admit(&el, &s.authenticated, &shared.cfg) {
        tracing::info!(
            condition = refused.condition(),
            "inbound server stanza refused"
        );
        s.xml.close_with(refused.condition()).await;
        return false;
    }
    enter(el, shared);
    true
}

/// An admitted stanza from a peer, on its stream or on our link used both ways
/// (XEP-0288), enters the router; an answer to a publish goes to the push module.
pub(super) fn enter(el: Element, shared: &Shared) {
    let el = stanza::rename_ns(el, SERVER_NS, CLIENT_NS);
    // Publishes leave from our bare domain, so their answers come back to it.
    let to_domain = el
        .attr("to")
        .and_then(crate::jid::parse::<Jid>)
        .is_some_and(|t| {
            t.node().is_none() && t.resource().is_none() && t.domain().as_str() == shared.cfg.domain
        });
    let answer = el.name() == "iq" && matches!(el.attr("type"), Some("result") | Some("error"));
    if answer && to_domain {
        shared.answers.do_send(AppServerResponse { iq: el });
    } else {
        shared.router.do_send(Route(el));
    }
}
