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

/// Which messages a user wants archived (XEP-0441), by the peer's bare JID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivePrefs {
    pub default: PrefsDefault,
    /// Always archived, whatever the default (bare JIDs).
    pub always: Vec<String>,
    /// Never archived; wins over `always` for a JID in both.
    pub never: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrefsDefault {
    Always,
    Never,
    /// Only peers in the user's roster.
    Roster,
}

impl Default for ArchivePrefs {
    fn default() -> Self {
        ArchivePrefs {
            default: PrefsDefault::Always,
            always: Vec::new(),
            never: Vec::new(),
        }
    }
}

impl ArchivePrefs {
    /// Whether a message with `peer` (a bare JID) is archived; `in_roster` says whether
    /// the peer is in the user's roster.
    pub fn archives(&self, peer: &str, in_roster: bool) -> bool {
        if self.never.iter().any(|j| j == peer) {
            return false;
        }
        if self.always.iter().any(|j| j == peer) {
            return true;
        }
        match self.default {
            PrefsDefault::Always => true,
            PrefsDefault::Never => false,
            PrefsDefault::Roster => in_roster,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_wins_then_always_then_the_default() {
        let p = ArchivePrefs {
            default: PrefsDefault::Roster,
            always: vec!["a@x".into(), "b@x".into()],
            never: vec!["b@x".into()],
        };
        assert!(p.archives("a@x", false));
        assert!(!p.archives("b@x", true));
        assert!(p.archives("c@x", true));
        assert!(!p.archives("c@x", false));
        let never = ArchivePrefs {
            default: PrefsDefault::Never,
            ..Default::default()
        };
        assert!(!never.archives("c@x", true));
        assert!(ArchivePrefs::default().archives("c@x", false));
    }

    #[test]
    fn prefs_round_trip() {
        let p = ArchivePrefs {
            default: PrefsDefault::Never,
            always: vec!["a@x".into()],
            never: Vec::new(),
        };
        assert_eq!(ArchivePrefs::decode(&p.encode().unwrap()).unwrap(), p);
    }
}
