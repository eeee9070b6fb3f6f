//! The XMPP host: what a push server needs of an XMPP server.
//!
//! Built so far: client streams with STARTTLS, SASL (SCRAM, PLAIN) and bind (`c2s`,
//! `sasl`, `scram`, `tls`, `io`), routing between local sessions and components
//! (`router`, `component`), and the server that starts them (`server`). Still to come:
//! stream management, offline storage, roster and presence subscriptions.

#[cfg(unix)]
pub mod admin;
pub mod c2s;
pub mod component;
pub mod io;
pub mod roster;
pub mod router;
pub mod sasl;
pub mod scram;
pub mod server;
pub mod session;
pub mod sm;
pub mod stanza;
pub mod tls;
