//! The push app server: a XEP-0114 component that answers every publish at once and
//! reports which node it was for and when it arrived.
//!
//! It scans the server's output for `<iq …>…</iq>` instead of parsing XML: the shape is
//! the server's own (spec §6), and a parser here would spend the CPU the server under
//! test shares, and add its time to every latency.

use std::net::SocketAddr;
use std::time::Instant;

use sha1::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::server::{APP_JID, APP_SECRET, DOMAIN};

/// One publish as received.
pub struct Received {
    pub node: String,
    pub at: Instant,
}

/// Reads the value of `name='…'` in `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}='");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('\'')?;
    Some(&tag[start..start + len])
}

/// Connects, completes the handshake and spawns the reader. Publishes are reported on
/// the returned channel; it closes when the stream ends.
pub async fn attach(addr: SocketAddr) -> Result<mpsc::UnboundedReceiver<Received>, String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("component connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    tcp.write_all(format!("<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='{APP_JID}'>").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let header_end = read_until(&mut tcp, &mut buf, b"<stream:stream").await?;
    let rest = String::from_utf8_lossy(&buf[header_end..]).to_string();
    let tag_end = rest.find('>').ok_or("no stream header")?;
    let id = attr(&rest[..tag_end], "id")
        .ok_or("no stream id")?
        .to_string();
    let digest: String = sha1::Sha1::digest(format!("{id}{APP_SECRET}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    tcp.write_all(format!("<handshake>{digest}</handshake>").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    buf.clear();
    let at = read_until(&mut tcp, &mut buf, b"<handshake").await?;
    let mut pending = buf.split_off(at);
    if let Some(end) = find(&pending, b"/>") {
        pending.drain(..end + 2);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(serve(tcp, pending, tx));
    Ok(rx)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn read_until(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
    needle: &[u8],
) -> Result<usize, String> {
    loop {
        if let Some(at) = find(buf, needle) {
            return Ok(at);
        }
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "component stream ended: {}",
                String::from_utf8_lossy(buf)
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Answers every publish with a result, in one write per read.
async fn serve(mut tcp: TcpStream, mut buf: Vec<u8>, tx: mpsc::UnboundedSender<Received>) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut replies = String::new();
    // When the bytes in `buf` arrived: every publish in one read shares its time.
    let mut at = Instant::now();
    loop {
        let mut consumed = 0;
        while let Some(end) = find(&buf[consumed..], b"</iq>") {
            let stanza = String::from_utf8_lossy(&buf[consumed..consumed + end]).to_string();
            consumed += end + 5;
            let Some(start) = stanza.find("<iq") else {
                continue;
            };
            let tag_end = stanza[start..]
                .find('>')
                .map_or(stanza.len(), |e| start + e);
            let tag = &stanza[start..tag_end];
            if let Some(id) = attr(tag, "id") {
                replies.push_str(&format!(
                    "<iq type='result' id='{id}' from='{APP_JID}' to='{DOMAIN}'/>"
                ));
            }
            if let Some(node) = stanza
                .find("<publish node='")
                .and_then(|p| attr(&stanza[p..], "node"))
            {
                let _ = tx.send(Received {
                    node: node.to_string(),
                    at,
                });
            }
        }
        buf.drain(..consumed);
        if !replies.is_empty() {
            if tcp.write_all(replies.as_bytes()).await.is_err() {
                return;
            }
            replies.clear();
        }
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                at = Instant::now();
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}
