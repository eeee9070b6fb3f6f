//! cloud-notify: XEP-0357 push notifications, server side.
//!
//! - [`config`]: the configuration file.
//! - [`credentials`]: what a password is stored as (SCRAM keys), for the store and SASL.
//! - `console`: the `push` and `status` commands (Unix: they use the admin socket).
//! - [`logging`]: the log format (every value escaped).
//! - [`store`]: persistent state in redb, written with group commit.
//! - [`metrics`]: what the server counts, for `status` and the OpenMetrics endpoint.
//! - [`push`]: the push module (Prosody's `mod_cloud_notify`, improved), which talks to
//!   its host only through the messages in [`push::interface`].
//! - [`xmpp`]: the XMPP host (client streams, routing, sessions, components).
//! - [`s2s`]: server-to-server links (federation), entered from the router.

pub mod config;
#[cfg(unix)]
pub mod console;
pub mod credentials;
pub mod jid;
pub mod logging;
pub mod metrics;
pub mod push;
pub mod s2s;
pub mod store;
pub mod xmpp;
