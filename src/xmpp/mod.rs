//! The XMPP host: what a push server needs of an XMPP server.
//!
//! Client streams with STARTTLS, SASL (SCRAM, PLAIN) and bind (`c2s`, `sasl`, `scram`,
//! `tls`, `io`, over the XML streams of `xml`), the bound session with stream management
//! (`session`, `sm`), rosters (`roster`), routing between local sessions and components
//! with offline storage (`router`, `component`), and the server that starts them
//! (`server`).

#[cfg(unix)]
pub mod admin;
pub mod admission;
pub mod bound;
pub mod c2s;
mod client;
pub mod component;
pub mod connection;
mod disco;
pub mod io;
pub mod mam;
mod offline;
mod ping;
pub mod preflight;
mod presence;
pub mod reload;
pub mod roster;
mod roster_iq;
pub mod route;
pub mod router;
pub mod sasl;
pub mod scram;
pub mod server;
pub mod sm;
pub mod socket;
pub mod stanza;
pub mod tls;
pub mod user;
pub mod xml;
