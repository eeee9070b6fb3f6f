//! Server-to-server links (RFC 6120, XEP-0220): our users reach other servers, and
//! publishes reach app servers on other domains (Conversations', Monal's, Siskin's).
//!
//! Outbound, one link per pair of our domain and a remote one (`links`, `outbound`): it
//! resolves the domain (`resolve`: `s2s_hosts`, then SRV records, then its addresses on
//! 5269), connects with STARTTLS or direct TLS (`connect`, `client_tls`) and
//! authenticates with SASL EXTERNAL when the peer accepts our certificate, otherwise
//! with dialback (`dialback`); while it does, that domain's stanzas wait in
//! a bounded queue, and when it fails they bounce with `remote-server-not-found` or
//! `remote-server-timeout` (publishes are held and retried instead, D21). Inbound
//! (`inbound`), a peer authenticates its domain with a certificate valid for it (SASL
//! EXTERNAL, judged by `trust`) or with dialback, which we check with its authoritative
//! server over a connection of our own (`verify`); then its stanzas enter
//! the router like local ones, and app servers' answers to publishes go to the push
//! module, as a component's do. The pure decisions (features, steps, dialback elements,
//! which stanza may enter) are in `negotiate`. Streams are used both ways when the peer
//! asks (XEP-0288): our links take the peer's stanzas for us, and an inbound
//! stream takes ours for the peer when we have no link to it.

pub mod client_tls;
pub mod connect;
pub mod dialback;
pub mod inbound;
pub mod links;
pub mod negotiate;
mod outbound;
pub mod probe;
pub mod queue;
pub mod resolve;
pub mod srv_order;
pub mod trust;
mod verify;

use std::sync::Arc;

use actix::Recipient;

use crate::config::{Config, LiveConfig};
use crate::push::{AppServerResponse, PublishUndelivered};
use crate::xmpp::route::Route;

/// What every link and inbound stream needs.
pub struct Shared {
    pub cfg: Arc<Config>,
    /// What the server runs with now (SIGHUP): `s2s_max_connections` is read here.
    pub live: LiveConfig,
    /// Our certificate, for inbound STARTTLS.
    pub tls_server: Arc<rustls::ServerConfig>,
    /// Our certificate with ALPN `xmpp-server`, for `s2s_direct_tls_listen`.
    pub tls_direct: Arc<rustls::ServerConfig>,
    pub tls_client: Arc<rustls::ClientConfig>,
    /// The same with ALPN `xmpp-server`, for direct TLS (XEP-0368).
    pub tls_client_direct: Arc<rustls::ClientConfig>,
    pub secret: dialback::Secret,
    pub resolver: resolve::Resolver,
    /// Judges peers' certificates for SASL EXTERNAL.
    pub trust: trust::Trust,
    /// Inbound stanzas and bounces enter the router here.
    pub router: Recipient<Route>,
    /// App servers' answers to publishes.
    pub answers: Recipient<AppServerResponse>,
    /// Publishes the links could not deliver (D21), for the registrations' ledger.
    pub undelivered: Recipient<PublishUndelivered>,
    /// The links actor, for inbound streams used both ways (XEP-0288); set when it
    /// starts.
    pub bidi: std::cell::OnceCell<actix::Recipient<queue::Bidi>>,
    /// Becomes true when the server stops.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// What waits in the queues, for the memory figures.
    pub held: crate::metrics::held::HeldBytes,
}
