//! What a push registration looks like on disk.
//!
//! Values are postcard-encoded. postcard is not self-describing, so any change to these
//! structs is a schema change: bump `schema::SCHEMA_VERSION` and add a migration (or, as
//! for the registration's `extensions`, a decoder that still reads the older form).

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
    /// The Tigase push extensions the client asked for in its `<enable/>` (schema 3);
    /// `None` for a plain XEP-0357 registration and for every record written by schema 2.
    /// Boxed: most registrations have none, and the record is kept in memory per device.
    pub extensions: Option<Box<PushExtensions>>,
    /// The last time our server-to-server layer could not deliver a publish to the app
    /// server's domain (D21), and why; `None` in records written before it was kept.
    pub last_s2s_failure: Option<S2sFailureNote>,
}

/// The longest text a ledger note keeps (an app server's error text, our reason for a
/// failed delivery): a peer writes some of it, and the record is written again with each
/// change of the registration's health.
pub const MAX_NOTE_TEXT: usize = 256;

/// `text` as a ledger note keeps it: cut to [`MAX_NOTE_TEXT`] bytes at a character
/// boundary.
pub fn note_text(text: &str) -> String {
    let mut end = text.len().min(MAX_NOTE_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Our failure to reach a remote app server's domain, as recorded in the ledger: never
/// the app server's answer, never counted towards `push_max_errors` (D21).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S2sFailureNote {
    /// Unix seconds.
    pub at: u64,
    /// The condition a stanza would have bounced with: `remote-server-not-found`,
    /// `remote-server-timeout` or `resource-constraint`.
    pub condition: String,
    /// What failed, in words (`no DNS record: the domain has no address (SRV, A/AAAA or s2s_hosts)`).
    pub reason: String,
}

/// What a client enabled beyond XEP-0357 (the `tigase:push:*` extensions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushExtensions {
    /// `tigase:push:encrypt:0`: the payload goes AES-128-GCM encrypted with this key.
    pub encrypt: Option<EncryptSettings>,
    /// `tigase:push:priority:0`: important notifications are marked `high`.
    pub priority: bool,
    /// `tigase:push:jingle:0`: call signals carry a `<jingle/>` element.
    pub jingle: bool,
    /// `tigase:push:filter:muted:0`: bare JIDs whose messages never publish (sorted).
    pub muted: Vec<String>,
    /// `tigase:push:filter:groupchat:0`: `None` when the client sent no rules (every
    /// groupchat message may publish); otherwise only the rooms listed here publish,
    /// sorted by room. A room the client marked `never` is simply not listed.
    pub groupchat: Option<Vec<RoomRule>>,
    /// `tigase:push:away:0` (`away='true'` on the enable): on the archive path, publish to
    /// this registration even while its own session is connected, when every online
    /// session of the user is away or xa.
    pub away: bool,
    /// `tigase:push:filter:ignore-unknown:0`: nothing publishes for a sender who is not
    /// a contact (on the user's roster).
    pub ignore_unknown: bool,
}

/// One room of the groupchat filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRule {
    /// The room's bare JID.
    pub room: String,
    /// `None`: `always`; `Some(nick)`: `mentioned`, only messages whose text names `nick`.
    pub mention: Option<String>,
}

/// The key of an encrypted registration. Its `Debug` never shows the key, so no log line
/// or panic message can carry it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptSettings {
    /// The AES-128 key the client sent (16 bytes, decoded from its base64).
    pub key: [u8; 16],
    /// The client's `max-size`: the most bytes the base64 payload may take.
    pub max_size: Option<u32>,
}

impl std::fmt::Debug for EncryptSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptSettings")
            .field("key", &"(not shown)")
            .field("max_size", &self.max_size)
            .finish()
    }
}

/// A registration as schema 3 first wrote it: the same fields without
/// `last_s2s_failure`.
#[derive(Deserialize)]
struct RegistrationRecordV3 {
    jid: String,
    node: Option<String>,
    publish_options: Option<String>,
    enabled_at_us: u64,
    client: String,
    language: Option<String>,
    error_count: u32,
    last_success: Option<u64>,
    last_error: Option<ErrorNote>,
    last_timeout: Option<u64>,
    extensions: Option<Box<PushExtensions>>,
}

impl From<RegistrationRecordV3> for RegistrationRecord {
    fn from(r: RegistrationRecordV3) -> Self {
        RegistrationRecord {
            jid: r.jid,
            node: r.node,
            publish_options: r.publish_options,
            enabled_at_us: r.enabled_at_us,
            client: r.client,
            language: r.language,
            error_count: r.error_count,
            last_success: r.last_success,
            last_error: r.last_error,
            last_timeout: r.last_timeout,
            extensions: r.extensions,
            last_s2s_failure: None,
        }
    }
}

/// A registration as schema 2 wrote it: the same fields without `extensions`.
#[derive(Deserialize)]
struct RegistrationRecordV2 {
    jid: String,
    node: Option<String>,
    publish_options: Option<String>,
    enabled_at_us: u64,
    client: String,
    language: Option<String>,
    error_count: u32,
    last_success: Option<u64>,
    last_error: Option<ErrorNote>,
    last_timeout: Option<u64>,
}

impl From<RegistrationRecordV2> for RegistrationRecord {
    fn from(r: RegistrationRecordV2) -> Self {
        RegistrationRecord {
            jid: r.jid,
            node: r.node,
            publish_options: r.publish_options,
            enabled_at_us: r.enabled_at_us,
            client: r.client,
            language: r.language,
            error_count: r.error_count,
            last_success: r.last_success,
            last_error: r.last_error,
            last_timeout: r.last_timeout,
            extensions: None,
            last_s2s_failure: None,
        }
    }
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

    /// Decodes a value of the registrations table, in the current form, schema 3's
    /// first form or schema 2's. Each older form ends where the next field would start,
    /// so reading it in a newer form runs out of bytes and fails; postcard ignores bytes
    /// left over, so the newest form is tried first and a newer record is never read as
    /// an older one. (For the same reason a binary that predates `last_s2s_failure`
    /// reads today's records, without it: no schema version bump is needed.)
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        match postcard::from_bytes::<Self>(bytes) {
            Ok(r) => Ok(r),
            Err(current) => postcard::from_bytes::<RegistrationRecordV3>(bytes)
                .map(Into::into)
                .or_else(|_| postcard::from_bytes::<RegistrationRecordV2>(bytes).map(Into::into))
                .map_err(|_| current),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_note_text_is_cut_at_a_character_boundary() {
        assert_eq!(note_text("no DNS record"), "no DNS record");
        let long = format!("{}é{}", "x".repeat(MAX_NOTE_TEXT - 1), "y".repeat(100));
        assert_eq!(note_text(&long), "x".repeat(MAX_NOTE_TEXT - 1));
        assert_eq!(note_text(&"z".repeat(1000)).len(), MAX_NOTE_TEXT);
    }

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
            extensions: None,
            last_s2s_failure: Some(S2sFailureNote {
                at: 7,
                condition: "remote-server-not-found".into(),
                reason: "no DNS record: the domain has no address (SRV, A/AAAA or s2s_hosts)"
                    .into(),
            }),
        };
        assert_eq!(RegistrationRecord::decode(&r.encode().unwrap()).unwrap(), r);
        let rich = RegistrationRecord {
            extensions: Some(Box::new(PushExtensions {
                encrypt: Some(EncryptSettings {
                    key: [7; 16],
                    max_size: Some(2000),
                }),
                priority: true,
                jingle: true,
                muted: vec!["romeo@example.net".into()],
                groupchat: Some(vec![RoomRule {
                    room: "coven@chat.example".into(),
                    mention: Some("Juliet".into()),
                }]),
                away: true,
                ignore_unknown: true,
            })),
            ..r
        };
        assert_eq!(
            RegistrationRecord::decode(&rich.encode().unwrap()).unwrap(),
            rich
        );
    }

    /// A record written by schema 2 (no `extensions`) is still read, as a registration
    /// without extensions.
    #[test]
    fn schema_2_records_are_read() {
        #[derive(Serialize)]
        struct V2<'a> {
            jid: &'a str,
            node: Option<&'a str>,
            publish_options: Option<&'a str>,
            enabled_at_us: u64,
            client: &'a str,
            language: Option<&'a str>,
            error_count: u32,
            last_success: Option<u64>,
            last_error: Option<ErrorNote>,
            last_timeout: Option<u64>,
        }
        let bytes = postcard::to_stdvec(&V2 {
            jid: "push.example.net",
            node: Some("n1"),
            publish_options: None,
            enabled_at_us: 42,
            client: "phone",
            language: Some("en"),
            error_count: 2,
            last_success: None,
            last_error: None,
            last_timeout: Some(9),
        })
        .unwrap();
        let r = RegistrationRecord::decode(&bytes).unwrap();
        assert_eq!(r.node.as_deref(), Some("n1"));
        assert_eq!((r.error_count, r.last_timeout), (2, Some(9)));
        assert_eq!(r.extensions, None);
    }

    /// A record written before `last_s2s_failure` was kept is still read, extensions
    /// and all, without one.
    #[test]
    fn schema_3_records_without_the_s2s_failure_are_read() {
        #[derive(Serialize)]
        struct V3<'a> {
            jid: &'a str,
            node: Option<&'a str>,
            publish_options: Option<&'a str>,
            enabled_at_us: u64,
            client: &'a str,
            language: Option<&'a str>,
            error_count: u32,
            last_success: Option<u64>,
            last_error: Option<ErrorNote>,
            last_timeout: Option<u64>,
            extensions: Option<Box<PushExtensions>>,
        }
        let bytes = postcard::to_stdvec(&V3 {
            jid: "push.example.net",
            node: Some("n1"),
            publish_options: None,
            enabled_at_us: 42,
            client: "phone",
            language: None,
            error_count: 1,
            last_success: Some(3),
            last_error: None,
            last_timeout: Some(9),
            extensions: Some(Box::new(PushExtensions {
                priority: true,
                ..PushExtensions::default()
            })),
        })
        .unwrap();
        let r = RegistrationRecord::decode(&bytes).unwrap();
        assert_eq!((r.error_count, r.last_timeout), (1, Some(9)));
        assert!(r.extensions.is_some_and(|e| e.priority));
        assert_eq!(r.last_s2s_failure, None);
    }

    #[test]
    fn the_key_is_never_in_debug_output() {
        let e = EncryptSettings {
            key: *b"0123456789abcdef",
            max_size: None,
        };
        let shown = format!("{e:?}");
        assert!(!shown.contains("48") && !shown.contains("0123"), "{shown}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(RegistrationRecord::decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
