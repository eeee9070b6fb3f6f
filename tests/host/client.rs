//! Scripted peers. They use tokio-xmpp's initiator side to parse what the server sends,
//! and write raw XML, so every byte the server must handle is visible in the test.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use sha1::Digest;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_xmpp::xmlstream::{self, ReadError, StreamHeader, Timeouts, XmlStream};
use xmpp_parsers::minidom::Element;

use super::{APP, APP_SECRET, DOMAIN, TestServer};

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A raw socket we can write arbitrary bytes to, with the parser reading the same socket.
#[allow(clippy::large_enum_variant)] // a test client; two live at a time
pub enum Stream {
    Plain(XmlStream<BufStream<TcpStream>, Element>),
    Tls(XmlStream<BufStream<Tls>, Element>),
}

fn timeouts() -> Timeouts {
    Timeouts {
        read_timeout: super::patience::wait(Duration::from_secs(30)),
        response_timeout: super::patience::wait(Duration::from_secs(30)),
    }
}

fn parse(xml: &str) -> Element {
    let xml = if xml.starts_with('<') && !xml[..xml.find('>').unwrap()].contains("xmlns=") {
        let name_end = xml[1..].find([' ', '>', '/']).unwrap() + 1;
        format!(
            "{} xmlns='jabber:client'{}",
            &xml[..name_end],
            &xml[name_end..]
        )
    } else {
        xml.to_string()
    };
    xml.parse()
        .unwrap_or_else(|e| panic!("bad test xml {xml}: {e}"))
}

/// A stanza error's defined condition (the first child of its `<error/>`).
pub fn condition(e: &Element) -> Option<String> {
    e.get_child("error", "jabber:client")
        .and_then(|err| err.children().next())
        .map(|c| c.name().to_string())
}

impl Stream {
    async fn send(&mut self, el: &Element) {
        match self {
            Stream::Plain(x) => x.send(el).await.unwrap(),
            Stream::Tls(x) => x.send(el).await.unwrap(),
        }
    }

    /// The next element, or the text of the stream error / end that came instead.
    async fn next(&mut self) -> Result<Element, String> {
        let r = tokio::time::timeout(super::patience::deadline(), async {
            match self {
                Stream::Plain(x) => x.next().await,
                Stream::Tls(x) => x.next().await,
            }
        })
        .await
        .map_err(|_| "nothing within the deadline".to_string())?;
        match r {
            Some(Ok(el))
                if el.name() == "error" && el.has_ns("http://etherx.jabber.org/streams") =>
            {
                Err(format!("stream error: {}", String::from(&el)))
            }
            Some(Ok(el)) => Ok(el),
            Some(Err(ReadError::StreamFooterReceived)) | None => Err("stream closed".into()),
            Some(Err(e)) => Err(format!("read error: {e}")),
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client")
    }
}

pub struct Client {
    stream: Stream,
    pub features_xml: String,
    next_id: u32,
}

impl Client {
    /// Sends an element given with its own namespace (a nonza).
    pub async fn send_nonza(&mut self, xml: &str) {
        self.stream.send(&xml.parse::<Element>().unwrap()).await;
    }

    /// Reads until an element with this name arrives, returning it and what came before.
    pub async fn until(&mut self, name: &str) -> (Element, Vec<Element>) {
        let mut before = Vec::new();
        loop {
            let el = self.next().await;
            if el.name() == name {
                return (el, before);
            }
            before.push(el);
        }
    }

    pub async fn send(&mut self, xml: &str) {
        self.stream.send(&parse(xml)).await;
    }

    pub async fn next(&mut self) -> Element {
        self.stream.next().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// The next element must not come: what came instead (a stream error, or the end).
    pub async fn next_or_error(&mut self) -> String {
        match self.stream.next().await {
            Ok(el) => String::from(&el),
            Err(e) => e,
        }
    }

    /// Sends an IQ and returns the reply with the same id (other stanzas are skipped).
    pub async fn iq(&mut self, xml: &str) -> Element {
        let el = parse(xml);
        let id = el.attr("id").unwrap_or_default().to_string();
        self.stream.send(&el).await;
        loop {
            let r = self.next().await;
            if r.name() == "iq" && r.attr("id") == Some(id.as_str()) {
                return r;
            }
        }
    }

    /// Ends the TCP connection the polite way (TLS close_notify, FIN) but without closing
    /// the XML stream, as a phone's OS does when it kills the app's socket.
    pub async fn drop_connection(self) {
        use tokio::io::AsyncWriteExt;
        match self.stream {
            Stream::Plain(x) => {
                let mut io = x.into_inner();
                let _ = io.shutdown().await;
            }
            Stream::Tls(x) => {
                let mut io = x.into_inner();
                let _ = io.shutdown().await;
            }
        }
    }

    pub async fn close(mut self) {
        match &mut self.stream {
            Stream::Plain(x) => {
                let _ = x.shutdown().await;
            }
            Stream::Tls(x) => {
                let _ = x.shutdown().await;
            }
        }
        // Wait for the server's side of the close, so the session is gone.
        let _ = self.stream.next().await;
        self.next_id += 1;
    }
}

/// Connects with direct TLS (XEP-0368, ALPN xmpp-client) and returns the features.
pub async fn direct_tls_features(t: &TestServer, addr: std::net::SocketAddr) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tls_connector_alpn(t, Some(b"xmpp-client"))
        .connect(
            rustls::pki_types::ServerName::try_from(DOMAIN).unwrap(),
            tcp,
        )
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"xmpp-client"[..]));
    let header = StreamHeader {
        to: Some(DOMAIN.into()),
        from: None,
        id: None,
    };
    let (features, _xml) =
        xmlstream::initiate_stream(BufStream::new(tls), "jabber:client", header, timeouts())
            .await
            .unwrap()
            .recv_features::<Element>()
            .await
            .unwrap();
    String::from(&Element::from(features))
}

fn tls_connector(t: &TestServer) -> tokio_rustls::TlsConnector {
    tls_connector_alpn(t, None)
}

fn tls_connector_alpn(t: &TestServer, alpn: Option<&[u8]>) -> tokio_rustls::TlsConnector {
    // The server's own chain is trusted: the self-signed certificate, or a configured
    // chain whose CA certificate is in the file (as in a full chain).
    let cert = t
        .cfg
        .tls_certificate
        .clone()
        .unwrap_or_else(|| cloud_notify::xmpp::tls::self_signed_paths(&t.cfg.data_dir).0);
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if let Some(p) = alpn {
        config.alpn_protocols = vec![p.to_vec()];
    }
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Opens a plaintext stream to `host` and reads the features (or the stream error).
pub async fn plain_client(t: &TestServer, host: &str) -> Result<Client, String> {
    let tcp = TcpStream::connect(t.c2s()).await.unwrap();
    let pending = xmlstream::initiate_stream(
        BufStream::new(tcp),
        "jabber:client",
        StreamHeader {
            to: Some(host.to_string().into()),
            from: None,
            id: None,
        },
        timeouts(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let (features, xml) = pending
        .recv_features::<Element>()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let features_xml = String::from(&Element::from(features));
    Ok(Client {
        stream: Stream::Plain(xml),
        features_xml,
        next_id: 0,
    })
}

fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// STARTTLS and SCRAM-SHA-256, up to the restarted stream (before bind).
pub async fn authenticate(t: &TestServer, user: &str, password: &str) -> Result<Client, String> {
    let mut c = plain_client(t, &t.cfg.domain).await?;
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await;
    let proceed = c.stream.next().await?;
    assert_eq!(proceed.name(), "proceed");
    let Stream::Plain(xml) = c.stream else {
        unreachable!()
    };
    let tcp = xml.into_inner().into_inner();
    let tls = tls_connector(t)
        .connect(
            rustls::pki_types::ServerName::try_from(t.cfg.domain.clone()).unwrap(),
            tcp,
        )
        .await
        .map_err(|e| e.to_string())?;
    let header = StreamHeader {
        to: Some(t.cfg.domain.clone().into()),
        from: None,
        id: None,
    };
    let (features, xml) =
        xmlstream::initiate_stream(BufStream::new(tls), "jabber:client", header, timeouts())
            .await
            .map_err(|e| e.to_string())?
            .recv_features::<Element>()
            .await
            .map_err(|e| format!("{e:?}"))?;
    assert!(features.sasl_mechanisms.contains("SCRAM-SHA-256"));
    let mut stream = Stream::Tls(xml);
    // SCRAM-SHA-256, client side.
    let cnonce = "rOprNGfwEbeRWgbNEkqO";
    let first_bare = format!("n={user},r={cnonce}");
    let auth = Element::builder("auth", SASL)
        .attr(
            xmpp_parsers::minidom::rxml::NcName::try_from("mechanism").unwrap(),
            "SCRAM-SHA-256",
        )
        .append(B64.encode(format!("n,,{first_bare}")))
        .build();
    stream.send(&auth).await;
    let challenge = stream.next().await?;
    if challenge.name() == "failure" {
        return Err(String::from(&challenge));
    }
    let server_first = String::from_utf8(B64.decode(challenge.text()).unwrap()).unwrap();
    let mut nonce = "";
    let mut salt = Vec::new();
    let mut iterations = 0;
    for a in server_first.split(',') {
        if let Some(v) = a.strip_prefix("r=") {
            nonce = v;
        } else if let Some(v) = a.strip_prefix("s=") {
            salt = B64.decode(v).unwrap();
        } else if let Some(v) = a.strip_prefix("i=") {
            iterations = v.parse().unwrap();
        }
    }
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
    let client_key = hmac256(&salted, b"Client Key");
    let stored_key = sha2::Sha256::digest(&client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let signature = hmac256(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let response = Element::builder("response", SASL)
        .append(B64.encode(format!("{without_proof},p={}", B64.encode(proof))))
        .build();
    stream.send(&response).await;
    let outcome = stream.next().await?;
    if outcome.name() != "success" {
        return Err(String::from(&outcome));
    }
    let server_key = hmac256(&salted, b"Server Key");
    let expected = format!(
        "v={}",
        B64.encode(hmac256(&server_key, auth_message.as_bytes()))
    );
    assert_eq!(
        String::from_utf8(B64.decode(outcome.text()).unwrap()).unwrap(),
        expected,
        "server proved it knows the key"
    );
    let Stream::Tls(xml) = stream else {
        unreachable!()
    };
    let header = StreamHeader {
        to: Some(t.cfg.domain.clone().into()),
        from: None,
        id: None,
    };
    let (features, xml) = xml
        .initiate_reset()
        .send_header(header)
        .await
        .map_err(|e| e.to_string())?
        .recv_features::<Element>()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let features_xml = String::from(&Element::from(features));
    Ok(Client {
        stream: Stream::Tls(xml),
        features_xml,
        next_id: 0,
    })
}

/// STARTTLS, SCRAM-SHA-256, bind. `Err` carries what the server said instead.
pub async fn try_login(
    t: &TestServer,
    user: &str,
    password: &str,
    resource: &str,
) -> Result<Client, String> {
    let mut c = authenticate(t, user, password).await?;
    let bound = c
        .iq(&format!("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"))
        .await;
    if bound.attr("type") != Some("result") {
        return Err(String::from(&bound));
    }
    Ok(c)
}

pub async fn connect_client(t: &TestServer, user: &str, resource: &str) -> Client {
    try_login(t, user, &format!("{user}-pw"), resource)
        .await
        .unwrap_or_else(|e| panic!("login of {user} failed: {e}"))
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Component")
    }
}

/// A push app server attached as a component.
pub struct Component {
    xml: XmlStream<BufStream<TcpStream>, Element>,
}

impl Component {
    pub async fn connect(t: &TestServer) -> Component {
        Self::try_connect(t, APP, APP_SECRET)
            .await
            .expect("component handshake")
    }

    pub async fn try_connect(t: &TestServer, jid: &str, secret: &str) -> Result<Component, String> {
        let tcp = TcpStream::connect(t.component()).await.unwrap();
        let header = StreamHeader {
            to: Some(jid.to_string().into()),
            from: None,
            id: None,
        };
        let mut pending = xmlstream::initiate_stream(
            BufStream::new(tcp),
            "jabber:component:accept",
            header,
            timeouts(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let id = pending
            .take_header()
            .id
            .map(|i| i.to_string())
            .unwrap_or_default();
        let mut xml = pending.skip_features::<Element>();
        let digest: String = sha1::Sha1::digest(format!("{id}{secret}").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let hs = Element::builder("handshake", "jabber:component:accept")
            .append(digest)
            .build();
        xml.send(&hs).await.map_err(|e| e.to_string())?;
        let mut c = Component { xml };
        let r = c.next_result().await?;
        if r.name() != "handshake" {
            return Err(String::from(&r));
        }
        Ok(c)
    }

    async fn next_result(&mut self) -> Result<Element, String> {
        let r = tokio::time::timeout(super::patience::deadline(), self.xml.next())
            .await
            .map_err(|_| "nothing within the deadline".to_string())?;
        match r {
            Some(Ok(el)) if el.name() == "error" => {
                Err(format!("stream error: {}", String::from(&el)))
            }
            Some(Ok(el)) => Ok(el),
            other => Err(format!("stream ended: {other:?}")),
        }
    }

    pub async fn next(&mut self) -> Element {
        self.next_result().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Pings the server from the component: whatever the server routed to the component
    /// before answering the ping arrives first, so anything but the pong is a failure.
    pub async fn expect_nothing_before_ping(&mut self, _t: &TestServer) {
        let ping: Element = format!(
            "<iq xmlns='jabber:component:accept' type='get' id='cping' from='{APP}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        .parse()
        .unwrap();
        self.xml.send(&ping).await.unwrap();
        let next = self.next().await;
        assert_eq!(
            next.attr("id"),
            Some("cping"),
            "unexpected: {}",
            String::from(&next)
        );
    }

    /// Answers a publish with an error of this type and condition.
    pub async fn answer_error(&mut self, iq: &Element, error_type: &str, condition: &str) {
        let (id, from) = (
            iq.attr("id").unwrap().to_string(),
            iq.attr("to").unwrap().to_string(),
        );
        self.send_error(&id, &from, iq.attr("from").unwrap(), error_type, condition)
            .await;
    }

    /// An error answer claiming to come from another JID.
    pub async fn answer_error_from(
        &mut self,
        iq: &Element,
        from: &str,
        error_type: &str,
        condition: &str,
    ) {
        let id = iq.attr("id").unwrap().to_string();
        self.send_error(&id, from, iq.attr("from").unwrap(), error_type, condition)
            .await;
    }

    /// An error answer to an id that was never sent.
    pub async fn answer_error_with_id(
        &mut self,
        iq: &Element,
        id: &str,
        error_type: &str,
        condition: &str,
    ) {
        let from = iq.attr("to").unwrap().to_string();
        self.send_error(id, &from, iq.attr("from").unwrap(), error_type, condition)
            .await;
    }

    async fn send_error(
        &mut self,
        id: &str,
        from: &str,
        to: &str,
        error_type: &str,
        condition: &str,
    ) {
        let reply: Element = format!(
            "<iq xmlns='jabber:component:accept' type='error' id='{id}' from='{from}' to='{to}'><error type='{error_type}'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        .parse()
        .unwrap();
        self.xml.send(&reply).await.unwrap();
    }

    pub async fn answer_result(&mut self, iq: &Element) {
        let reply: Element = format!(
            "<iq xmlns='jabber:component:accept' type='result' id='{}' from='{}' to='{}'/>",
            iq.attr("id").unwrap(),
            iq.attr("to").unwrap(),
            iq.attr("from").unwrap()
        )
        .parse()
        .unwrap();
        self.xml.send(&reply).await.unwrap();
    }
}
