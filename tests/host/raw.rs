//! A client that writes exact bytes and reads the server's answer as text: for the
//! tests that reproduce what a particular client sends, or what an attacker does.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What [`Raw::login`] needs of the server: PLAIN without TLS.
pub fn plaintext(c: &mut cloud_notify::config::Config) {
    c.c2s_require_encryption = false;
    c.allow_unencrypted_plain_auth = true;
}

pub struct Raw {
    pub tcp: TcpStream,
    /// What the server sent and no `until` has returned yet.
    pending: String,
}

impl Raw {
    pub async fn connect(addr: std::net::SocketAddr) -> Raw {
        Raw::over(TcpStream::connect(addr).await.unwrap())
    }

    pub fn over(tcp: TcpStream) -> Raw {
        Raw {
            tcp,
            pending: String::new(),
        }
    }

    /// Closes our stream and waits for the server to close the connection: its place
    /// is free once this returns.
    pub async fn close(mut self) {
        self.write(b"</stream:stream>").await;
        self.rest_until_closed().await;
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    /// Reads until the server's text contains `marker`; returns everything up to and
    /// including it. Panics at the deadline or when the server closes first, showing
    /// what it did send.
    pub async fn until(&mut self, marker: &str) -> String {
        self.try_until(marker)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Raw::until`], failing instead of panicking (for peers of a server that may
    /// die at any moment).
    pub async fn try_until(&mut self, marker: &str) -> Result<String, String> {
        let wait = super::patience::deadline();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(at) = self.pending.find(marker) {
                let rest = self.pending.split_off(at + marker.len());
                return Ok(std::mem::replace(&mut self.pending, rest));
            }
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut buf)).await {
                Ok(Ok(0)) => {
                    return Err(format!(
                        "server closed before {marker:?}; it sent {:?}",
                        self.pending
                    ));
                }
                Ok(Ok(n)) => self.pending.push_str(&String::from_utf8_lossy(&buf[..n])),
                Ok(Err(e)) => {
                    return Err(format!(
                        "read failed before {marker:?}: {e}; got {:?}",
                        self.pending
                    ));
                }
                Err(_) => {
                    return Err(format!(
                        "no {marker:?} within {wait:?}; got {:?}",
                        self.pending
                    ));
                }
            }
        }
    }

    /// Everything until the server closes the connection (bounded by the deadline).
    pub async fn rest_until_closed(&mut self) -> String {
        let mut out = Vec::new();
        let _ =
            tokio::time::timeout(super::patience::deadline(), self.tcp.read_to_end(&mut out)).await;
        let mut all = std::mem::take(&mut self.pending);
        all.push_str(&String::from_utf8_lossy(&out));
        all
    }
}

/// PLAIN for `user` with password `{user}-pw` (the test server's accounts).
fn plain(user: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{user}-pw"))
}

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

impl Raw {
    /// Logs in over plaintext with PLAIN (the server must allow it) and binds
    /// `resource`.
    pub async fn login(addr: std::net::SocketAddr, user: &str, resource: &str) -> Raw {
        Raw::try_login(addr, user, resource)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Raw::login`], failing instead of panicking.
    pub async fn try_login(
        addr: std::net::SocketAddr,
        user: &str,
        resource: &str,
    ) -> Result<Raw, String> {
        let mut c = Raw::try_authenticate(addr, user).await?;
        let bind = format!(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        );
        c.try_write(bind.as_bytes()).await?;
        c.try_until("</iq>").await?;
        Ok(c)
    }

    /// Authenticates over plaintext with PLAIN and restarts the stream, up to its
    /// features: what a client does before it binds or resumes (XEP-0198).
    pub async fn try_authenticate(addr: std::net::SocketAddr, user: &str) -> Result<Raw, String> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut c = Raw::over(tcp);
        c.try_write(HEADER).await?;
        c.try_until("</stream:features>").await?;
        let auth = format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            plain(user)
        );
        c.try_write(auth.as_bytes()).await?;
        c.try_until("<success").await?;
        c.try_until("/>").await?;
        c.try_write(HEADER).await?;
        c.try_until("</stream:features>").await?;
        Ok(c)
    }

    pub async fn try_write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.tcp
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Splits into a reader task that parses what arrives into elements, and the
    /// socket's write half.
    pub fn split(
        self,
    ) -> (
        tokio::sync::mpsc::UnboundedReceiver<Element>,
        tokio::net::tcp::OwnedWriteHalf,
    ) {
        let (mut rd, wr) = self.tcp.into_split();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut reader = Reader::new(Limits::default());
        // The stream's header was read as text already; the reader gets one to
        // start from, then what was left unread.
        let mut bytes = Vec::from(HEADER);
        bytes.extend_from_slice(self.pending.as_bytes());
        actix::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let mut input = &bytes[..];
                loop {
                    match reader.next(&mut input, false) {
                        Ok(Some(Item::Element(el))) => {
                            if tx.send(el).is_err() {
                                return;
                            }
                        }
                        Ok(Some(Item::Header(_))) => {}
                        Ok(Some(Item::Footer)) | Err(_) => return,
                        Ok(None) => break,
                    }
                }
                let used = bytes.len() - input.len();
                bytes.drain(..used);
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => bytes.extend_from_slice(&buf[..n]),
                }
            }
        });
        (rx, wr)
    }
}

use cloud_notify::xmpp::xml::reader::{Item, Limits, Reader};
use xmpp_parsers::minidom::Element;
