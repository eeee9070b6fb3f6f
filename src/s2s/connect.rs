//! Opening a stream to a remote server: resolve, connect, exchange headers, STARTTLS
//! when offered (or required by `s2s_require_encryption`), and the features of the
//! stream that authentication then runs on. Used by outbound links and by dialback's
//! verification requests.

use tokio::net::TcpStream;
use xmpp_parsers::minidom::Element;

use super::Shared;
use super::negotiate::{self, SASL_NS, Step, TLS_NS};
use super::resolve;
use crate::xmpp::io::{self, SizeGuard, Transport};
use crate::xmpp::xml::{OurHeader, Read, SERVER_NS, STREAM_NS, XmlStream};

/// Why a link to a domain could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no DNS record: the domain has no address (SRV, A/AAAA or s2s_hosts)")]
    NoAddress,
    #[error("connection failed: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("the peer offers no TLS and s2s_require_encryption is set")]
    NoTls,
    #[error("the stream failed: {0}")]
    Stream(String),
    #[error("the peer refused our dialback key")]
    Refused,
    #[error("no link within s2s_timeout")]
    Timeout,
}

impl LinkError {
    /// The stanza error condition a stanza waiting for this link bounces with
    /// (RFC 6120 §8.3.3.15 and .16).
    pub fn condition(&self) -> &'static str {
        match self {
            LinkError::Timeout => "remote-server-timeout",
            _ => "remote-server-not-found",
        }
    }
}

/// A secured stream to a remote server, not yet authenticated.
pub struct Opened {
    pub xml: XmlStream,
    pub guard: SizeGuard,
    /// The id of the peer's stream header, which dialback keys are made for.
    pub stream_id: String,
    /// The peer accepted our certificate (SASL EXTERNAL): no dialback needed.
    pub authenticated: bool,
    /// We asked for bidirectional use (XEP-0288): the peer's stanzas for us may come
    /// back on this stream.
    pub bidi: bool,
}

pub(super) fn stream_failed(what: &str, read: &Read) -> LinkError {
    LinkError::Stream(match read {
        Read::Element(el) if el.is("error", STREAM_NS) => format!(
            "{what}: stream error {}",
            el.children().next().map_or("", |c| c.name())
        ),
        Read::Element(el) => format!("{what}: unexpected <{}/>", el.name()),
        other => format!("{what}: {other:?}"),
    })
}

/// Sends our header, reads the peer's and its features.
pub(super) async fn start(
    xml: &mut XmlStream,
    guard: &SizeGuard,
    ours: &str,
    domain: &str,
) -> Result<(String, Element), LinkError> {
    let header = OurHeader {
        from: Some(ours),
        to: Some(domain),
        id: None,
    };
    xml.feed_header(header)
        .map_err(|e| LinkError::Stream(e.to_string()))?;
    xml.flush().await.map_err(LinkError::Connect)?;
    let header = xml
        .read_header()
        .await
        .map_err(|r| stream_failed("header", &r))?;
    let id = header
        .id
        .ok_or_else(|| LinkError::Stream("the peer's header has no id".into()))?;
    match xml.next().await {
        Read::Element(f) if f.is("features", STREAM_NS) => {
            guard.reset();
            Ok((id, f))
        }
        other => Err(stream_failed("features", &other)),
    }
}

/// A connection to the first place that answers, and whether it expects TLS from the
/// first byte.
async fn tcp(domain: &str, shared: &Shared) -> Result<(TcpStream, bool), LinkError> {
    let targets = resolve::addresses(domain, &shared.cfg.s2s_hosts, &shared.resolver).await;
    let mut last = None;
    for t in targets {
        match TcpStream::connect(t.addr).await {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok((tcp, t.direct_tls));
            }
            Err(e) => {
                tracing::debug!(%domain, address = %t.addr, error = %e, "server connection failed");
                last = Some(e);
            }
        }
    }
    Err(last.map_or(LinkError::NoAddress, LinkError::Connect))
}

/// TLS to `domain`. Unless dialback is allowed for it, its certificate must be valid
/// for it (`s2s_secure_auth`).
async fn tls(
    tcp: TcpStream,
    domain: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
    shared: &Shared,
) -> Result<Transport, LinkError> {
    let name = rustls::pki_types::ServerName::try_from(domain.to_string())
        .map_err(|e| LinkError::Tls(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| LinkError::Tls(e.to_string()))?;
    if !negotiate::dialback_allowed(&shared.cfg, domain) {
        let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
        if !shared.trust.valid_for(chain, domain) {
            return Err(LinkError::Tls(format!(
                "the certificate is not valid for {domain} (s2s_secure_auth)"
            )));
        }
    }
    Ok(Transport::TlsOut(Box::new(tls)))
}

/// A stream from our domain `ours` (ours or a component's) to `domain`, encrypted unless
/// the peer offers no TLS and encryption is not required. With `want_bidi` (a link, not
/// a dialback check) the stream is used both ways when the peer offers it (XEP-0288).
pub async fn open(
    ours: &str,
    domain: &str,
    shared: &Shared,
    want_bidi: bool,
) -> Result<Opened, LinkError> {
    let limit = shared.cfg.s2s_stanza_size_limit;
    let (tcp, direct_tls) = tcp(domain, shared).await?;
    let transport = match direct_tls {
        true => tls(tcp, domain, shared.tls_client_direct.clone(), shared).await?,
        false => Transport::Plain(tcp),
    };
    let encrypted = transport.is_tls();
    let (io, guard) = io::wrap(transport, limit);
    let mut xml = XmlStream::new(io, SERVER_NS, shared.cfg.xml_limits());
    let (stream_id, features) = start(&mut xml, &guard, ours, domain).await?;
    let offered = negotiate::offered(&features);
    match negotiate::next_step(offered, encrypted, shared.cfg.s2s_require_encryption) {
        // Unencrypted (s2s_require_encryption off, no STARTTLS offered): no certificate.
        Step::Authenticate if !encrypted && !negotiate::dialback_allowed(&shared.cfg, domain) => {
            return Err(LinkError::Tls(format!(
                "no certificate from {domain} on an unencrypted stream (s2s_secure_auth)"
            )));
        }
        Step::Authenticate => {
            let bidi = want_bidi && offered.bidi;
            return external(xml, guard, stream_id, offered.external, bidi, ours, domain).await;
        }
        Step::NoTls => return Err(LinkError::NoTls),
        Step::StartTls => {}
    }
    xml.send(&Element::builder("starttls", TLS_NS).build())
        .await
        .map_err(LinkError::Connect)?;
    match xml.next().await {
        Read::Element(el) if el.is("proceed", TLS_NS) => {}
        other => return Err(stream_failed("STARTTLS", &other)),
    }
    let (Transport::Plain(tcp), _) = io::unwrap(xml.into_inner()) else {
        return Err(LinkError::Tls("the stream was encrypted already".into()));
    };
    let transport = tls(tcp, domain, shared.tls_client.clone(), shared).await?;
    let (io, guard) = io::wrap(transport, limit);
    let mut xml = XmlStream::new(io, SERVER_NS, shared.cfg.xml_limits());
    let (stream_id, features) = start(&mut xml, &guard, ours, domain).await?;
    let offered = negotiate::offered(&features);
    let bidi = want_bidi && offered.bidi;
    external(xml, guard, stream_id, offered.external, bidi, ours, domain).await
}

/// SASL EXTERNAL (XEP-0178) when the peer offers it, that is, when it found our
/// certificate valid for our domain; after a refusal the stream stays for dialback.
/// `<bidi/>` goes first, as XEP-0288 §2 asks: before authentication.
async fn external(
    mut xml: XmlStream,
    guard: SizeGuard,
    stream_id: String,
    offered: bool,
    bidi: bool,
    ours: &str,
    domain: &str,
) -> Result<Opened, LinkError> {
    if bidi {
        xml.send(&Element::builder("bidi", negotiate::BIDI_NS).build())
            .await
            .map_err(LinkError::Connect)?;
        tracing::debug!(%domain, "bidirectional stream asked for (XEP-0288)");
    }
    let unauthenticated = |xml, guard, stream_id| Opened {
        xml,
        guard,
        stream_id,
        authenticated: false,
        bidi,
    };
    if !offered {
        return Ok(unauthenticated(xml, guard, stream_id));
    }
    xml.send(&negotiate::external_auth(ours))
        .await
        .map_err(LinkError::Connect)?;
    match xml.next().await {
        Read::Element(el) if el.is("success", SASL_NS) => {}
        Read::Element(el) if el.is("failure", SASL_NS) => {
            tracing::info!(%domain, "SASL EXTERNAL refused by the peer: dialback instead");
            guard.reset();
            return Ok(unauthenticated(xml, guard, stream_id));
        }
        other => return Err(stream_failed("SASL", &other)),
    }
    xml.restart();
    let (stream_id, _) = start(&mut xml, &guard, ours, domain).await?;
    tracing::debug!(%domain, "authenticated with SASL EXTERNAL");
    Ok(Opened {
        xml,
        guard,
        stream_id,
        authenticated: true,
        bidi,
    })
}
