//! The Tigase push extensions (the `tigase/tigase-xeps` documents under
//! docs/push-notifications), which Siskin IM and Snikket iOS enable when the account's
//! disco lists them: without them those apps show "New Message!" for everything and calls
//! do not ring.
//!
//! - [`enable`]: what a client asks for inside its `<enable/>`.
//! - [`notice`]: what a stanza tells the device: sender, text, kind, call.
//! - [`payload`]: the JSON the encrypted payload carries, within the client's `max-size`.
//! - [`encrypt`]: AES-128-GCM with a fresh IV and the real tag (RustCrypto's `aes-gcm`).
//! - [`element`]: the elements the extensions add to a `<notification/>`.
//! - [`filters`]: whether a registration's muted, groupchat and ignore-unknown filters
//!   let a stanza publish.
//!
//! `tigase:push:away:0` has no file of its own: it is a flag on the registration that the
//! machine's archive path reads (src/push/machine/paths.rs).
//!
//! Every file holds pure functions; the push machine and the publish writer call them.

pub mod element;
pub mod enable;
pub mod encrypt;
pub mod filters;
pub mod notice;
pub mod payload;

/// The features the account's disco lists, exactly those built here.
pub const FEATURES: [&str; 8] = [
    enable::NS_ENCRYPT,
    encrypt::FEATURE_AES_128_GCM,
    enable::NS_PRIORITY,
    enable::NS_JINGLE,
    enable::NS_MUTED,
    enable::NS_GROUPCHAT,
    enable::NS_AWAY,
    enable::NS_IGNORE_UNKNOWN,
];
