//! Components (XEP-0114): a push app server on the same machine connects here, proves
//! the shared secret, and then receives the publishes for its JID and answers them.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use tokio::net::TcpStream;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::io::{self, SizeGuard, Transport};
use super::route::Route;
use super::router::{AttachComponent, DetachComponent, Router, ToComponent};
use super::stanza::{self, CLIENT_NS, COMPONENT_NS};
use super::xml::{OurHeader, Read, XmlStream};
use crate::config::Config;
use crate::push::AppServerResponse;

/// How long a component has to send its header and handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Shared {
    pub cfg: Arc<Config>,
    pub router: Addr<Router>,
}

fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let d = Sha1::digest(format!("{stream_id}{secret}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn serve(tcp: TcpStream, shared: Rc<Shared>) {
    let peer = tcp.peer_addr().ok();
    let (io, guard) = io::wrap(Transport::Plain(tcp), shared.cfg.c2s_stanza_size_limit);
    let mut xml = XmlStream::new(io, COMPONENT_NS, shared.cfg.xml_limits());
    let Some(jid) = authenticate(&mut xml, &guard, peer, &shared).await else {
        return;
    };
    let Some(rx) = attach(&mut xml, &jid, &shared).await else {
        return;
    };
    tracing::info!(component = %jid, "component connected");
    exchange(&mut xml, &guard, &jid, &rx, &shared).await;
    shared.router.do_send(DetachComponent { jid: jid.clone() });
    tracing::info!(component = %jid, "component disconnected");
}

/// The handshake (XEP-0114): `Some(jid)` of a configured component that proved it knows
/// the secret; otherwise the stream is closed.
async fn authenticate(
    xml: &mut XmlStream,
    guard: &SizeGuard,
    peer: Option<SocketAddr>,
    shared: &Shared,
) -> Option<String> {
    let id = {
        let mut b = [0u8; 16];
        let _ = getrandom::fill(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    let Some((entry, handshake)) =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(xml, &id, shared))
            .await
            .ok()
            .flatten()
    else {
        tracing::debug!(?peer, "component stream ended before its handshake");
        return None;
    };
    guard.reset();
    let expected = handshake_digest(&id, &entry.secret);
    let given = handshake.trim().to_ascii_lowercase();
    if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        tracing::warn!(component = %entry.jid, ?peer, "component handshake with a wrong secret");
        xml.close_with("not-authorized").await;
        return None;
    }
    Some(entry.jid.to_ascii_lowercase())
}

/// Registers the component with the router and confirms the handshake: the queue the
/// router fills with its stanzas, or `None` when another connection holds the JID or
/// the confirmation could not be sent.
async fn attach(
    xml: &mut XmlStream,
    jid: &str,
    shared: &Shared,
) -> Option<flume::Receiver<ToComponent>> {
    let (tx, rx) = flume::bounded(shared.cfg.component_queue_size);
    let attach = AttachComponent {
        jid: jid.to_string(),
        tx,
    };
    if !shared.router.send(attach).await.unwrap_or(false) {
        xml.close_with("conflict").await;
        return None;
    }
    let confirmation = Element::builder("handshake", COMPONENT_NS).build();
    if xml.send(&confirmation).await.is_err() {
        shared.router.do_send(DetachComponent {
            jid: jid.to_string(),
        });
        return None;
    }
    Some(rx)
}

/// Stanzas both ways until either side ends the stream.
async fn exchange(
    xml: &mut XmlStream,
    guard: &SizeGuard,
    jid: &str,
    rx: &flume::Receiver<ToComponent>,
    shared: &Shared,
) {
    loop {
        tokio::select! {
            r = xml.next() => {
                if !read_from_component(xml, guard, r, jid, shared).await {
                    break;
                }
            }
            out = rx.recv_async() => match out.ok() {
                // A burst of publishes goes out in one write: flushing each would cost a
                // syscall per publish and let the queue fill.
                Some(first) => {
                    if !write_batch(xml, first, rx).await {
                        break;
                    }
                }
                None => break,
            },
        }
    }
}

/// Handles what the component sent; `false` when the stream is over (closed here, with
/// the error it deserved).
async fn read_from_component(
    xml: &mut XmlStream,
    guard: &SizeGuard,
    read: Read,
    jid: &str,
    shared: &Shared,
) -> bool {
    match read {
        Read::Element(el) => {
            guard.reset();
            handle(el, jid, shared);
            true
        }
        Read::Idle => true,
        Read::Invalid(e) => {
            tracing::info!(component = %jid, error = %e, "component stream closed: bad XML");
            xml.close_with(e.condition()).await;
            false
        }
        Read::Io(_) if guard.exceeded() => {
            tracing::info!(component = %jid, "component stream closed: stanza size limit exceeded");
            xml.close_with("policy-violation").await;
            false
        }
        Read::Header(_) => {
            xml.close_with("not-well-formed").await;
            false
        }
        Read::Footer | Read::Eof | Read::Io(_) => {
            let _ = xml.shutdown().await;
            false
        }
    }
}

/// Reads the component's header, answers with ours (its JID and the stream id the
/// handshake hashes) and reads the handshake. `None`: the stream ended, with the error it
/// deserved where there was one.
async fn handshake<'a>(
    xml: &mut XmlStream,
    id: &str,
    shared: &'a Shared,
) -> Option<(&'a crate::config::ComponentConfig, String)> {
    let header = match xml.read_header().await {
        Ok(h) => h,
        Err(Read::Invalid(e)) => {
            let _ = xml.feed_header(OurHeader {
                from: None,
                to: None,
                id: Some(id),
            });
            xml.close_with(e.condition()).await;
            return None;
        }
        Err(_) => return None,
    };
    let entry = header.to.as_deref().and_then(|t| {
        shared
            .cfg
            .components
            .iter()
            .find(|c| c.jid.eq_ignore_ascii_case(t))
    });
    xml.feed_header(OurHeader {
        from: header.to.as_deref(),
        to: None,
        id: Some(id),
    })
    .ok()?;
    let Some(entry) = entry else {
        tracing::info!(to = ?header.to, "component stream for an unknown JID refused");
        xml.close_with("host-unknown").await;
        return None;
    };
    // XEP-0114 sends no stream features.
    xml.flush().await.ok()?;
    match xml.next().await {
        Read::Element(el) if el.is("handshake", COMPONENT_NS) => Some((entry, el.text())),
        Read::Invalid(e) => {
            xml.close_with(e.condition()).await;
            None
        }
        Read::Element(_) => {
            xml.close_with("not-authorized").await;
            None
        }
        _ => None,
    }
}

/// Stanzas written before one flush, so a flood cannot starve the component's reading.
const WRITE_BATCH: usize = 64;

/// Writes `first` and the stanzas already queued behind it, then flushes once. Publishes
/// arrive as text (serialized once by the push module) and go out as they are.
/// `false` when the stream is no longer writable.
async fn write_batch(
    xml: &mut XmlStream,
    first: ToComponent,
    rx: &flume::Receiver<ToComponent>,
) -> bool {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(item) = next.take() {
        match item {
            ToComponent::Stanza(s, _charge) => {
                let s = stanza::rename_ns(*s, CLIENT_NS, COMPONENT_NS);
                if let Err(e) = xml.feed(&s) {
                    tracing::warn!(error = %e, "stanza to a component not serializable; dropped");
                }
            }
            ToComponent::Publish(text, _charge) => xml.feed_text(&text),
        }
        written += 1;
        if written < WRITE_BATCH {
            next = rx.try_recv().ok();
        }
    }
    xml.flush().await.is_ok()
}

/// A stanza from the component: answers to publishes go to the push module, the rest is
/// routed (its `from` must be the component's own domain or below it).
fn handle(el: Element, jid: &str, shared: &Shared) {
    // Anything else (a stanza in no namespace, say) could not be written to a client
    // and read back, so the XEP-0198 queue and offline storage would lose it.
    if !matches!(el.name(), "message" | "presence" | "iq") || !el.has_ns(COMPONENT_NS) {
        tracing::warn!(component = %jid, element = el.name(), "not a stanza: dropped");
        return;
    }
    let el = stanza::rename_ns(el, COMPONENT_NS, CLIENT_NS);
    let from_ok = el
        .attr("from")
        .and_then(crate::jid::parse::<Jid>)
        .is_some_and(|f| f.domain().as_str() == jid);
    if !from_ok {
        tracing::debug!(component = %jid, "stanza with a foreign from dropped");
        return;
    }
    let to = el.attr("to").and_then(crate::jid::parse::<Jid>);
    let to_domain = to.as_ref().is_some_and(|t| {
        t.node().is_none() && t.resource().is_none() && t.domain().as_str() == shared.cfg.domain
    });
    let kind = el.attr("type");
    if el.name() == "iq" && to_domain && matches!(kind, Some("result") | Some("error")) {
        shared.router.do_send(AppServerResponse { iq: el });
        return;
    }
    shared.router.do_send(Route(el));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_is_sha1_hex_of_id_and_secret() {
        assert_eq!(
            handshake_digest("3BF96D32", "test"),
            "aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e"
        );
    }
}
