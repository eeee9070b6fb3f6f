//! What every request on the admin socket reaches: the actors and the status sources. In
//! a file of its own so the request handlers ([`ops`](super::ops) and the account
//! requests) import it without importing each other.

use actix::Addr;

use crate::metrics::snapshot::Sources;
use crate::store::Store;
use crate::xmpp::router::Router;

pub struct Shared {
    pub store: Addr<Store>,
    pub router: Addr<Router>,
    /// For `status`.
    pub sources: Sources,
}
