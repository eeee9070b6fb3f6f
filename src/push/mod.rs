//! The push module: the server side of XEP-0357 with the behaviour of Prosody's
//! `mod_cloud_notify` (spec Part B), improved as decided in spec Part A.
//!
//! - [`interface`]: the messages exchanged with the host. Start here.
//! - [`protocol`]: `<enable/>` / `<disable/>` validation and replies.
//! - [`rules`]: which stanzas wake a phone, and which are important.
//! - [`publish`]: the publish IQ and the app server's answers.
//! - [`registration`]: a user's registrations and their eviction order.
//! - [`window`], [`batch`], [`marks`]: per-session batching (D20 and §8.3) and
//!   deduplication.
//! - `hub`, `user`: the two actors.

pub mod batch;
mod hub;
pub mod interface;
pub mod marks;
pub mod protocol;
pub mod publish;
pub mod registration;
pub mod rules;
mod user;
pub mod window;

use std::sync::Arc;

use actix::{Actor, Addr, Recipient};

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
