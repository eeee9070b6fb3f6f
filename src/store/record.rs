//! What a push registration looks like on disk.
//!
//! Values are postcard-encoded. postcard is not self-describing, so any change to these
//! structs is a schema change: bump `schema::SCHEMA_VERSION` and add a migration.

use serde::{Deserialize, Serialize};

use crate::credentials::{Hash, ScramCredential};

/// One registration of one user, with its health ledger (design.md, "Storage").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRecord {
    /// The app server's JID, normalised.
    pub jid: String,
    /// The node given by the app server; `None` when the client sent none (or `node=''`).
    pub node: Option<String>,
    /// The client's publish-options form, serialized verbatim.
    pub publish_options: Option<String>,
    /// When it was enabled, microseconds since the Unix epoch. Strictly increasing per user,
    /// so eviction order is total and the same after a restart (D4).
    pub enabled_at_us: u64,
    /// Which client enabled it: the session's resource.
    pub client: String,
    /// The `xml:lang` of the enable request, if any.
    pub language: Option<String>,
    /// Counted errors since the last success or (re-)enable (D5).
    pub error_count: u32,
    /// Unix seconds of the last successful response.
    pub last_success: Option<u64>,
    /// The last error response.
    pub last_error: Option<ErrorNote>,
    /// Unix seconds of the last publish that got no answer within `push_response_timeout`.
    pub last_timeout: Option<u64>,
}

/// An error answer from an app server, as recorded in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorNote {
    /// Unix seconds.
    pub at: u64,
    /// `cancel`, `wait`, `modify`, `auth` or `continue`.
    pub error_type: String,
    /// The defined condition, e.g. `item-not-found`.
    pub condition: String,
    /// The error's text, if any.
    pub text: Option<String>,
}

/// A user account: SCRAM credentials for both hashes, derived from the password once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub scram_sha1: ScramCredential,
    pub scram_sha256: ScramCredential,
}

impl Account {
    /// Derives both credentials from a password (which is then forgotten).
    pub fn from_password(password: &str, iterations: u32) -> Result<Self, getrandom::Error> {
        Ok(Account {
            scram_sha1: ScramCredential::new(Hash::Sha1, password, iterations)?,
            scram_sha256: ScramCredential::new(Hash::Sha256, password, iterations)?,
        })
    }

    pub fn credential(&self, hash: Hash) -> &ScramCredential {
        match hash {
            Hash::Sha1 => &self.scram_sha1,
            Hash::Sha256 => &self.scram_sha256,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// RFC 6121 subscription state of a roster item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Subscription {
    None,
    To,
    From,
    Both,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    /// The contact receives the user's presence.
    pub fn from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    /// The user receives the contact's presence.
    pub fn to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }
}

/// One roster item, keyed by (user, contact bare JID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterItem {
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub subscription: Subscription,
    /// The user asked to see the contact's presence and awaits the answer.
    pub ask: bool,
    /// The contact asked to see the user's presence; kept until the user answers, and
    /// shown again at each login (the request may have arrived while offline).
    pub pending_in: Option<String>,
    /// Whether the user put this item on the roster (vs. only a pending request).
    pub listed: bool,
}

impl RosterItem {
    pub fn new() -> Self {
        RosterItem {
            name: None,
            groups: Vec::new(),
            subscription: Subscription::None,
            ask: false,
            pending_in: None,
            listed: false,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

impl Default for RosterItem {
    fn default() -> Self {
        Self::new()
    }
}

impl RegistrationRecord {
    /// Encodes the record for the registrations table.
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    /// Decodes a value of the registrations table.
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let r = RegistrationRecord {
            jid: "push.example.net".into(),
            node: Some("n1".into()),
            publish_options: Some("<x xmlns='jabber:x:data' type='submit'/>".into()),
            enabled_at_us: 1_700_000_000_000_000,
            client: "phone".into(),
            language: None,
            error_count: 3,
            last_success: Some(5),
            last_error: Some(ErrorNote {
                at: 6,
                error_type: "cancel".into(),
                condition: "item-not-found".into(),
                text: None,
            }),
            last_timeout: None,
        };
        assert_eq!(RegistrationRecord::decode(&r.encode().unwrap()).unwrap(), r);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(RegistrationRecord::decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
