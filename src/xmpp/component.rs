//! Components (XEP-0114): a push app server on the same machine connects here, proves
//! the shared secret, and then receives the publishes for its JID and answers them.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use futures::{SinkExt, StreamExt};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_xmpp::xmlstream::{self, ReadError, StreamHeader, Timeouts, XmlStream};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::io::{self, Io, Transport};
use super::router::{AttachComponent, DetachComponent, Route, Router, ToComponent};
use super::stanza::{self, CLIENT_NS, COMPONENT_NS};
use crate::config::Config;
use crate::push::{AppServerResponse, PushHub};

/// The largest stream header a component may send.
const MAX_HEADER: usize = 4096;

pub struct Shared {
    pub cfg: Arc<Config>,
    pub router: Addr<Router>,
    pub hub: Addr<PushHub>,
}

/// What the first bytes of a component connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// The whole opening tag is there: its `to`, whether it has a `version`, and the
    /// byte offset of its closing `>`.
    Complete {
        to: Option<String>,
        version: bool,
        end: usize,
    },
    /// Read more.
    Incomplete,
    /// Not an XML stream header.
    Invalid,
}

/// Scans the opening `<stream:stream …>` tag for its `to`. The component's header must be
/// known before ours is sent (ours carries its JID), and tokio-xmpp's responder would
/// send stream features, which XEP-0114 peers do not expect.
pub fn header_to(buf: &[u8]) -> Header {
    match scan(buf) {
        Ok(Some((to, version, end))) => Header::Complete { to, version, end },
        Ok(None) => Header::Incomplete,
        Err(()) => Header::Invalid,
    }
}

type Scanned = (Option<String>, bool, usize);

fn scan(buf: &[u8]) -> Result<Option<Scanned>, ()> {
    let text = match std::str::from_utf8(buf) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&buf[..e.valid_up_to()]).map_err(|_| ())?
        }
        Err(_) => return Err(()),
    };
    let mut rest = text.trim_start();
    if let Some(r) = rest.strip_prefix("<?xml") {
        let Some(end) = r.find("?>") else {
            return Ok(None);
        };
        rest = r[end + 2..].trim_start();
    }
    if rest.is_empty() {
        return Ok(None);
    }
    let Some(tag) = rest.strip_prefix('<') else {
        return Err(());
    };
    // The opening tag ends at the first `>` outside quotes.
    let mut quote = None;
    let mut end = None;
    for (i, c) in tag.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(end) = end else {
        return Ok(None);
    };
    let absolute_end = text.len() - rest.len() + 1 + end;
    let tag = &tag[..end];
    let mut parts = tag.splitn(2, char::is_whitespace);
    let name = parts.next().unwrap_or("");
    if !(name == "stream:stream" || name.ends_with(":stream") || name == "stream") {
        return Err(());
    }
    let attrs = parts.next().unwrap_or("");
    let mut rest = attrs;
    let mut to = None;
    let mut version = false;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let Some(q) = after.chars().next().filter(|c| *c == '\'' || *c == '"') else {
            return Err(());
        };
        let Some(close) = after[1..].find(q) else {
            return Err(());
        };
        let value = &after[1..1 + close];
        match key {
            "to" => to = Some(value.to_string()),
            "version" => version = true,
            _ => {}
        }
        rest = &after[close + 2..];
    }
    Ok(Some((to, version, absolute_end)))
}

fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let d = Sha1::digest(format!("{stream_id}{secret}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn serve(mut tcp: TcpStream, shared: Rc<Shared>) {
    let mut head = Vec::with_capacity(512);
    let to = loop {
        let mut chunk = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut chunk)).await;
        let n = match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => n,
        };
        head.extend_from_slice(&chunk[..n]);
        match header_to(&head) {
            Header::Complete { to, version, end } => {
                // XEP-0114 peers (its own examples, slixmpp) send no `version`; the
                // stream parser requires one, so it is added to the bytes it reads.
                if !version {
                    let tail = head.split_off(end);
                    head.extend_from_slice(b" version='1.0'");
                    head.extend_from_slice(&tail);
                }
                break to;
            }
            Header::Incomplete if head.len() < MAX_HEADER => continue,
            _ => return,
        }
    };
    let entry = to.as_deref().and_then(|t| {
        shared
            .cfg
            .components
            .iter()
            .find(|c| c.jid.eq_ignore_ascii_case(t))
    });
    let (mut io, guard) = io::wrap_with_replay(
        Transport::Plain(tcp),
        head,
        shared.cfg.c2s_stanza_size_limit,
    );
    let outbox = io::outbox(&mut io);
    let id = {
        let mut b = [0u8; 16];
        let _ = getrandom::fill(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    let header = StreamHeader {
        from: to.as_deref().map(Into::into),
        to: None,
        id: Some(id.as_str().into()),
    };
    let timeouts = Timeouts {
        read_timeout: Duration::from_secs(300),
        response_timeout: Duration::from_secs(60),
    };
    let Ok(pending) = xmlstream::initiate_stream(io, COMPONENT_NS, header, timeouts).await else {
        return;
    };
    let mut xml: XmlStream<Io, Element> = pending.skip_features();
    let close = |cond: &'static str| {
        Element::builder("error", "http://etherx.jabber.org/streams")
            .append(Element::builder(
                cond,
                "urn:ietf:params:xml:ns:xmpp-streams",
            ))
            .build()
    };
    let Some(entry) = entry else {
        tracing::info!(to = ?to, "component stream for an unknown JID refused");
        let _ = xml.send(&close("host-unknown")).await;
        let _ = xml.shutdown().await;
        return;
    };
    let jid = entry.jid.to_ascii_lowercase();
    let handshake = match xml.next().await {
        Some(Ok(el)) if el.is("handshake", COMPONENT_NS) => el.text(),
        _ => return,
    };
    let expected = handshake_digest(&id, &entry.secret);
    if !bool::from(
        handshake
            .trim()
            .to_ascii_lowercase()
            .as_bytes()
            .ct_eq(expected.as_bytes()),
    ) {
        tracing::warn!(component = %jid, "component handshake with a wrong secret");
        let _ = xml.send(&close("not-authorized")).await;
        let _ = xml.shutdown().await;
        return;
    }
    let (tx, rx) = flume::bounded(shared.cfg.component_queue_size);
    if !shared
        .router
        .send(AttachComponent {
            jid: jid.clone(),
            tx,
        })
        .await
        .unwrap_or(false)
    {
        let _ = xml.send(&close("conflict")).await;
        let _ = xml.shutdown().await;
        return;
    }
    if xml
        .send(&Element::builder("handshake", COMPONENT_NS).build())
        .await
        .is_err()
    {
        shared.router.do_send(DetachComponent { jid });
        return;
    }
    tracing::info!(component = %jid, "component connected");
    loop {
        tokio::select! {
            r = xml.next() => match r {
                Some(Ok(el)) => {
                    guard.reset();
                    handle(el, &jid, &shared);
                }
                Some(Err(ReadError::SoftTimeout)) => continue,
                Some(Err(ReadError::ParseError(_))) => {
                    let _ = xml.send(&close("invalid-xml")).await;
                    let _ = xml.shutdown().await;
                    break;
                }
                _ => {
                    if guard.exceeded() {
                        let _ = xml.send(&close("policy-violation")).await;
                    }
                    let _ = xml.shutdown().await;
                    break;
                }
            },
            out = rx.recv_async() => match out.ok() {
                // A burst of publishes goes out in one write: flushing each would cost a
                // syscall per publish and let the queue fill.
                Some(first) => {
                    if !write_batch(&mut xml, &outbox, first, &rx).await {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    shared.router.do_send(DetachComponent { jid: jid.clone() });
    tracing::info!(component = %jid, "component disconnected");
}

/// Stanzas written before one flush, so a flood cannot starve the component's reading.
const WRITE_BATCH: usize = 64;

/// Writes `first` and the stanzas already queued behind it, then flushes once. Publishes
/// arrive as text and go through the transport's outbox; the XML writer is flushed
/// before each one, so every stanza stays whole and in order (see [`io::Outbox`]).
/// `false` when the stream is no longer writable.
async fn write_batch(
    xml: &mut XmlStream<Io, Element>,
    outbox: &io::Outbox,
    first: ToComponent,
    rx: &flume::Receiver<ToComponent>,
) -> bool {
    let mut next = Some(first);
    let mut written = 0;
    let mut fed = false;
    while let Some(item) = next.take() {
        match item {
            ToComponent::Stanza(s) => {
                let s = stanza::rename_ns(*s, CLIENT_NS, COMPONENT_NS);
                if xml.feed(&s).await.is_err() {
                    return false;
                }
                fed = true;
            }
            ToComponent::Publish(text) => {
                if fed {
                    if SinkExt::<&Element>::flush(xml).await.is_err() {
                        return false;
                    }
                    fed = false;
                }
                outbox.push(&text);
            }
        }
        written += 1;
        if written < WRITE_BATCH {
            next = rx.try_recv().ok();
        }
    }
    SinkExt::<&Element>::flush(xml).await.is_ok()
}

/// A stanza from the component: answers to publishes go to the push module, the rest is
/// routed (its `from` must be the component's own domain or below it).
fn handle(el: Element, jid: &str, shared: &Shared) {
    let el = stanza::rename_ns(el, COMPONENT_NS, CLIENT_NS);
    let from_ok = el
        .attr("from")
        .and_then(|f| f.parse::<Jid>().ok())
        .is_some_and(|f| f.domain().as_str() == jid);
    if !from_ok {
        tracing::debug!(component = %jid, "stanza with a foreign from dropped");
        return;
    }
    let to = el.attr("to").and_then(|t| t.parse::<Jid>().ok());
    let to_domain = to.as_ref().is_some_and(|t| {
        t.node().is_none() && t.resource().is_none() && t.domain().as_str() == shared.cfg.domain
    });
    let kind = el.attr("type");
    if el.name() == "iq" && to_domain && matches!(kind, Some("result") | Some("error")) {
        shared.hub.do_send(AppServerResponse { iq: el });
        return;
    }
    shared.router.do_send(Route(el));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_to_reads_the_opening_tag() {
        let h = b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='push.localhost'>";
        let Header::Complete { to, version, end } = header_to(h) else {
            panic!("complete");
        };
        assert_eq!(to.as_deref(), Some("push.localhost"));
        assert!(!version);
        assert_eq!(h[end], b'>');
        assert_eq!(end, h.len() - 1);
        assert_eq!(header_to(&h[..40]), Header::Incomplete, "read more");
        assert_eq!(
            header_to(b"<stream:stream xmlns='x' version='1.0'>"),
            Header::Complete {
                to: None,
                version: true,
                end: 38
            }
        );
        let Header::Complete { to, .. } = header_to(b"<stream:stream a='>' to=\"p.example\">")
        else {
            panic!("complete");
        };
        assert_eq!(to.as_deref(), Some("p.example"));
        assert_eq!(header_to(b"<message/>"), Header::Invalid);
        assert_eq!(header_to(b"GET / HTTP/1.1"), Header::Invalid);
    }

    #[test]
    fn handshake_is_sha1_hex_of_id_and_secret() {
        assert_eq!(
            handshake_digest("3BF96D32", "test"),
            "aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e"
        );
    }
}
