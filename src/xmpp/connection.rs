//! What a client connection needs, negotiating or bound: the server's shared parts, and
//! reading the next element of the stream with the outcome named.

use std::sync::Arc;

use actix::Addr;
use xmpp_parsers::minidom::Element;

use super::io::SizeGuard;
use super::router::Router;
use super::xml::{Read, XmlStream};
use crate::config::Config;
use crate::store::{ArchiveGate, Store};

/// What every session needs from the server.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub tls: Arc<rustls::ServerConfig>,
    pub router: Addr<Router>,
    pub store: Addr<Store>,
    /// Places for archive writes waiting for a commit (`store_max_pending`).
    pub archive_gate: ArchiveGate,
    /// Keys the decoy SCRAM credentials of unknown users (random per process).
    pub decoy_secret: [u8; 32],
    /// Becomes true when the server stops: negotiating streams end with
    /// `system-shutdown` (bound sessions hear it from the router).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

pub type Xml = XmlStream;

pub async fn close_with(xml: &mut Xml, condition: &str) {
    xml.close_with(condition).await;
}

/// What reading the stream gave.
pub enum Next {
    Element(Element),
    /// The peer was silent for the read timeout: poke it, or it is dropped soon.
    Idle,
    /// The stream is over: closed by the peer, or by us with the stream error it deserved.
    Closed,
    /// The connection broke without a stream close: a sleeping phone's case.
    Lost,
}

pub async fn read(xml: &mut Xml, guard: &SizeGuard) -> Next {
    match xml.next().await {
        Read::Element(el) => {
            guard.reset();
            Next::Element(el)
        }
        Read::Idle => Next::Idle,
        Read::Footer => {
            tracing::debug!("client closed the stream");
            let _ = xml.shutdown().await;
            Next::Closed
        }
        Read::Eof => {
            tracing::debug!("connection ended without closing the stream");
            Next::Lost
        }
        Read::Header(_) => {
            tracing::info!("stream closed: a second stream header without a restart");
            close_with(xml, "not-well-formed").await;
            Next::Closed
        }
        Read::Invalid(e) => {
            tracing::info!(error = %e, condition = e.condition(), "stream closed: bad XML");
            close_with(xml, e.condition()).await;
            Next::Closed
        }
        Read::Io(e) if guard.exceeded() => {
            tracing::info!(error = %e, "stream closed: stanza size limit exceeded");
            close_with(xml, "policy-violation").await;
            Next::Closed
        }
        Read::Io(e) => {
            tracing::debug!(error = %e, "connection lost");
            Next::Lost
        }
    }
}

/// Reads the next element of a stream still negotiating; past `deadline` the stream ends
/// with `connection-timeout`, and when the server stops, with `system-shutdown`.
pub async fn next_before(
    xml: &mut Xml,
    guard: &SizeGuard,
    deadline: tokio::time::Instant,
    shared: &Shared,
) -> Option<Element> {
    let mut stopping = shared.stopping.clone();
    let next = tokio::select! {
        r = tokio::time::timeout_at(deadline, read(xml, guard)) => r,
        _ = stopping.wait_for(|stop| *stop) => {
            tracing::debug!("negotiation ended: the server stops");
            close_with(xml, "system-shutdown").await;
            return None;
        }
    };
    match next {
        Ok(Next::Element(el)) => Some(el),
        Ok(Next::Idle) | Err(_) => {
            tracing::debug!("negotiation ended: client did not authenticate in time");
            close_with(xml, "connection-timeout").await;
            None
        }
        Ok(Next::Closed | Next::Lost) => None,
    }
}
