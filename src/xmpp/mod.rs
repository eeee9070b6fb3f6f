//! The XMPP host: what a push server needs of an XMPP server.
//!
//! Built so far: SCRAM (`scram`). The listeners, c2s sessions, stream management,
//! routing and components come next (see the host issue).

pub mod scram;
