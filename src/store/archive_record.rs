//! The archive's values: a stored message, a query and its page. Apart from
//! `archive` so that the store's vocabulary (`ops`) can name them without importing the
//! tables that use it.
//!
//! [`ArchivedMessage`] is postcard-encoded on disk: changing it is a schema change.

use serde::{Deserialize, Serialize};

/// One archived message, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedMessage {
    /// The peer as the message named it (a full JID when it had a resource).
    pub with: String,
    /// Sent by the user (rather than received).
    pub outgoing: bool,
    /// The message, serialized, with its stanza-id.
    pub stanza: String,
}

/// What a query asks for: ids and times are archive ids (microseconds), bounds inclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    pub user: String,
    /// The peer's bare JID (the `with` index); `with_full` narrows it to one resource.
    pub with: Option<String>,
    pub with_full: Option<String>,
    /// Inclusive bounds on the id, from `start`/`end` and the after/before ids.
    pub low: u64,
    pub high: u64,
    /// Ids that must exist (an unknown one is `item-not-found`, XEP-0313 §6.2).
    pub must_exist: Vec<u64>,
    /// Only these ids (the `#extended` `ids` field); empty: no such filter.
    pub ids: Vec<u64>,
    /// Messages in the page, at most.
    pub max: usize,
    /// The page nearest `high` (RSM `<before/>`), rather than nearest `low`.
    pub from_end: bool,
}

/// One message of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRow {
    pub id: u64,
    pub message: ArchivedMessage,
}

/// A page, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivePage {
    pub rows: Vec<ArchiveRow>,
    /// No message matches past this page in the paging direction.
    pub complete: bool,
    /// One of `must_exist` is not in the archive.
    pub unknown_id: bool,
}

impl ArchivedMessage {
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// The bare part of a JID string (what the `with` index is keyed by).
pub fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(b, _)| b)
}
