//! The push module: the server side of XEP-0357 with the behaviour of Prosody's
//! `mod_cloud_notify` (spec Part B), improved as decided in spec Part A.
//!
//! - [`interface`]: the messages exchanged with the host. Start here.
//! - [`protocol`]: `<enable/>` / `<disable/>` validation and replies.
//! - [`rules`]: which stanzas wake a phone, and which are important.
//! - [`publish`]: the publish IQ and the app server's answers.
//! - [`registration`]: a user's registrations and their eviction order.
//! - [`tigase`]: the Tigase extensions (encrypted payload, priority, calls, muted JIDs,
//!   groupchat rules, unknown senders, away).
//! - [`machine`]: every per-user decision, as a state machine with no I/O: events in,
//!   effects out. A host may drive it directly.
//! - [`executor`]: runs a user's machine inside the actix actor that owns the user:
//!   executes its effects, feeds back their results. The XMPP server's user actor
//!   embeds one.
//! - `hub`, `user`: a stand-alone host for hosts without per-user actors of their own
//!   ([`PushHub`] routes the [`interface`] messages to one `UserPush` per user, each with
//!   an executor); `messages`: what those two say to each other.

mod deadlines;
pub mod executor;
mod hub;
pub mod interface;
pub mod machine;
mod messages;
pub mod protocol;
pub mod publish;
pub mod registration;
pub mod rules;
pub mod tigase;
mod user;
mod xml_text;

use std::sync::Arc;

use actix::{Actor, Addr, Recipient};

pub use executor::{PushActor, PushExecutor, PushLinks};
pub use hub::{GetHubStats, HubStats, PushHub};
pub use interface::*;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::StoreClient;

/// Starts the push module. `router` receives every publish to route to an app server.
pub fn start(
    cfg: Arc<Config>,
    store: StoreClient,
    router: Recipient<RoutePublish>,
) -> Addr<PushHub> {
    PushHub::new(cfg, store, router).start()
}

/// [`start`], counting publishes into the server's `metrics`.
pub fn start_with_metrics(
    cfg: Arc<Config>,
    store: StoreClient,
    router: Recipient<RoutePublish>,
    metrics: Arc<Metrics>,
) -> Addr<PushHub> {
    PushHub::new(cfg, store, router)
        .with_metrics(metrics)
        .start()
}
