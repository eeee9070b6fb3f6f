//! The phones and the senders: real client streams (plaintext or STARTTLS), PLAIN auth,
//! bind, stream management and push, parsed with tokio-xmpp like any client would.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;
use tokio_xmpp::xmlstream::{self, StreamHeader, Timeouts, XmlStream};
use xmpp_parsers::minidom::Element;

use crate::server::{APP_JID, APP_SECRET, DOMAIN, PASSWORD};

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const SM: &str = "urn:xmpp:sm:3";
const DEADLINE: Duration = Duration::from_secs(60);

/// Set once by `serialize_connects`: one connection opening at a time.
static CONNECT_GATE: OnceLock<tokio::sync::Semaphore> = OnceLock::new();

/// From now on each connection is opened, up to its stream features, while no other is:
/// qemu's user-mode port forward takes one pending connection at a time, and drops or
/// resets the rest (seen with 64 at once).
pub fn serialize_connects() {
    let _ = CONNECT_GATE.set(tokio::sync::Semaphore::new(1));
}

/// How a device leaves after registering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The socket dies without closing the stream: the session hibernates.
    Hibernated,
    /// `</stream:stream>`: the session ends and the user is offline.
    Offline,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Hibernated => "hibernated",
            Mode::Offline => "offline",
        }
    }
}

pub fn node(user: usize, device: usize) -> String {
    format!("u{user}d{device}")
}

fn timeouts() -> Timeouts {
    Timeouts {
        read_timeout: DEADLINE,
        response_timeout: DEADLINE,
    }
}

fn header() -> StreamHeader<'static> {
    StreamHeader {
        to: Some(DOMAIN.into()),
        from: None,
        id: None,
    }
}

fn el(xml: &str) -> Result<Element, String> {
    xml.parse().map_err(|e| format!("bad xml {xml}: {e}"))
}

/// A logged-in client stream on any transport.
pub struct Session<S: AsyncRead + AsyncWrite + Unpin + Send> {
    xml: XmlStream<BufStream<S>, Element>,
    /// Stanzas received since stream management was enabled (XEP-0198 `h`).
    handled: u32,
    sm: bool,
    /// The full JIDs whose presence this session has received (its own and its siblings').
    present: HashSet<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub async fn send(&mut self, el: &Element) -> Result<(), String> {
        self.xml.send(el).await.map_err(|e| e.to_string())
    }

    /// The next stanza; `<r/>` requests are answered on the way, as a client must.
    pub async fn next(&mut self) -> Result<Element, String> {
        loop {
            let r = tokio::time::timeout(DEADLINE, self.xml.next())
                .await
                .map_err(|_| "no answer within the deadline".to_string())?;
            let el = match r {
                Some(Ok(el)) => el,
                Some(Err(e)) => return Err(format!("read error: {e}")),
                None => return Err("stream closed".into()),
            };
            if el.is("r", SM) {
                let a = el_a(self.handled)?;
                self.send(&a).await?;
                continue;
            }
            if el.has_ns(SM) {
                return Ok(el);
            }
            if el.name() == "error" {
                return Err(format!("stream error: {}", String::from(&el)));
            }
            if self.sm {
                self.handled = self.handled.wrapping_add(1);
            }
            if el.name() == "presence"
                && el.attr("type").is_none()
                && let Some(from) = el.attr("from")
            {
                self.present.insert(from.to_string());
            }
            return Ok(el);
        }
    }

    async fn iq(&mut self, xml: &str, id: &str) -> Result<Element, String> {
        self.send(&el(xml)?).await?;
        loop {
            let r = self.next().await?;
            if r.name() == "iq" && r.attr("id") == Some(id) {
                if r.attr("type") != Some("result") {
                    return Err(String::from(&r));
                }
                return Ok(r);
            }
        }
    }

    pub async fn until(&mut self, name: &str) -> Result<Element, String> {
        loop {
            let r = self.next().await?;
            if r.name() == name {
                return Ok(r);
            }
        }
    }

    /// A phone's registration: stream management with resumption, push enabled for its
    /// own node, initial presence.
    async fn register(&mut self, node: &str) -> Result<(), String> {
        self.send(&el(&format!("<enable xmlns='{SM}' resume='true'/>"))?)
            .await?;
        self.until("enabled").await?;
        self.sm = true;
        self.iq(&format!(
            "<iq xmlns='jabber:client' type='set' id='push'><enable xmlns='urn:xmpp:push:0' jid='{APP_JID}' node='{node}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>{APP_SECRET}</value></field></x></enable></iq>"
        ), "push")
        .await?;
        self.send(&el("<presence xmlns='jabber:client'/>")?).await?;
        self.until("presence").await.map(|_| ())
    }

    /// Reads everything the server has routed here and acknowledges it, so the session
    /// leaves with nothing unacked and leaving causes no publish. It first waits for the
    /// presences in `expected` (full JIDs): its own and those of the devices that came
    /// online after it, which the server broadcasts to it. (It sends a newcomer nothing of
    /// the devices already online.) On a slow machine a sibling's presence may come after
    /// any number of pings (seen on an emulated ARM board). Then two ping round trips: the
    /// server may answer the first before it writes a stanza already routed to the session,
    /// never the second.
    async fn settle(&mut self, expected: &[String]) -> Result<(), String> {
        let deadline = Instant::now() + DEADLINE;
        while let Some(missing) = expected.iter().find(|j| !self.present.contains(*j)) {
            if Instant::now() > deadline {
                return Err(format!("no presence from {missing} within {DEADLINE:?}"));
            }
            self.next().await?;
        }
        for id in ["s1", "s2"] {
            self.iq(&format!("<iq xmlns='jabber:client' type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"), id)
                .await?;
        }
        let a = el_a(self.handled)?;
        self.send(&a).await
    }

    /// Ends the way the mode says. For a hibernation the TCP connection is shut down
    /// without `</stream:stream>`, as a phone's OS kills an app's socket.
    async fn leave(self, mode: Mode) -> Result<(), String> {
        let mut xml = self.xml;
        match mode {
            Mode::Hibernated => {
                let mut io = xml.into_inner();
                io.shutdown().await.map_err(|e| e.to_string())
            }
            Mode::Offline => {
                xml.shutdown().await.map_err(|e| e.to_string())?;
                // Read to the server's footer: the session is gone before we go on, and
                // a socket closed with unread data would be reset, which the server
                // rightly takes for a lost connection (and hibernates).
                tokio::time::timeout(DEADLINE, async {
                    while let Some(Ok(_)) = xml.next().await {}
                })
                .await
                .map_err(|_| "no stream end from the server".to_string())
            }
        }
    }

    /// The transport, for writing raw stanzas at full speed.
    pub fn into_inner(self) -> BufStream<S> {
        self.xml.into_inner()
    }
}

fn el_a(h: u32) -> Result<Element, String> {
    el(&format!("<a xmlns='{SM}' h='{h}'/>"))
}

/// PLAIN, the stream restart and bind, on an established transport.
async fn login<S: AsyncRead + AsyncWrite + Unpin + Send>(
    xml: XmlStream<BufStream<S>, Element>,
    user: &str,
    resource: &str,
) -> Result<Session<S>, String> {
    let mut s = Session {
        xml,
        handled: 0,
        sm: false,
        present: HashSet::new(),
    };
    let auth = Element::builder("auth", SASL)
        .attr(
            xmpp_parsers::minidom::rxml::NcName::try_from("mechanism")
                .map_err(|e| e.to_string())?,
            "PLAIN",
        )
        .append(B64.encode(format!("\0{user}\0{PASSWORD}")))
        .build();
    s.send(&auth).await?;
    let outcome = s.next().await?;
    if outcome.name() != "success" {
        return Err(format!("auth failed: {}", String::from(&outcome)));
    }
    let (_, xml) = s
        .xml
        .initiate_reset()
        .send_header(header())
        .await
        .map_err(|e| e.to_string())?
        .recv_features::<Element>()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut s = Session {
        xml,
        handled: 0,
        sm: false,
        present: HashSet::new(),
    };
    s.iq(&format!("<iq xmlns='jabber:client' type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"), "bind")
        .await?;
    Ok(s)
}

pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Either transport, so callers need not be generic.
pub enum AnySession {
    Plain(Box<Session<TcpStream>>),
    Tls(Box<Session<Tls>>),
}

pub enum Transport {
    Plain(BufStream<TcpStream>),
    Tls(Box<BufStream<Tls>>),
}

impl Transport {
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Transport::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }
}

impl AnySession {
    pub async fn register(&mut self, node: &str) -> Result<(), String> {
        match self {
            AnySession::Plain(s) => s.register(node).await,
            AnySession::Tls(s) => s.register(node).await,
        }
    }

    pub async fn settle(&mut self, expected: &[String]) -> Result<(), String> {
        match self {
            AnySession::Plain(s) => s.settle(expected).await,
            AnySession::Tls(s) => s.settle(expected).await,
        }
    }

    pub async fn leave(self, mode: Mode) -> Result<(), String> {
        match self {
            AnySession::Plain(s) => s.leave(mode).await,
            AnySession::Tls(s) => s.leave(mode).await,
        }
    }

    pub fn into_transport(self) -> Transport {
        match self {
            AnySession::Plain(s) => Transport::Plain(s.into_inner()),
            AnySession::Tls(s) => Transport::Tls(Box::new(s.into_inner())),
        }
    }
}

/// Connects and logs in; with `tls` Some, over STARTTLS.
pub async fn connect(
    addr: SocketAddr,
    tls: Option<&tokio_rustls::TlsConnector>,
    user: &str,
    resource: &str,
) -> Result<AnySession, String> {
    let gate = match CONNECT_GATE.get() {
        Some(g) => Some(g.acquire().await.map_err(|e| e.to_string())?),
        None => None,
    };
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let xml = open_stream(tcp).await?;
    drop(gate);
    let Some(connector) = tls else {
        return Ok(AnySession::Plain(Box::new(
            login(xml, user, resource).await?,
        )));
    };
    let mut xml = xml;
    xml.send(&el("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")?)
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(DEADLINE, xml.next()).await {
        Ok(Some(Ok(p))) if p.name() == "proceed" => {}
        other => return Err(format!("STARTTLS refused: {other:?}")),
    }
    let tcp = xml.into_inner().into_inner();
    let name = rustls::pki_types::ServerName::try_from(DOMAIN).map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let xml = open_stream(tls).await?;
    Ok(AnySession::Tls(Box::new(login(xml, user, resource).await?)))
}

/// Sends the stream header and reads the features.
async fn open_stream<S: AsyncRead + AsyncWrite + Unpin + Send>(
    io: S,
) -> Result<XmlStream<BufStream<S>, Element>, String> {
    let (_, xml) =
        xmlstream::initiate_stream(BufStream::new(io), "jabber:client", header(), timeouts())
            .await
            .map_err(|e| e.to_string())?
            .recv_features::<Element>()
            .await
            .map_err(|e| format!("{e:?}"))?;
    Ok(xml)
}

/// Trusts the certificate the server generated in its data dir.
pub fn tls_connector(cert: &std::path::Path) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).map_err(|e| e.to_string())? {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
