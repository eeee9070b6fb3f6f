//! The push health ledger as the admin sees it (`cloud-notify push list/remove`): each
//! registration's record, and a bounded log of the registrations removed lately, with
//! when and why.
//!
//! A removed registration is deleted from `push_registrations`; what it was and why it
//! went is written in the same transaction to `push_removals`, keyed by
//! `(user, removed at µs)`. Each write of the log drops the user's entries older than
//! [`REMOVALS_KEPT_FOR_US`] and keeps at most [`REMOVALS_PER_USER`]; reads leave out the
//! old ones too. The log goes with the account (D7).

use redb::{ReadableDatabase, ReadableTable, Table};
use serde::{Deserialize, Serialize};

use super::admin_error::AdminError;
use super::record::{ErrorNote, RegistrationRecord, S2sFailureNote};
use super::schema::{ACCOUNTS, PUSH_REGISTRATIONS, PUSH_REMOVALS};

/// How long a removal stays in the log: 30 days.
pub const REMOVALS_KEPT_FOR_US: u64 = 30 * 24 * 3600 * 1_000_000;

/// The most removals kept per user (the newest).
pub const REMOVALS_PER_USER: usize = 32;

/// Why a registration was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemovalReason {
    /// The client sent `<disable/>`; `by` is the session's resource.
    Disabled { by: String },
    /// A newer registration took its place at `push_max_devices` (D4), or more were
    /// stored than a lowered `push_max_devices` allows.
    Evicted,
    /// `push_max_errors` error answers in a row.
    Errors { count: u32 },
    /// `cloud-notify push remove`.
    Admin,
}

impl std::fmt::Display for RemovalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // A resource (resourceprep forbids control characters; escaped all the same).
            RemovalReason::Disabled { by } => {
                write!(f, "disabled by the client ({})", by.escape_debug())
            }
            RemovalReason::Evicted => write!(f, "evicted: push_max_devices reached"),
            RemovalReason::Errors { count } => {
                write!(f, "{count} error answers in a row (push_max_errors)")
            }
            RemovalReason::Admin => write!(f, "removed by the admin"),
        }
    }
}

/// One entry of the removal log. Never holds the publish-options (a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovalRecord {
    pub jid: String,
    pub node: Option<String>,
    /// The resource of the client that had enabled it.
    pub client: String,
    pub enabled_at_us: u64,
    pub reason: RemovalReason,
    pub error_count: u32,
    pub last_success: Option<u64>,
    pub last_error: Option<ErrorNote>,
    pub last_timeout: Option<u64>,
    /// Our last failure to reach the app server's domain (D21). Last, so that an entry
    /// written before it was kept reads as [`RemovalRecordV1`].
    pub last_s2s_failure: Option<S2sFailureNote>,
}

/// An entry of the removal log as first written: the same fields without
/// `last_s2s_failure`.
#[derive(Deserialize)]
struct RemovalRecordV1 {
    jid: String,
    node: Option<String>,
    client: String,
    enabled_at_us: u64,
    reason: RemovalReason,
    error_count: u32,
    last_success: Option<u64>,
    last_error: Option<ErrorNote>,
    last_timeout: Option<u64>,
}

impl From<RemovalRecordV1> for RemovalRecord {
    fn from(r: RemovalRecordV1) -> Self {
        RemovalRecord {
            jid: r.jid,
            node: r.node,
            client: r.client,
            enabled_at_us: r.enabled_at_us,
            reason: r.reason,
            error_count: r.error_count,
            last_success: r.last_success,
            last_error: r.last_error,
            last_timeout: r.last_timeout,
            last_s2s_failure: None,
        }
    }
}

impl RemovalRecord {
    pub fn new(record: &RegistrationRecord, reason: RemovalReason) -> Self {
        RemovalRecord {
            jid: record.jid.clone(),
            node: record.node.clone(),
            client: record.client.clone(),
            enabled_at_us: record.enabled_at_us,
            reason,
            error_count: record.error_count,
            last_success: record.last_success,
            last_error: record.last_error.clone(),
            last_timeout: record.last_timeout,
            last_s2s_failure: record.last_s2s_failure.clone(),
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    /// The current form, or the first one: the older form runs out of bytes where the
    /// newer field would start, and postcard ignores bytes left over, so the newest is
    /// tried first (as for [`RegistrationRecord::decode`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        match postcard::from_bytes::<Self>(bytes) {
            Ok(r) => Ok(r),
            Err(current) => postcard::from_bytes::<RemovalRecordV1>(bytes)
                .map(Into::into)
                .map_err(|_| current),
        }
    }
}

/// A removal with its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// Microseconds since the Unix epoch.
    pub removed_at_us: u64,
    pub record: RemovalRecord,
}

/// A registration as the admin sees it: the stored record without its publish-options
/// (they carry the app server's secret), and the sessions linked to it right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationView {
    pub jid: String,
    pub node: Option<String>,
    pub enabled_at_us: u64,
    pub client: String,
    /// Bytes of the publish-options form, 0 without one.
    pub publish_options_bytes: u32,
    pub error_count: u32,
    pub last_success: Option<u64>,
    pub last_error: Option<ErrorNote>,
    pub last_timeout: Option<u64>,
    /// Our last failure to reach the app server's domain (D21).
    pub last_s2s_failure: Option<S2sFailureNote>,
    /// Sessions whose last `<enable/>` named it (0 with no server running).
    pub linked_sessions: u32,
    /// Of those, the hibernated ones.
    pub hibernated_sessions: u32,
    /// The Tigase extensions enabled, in words (`encrypted (key not shown), priority, 2
    /// muted`); empty without any. Never the key itself.
    pub extensions: String,
}

impl RegistrationView {
    pub fn new(record: &RegistrationRecord) -> Self {
        RegistrationView {
            jid: record.jid.clone(),
            node: record.node.clone(),
            enabled_at_us: record.enabled_at_us,
            client: record.client.clone(),
            publish_options_bytes: record
                .publish_options
                .as_ref()
                .map_or(0, |o| u32::try_from(o.len()).unwrap_or(u32::MAX)),
            error_count: record.error_count,
            last_success: record.last_success,
            last_error: record.last_error.clone(),
            last_timeout: record.last_timeout,
            last_s2s_failure: record.last_s2s_failure.clone(),
            linked_sessions: 0,
            hibernated_sessions: 0,
            extensions: record
                .extensions
                .as_deref()
                .map(describe_extensions)
                .unwrap_or_default(),
        }
    }
}

/// The Tigase extensions of a registration, for the admin: what is on, never the key.
pub fn describe_extensions(e: &super::record::PushExtensions) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(enc) = &e.encrypt {
        parts.push(match enc.max_size {
            Some(n) => format!("encrypted (key not shown, max-size {n})"),
            None => "encrypted (key not shown)".into(),
        });
    }
    if e.priority {
        parts.push("priority".into());
    }
    if e.jingle {
        parts.push("jingle".into());
    }
    if !e.muted.is_empty() {
        parts.push(format!("{} muted", e.muted.len()));
    }
    if let Some(rooms) = &e.groupchat {
        parts.push(format!("groupchat rules for {} rooms", rooms.len()));
    }
    if e.away {
        parts.push("away".into());
    }
    if e.ignore_unknown {
        parts.push("ignore-unknown".into());
    }
    parts.join(", ")
}

/// What `cloud-notify push list` shows for one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PushLedger {
    /// Oldest enabled first.
    pub registrations: Vec<RegistrationView>,
    /// Newest first.
    pub removals: Vec<Removal>,
}

impl PushLedger {
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// Which registrations an admin names: a node (`""` for the registration without one),
/// and, when the node alone is ambiguous, the app server's JID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// `None`: every registration (only for `push test`).
    pub node: Option<String>,
    /// The app server's JID, normalised.
    pub jid: Option<String>,
}

/// Why a selector names no single registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SelectError {
    #[error("no push registration matches")]
    None,
    /// The node is registered with several app servers: name one with `--jid`.
    #[error("node registered with several app servers ({}): name one with --jid", .0.join(", "))]
    Ambiguous(Vec<String>),
}

impl Selector {
    pub fn matches(&self, record: &RegistrationRecord) -> bool {
        self.node
            .as_deref()
            .is_none_or(|n| record.node.as_deref().unwrap_or("") == n)
            && self.jid.as_deref().is_none_or(|j| record.jid == j)
    }

    /// The indexes of the records it names. `single`: exactly one registration may
    /// match, unless the JID is given (then every node of nothing else can match).
    pub fn select<'r>(
        &self,
        records: impl Iterator<Item = &'r RegistrationRecord>,
        single: bool,
    ) -> Result<Vec<usize>, SelectError> {
        let mut hits = Vec::new();
        let mut jids = Vec::new();
        for (i, r) in records.enumerate() {
            if self.matches(r) {
                hits.push(i);
                jids.push(r.jid.clone());
            }
        }
        if hits.is_empty() {
            return Err(SelectError::None);
        }
        if single && hits.len() > 1 {
            jids.sort();
            return Err(SelectError::Ambiguous(jids));
        }
        Ok(hits)
    }
}

/// Appends a removal to the user's log, then drops entries past the age and count
/// bounds. `now_us` is the removal's time; a later key is used if that one is taken.
/// `bytes` is the encoded [`RemovalRecord`].
pub(crate) fn log_removal(
    table: &mut Table<'_, (&'static str, u64), &'static [u8]>,
    user: &str,
    now_us: u64,
    bytes: &[u8],
) -> Result<(), redb::Error> {
    let newest = table
        .range((user, 0)..=(user, u64::MAX))?
        .next_back()
        .transpose()?
        .map(|(k, _)| k.value().1);
    let at = match newest {
        Some(n) if n >= now_us => n.saturating_add(1),
        _ => now_us,
    };
    table.insert((user, at), bytes)?;
    prune(table, user, at)
}

/// Drops the user's removals older than the retention, and the oldest past the count.
fn prune(
    table: &mut Table<'_, (&'static str, u64), &'static [u8]>,
    user: &str,
    now_us: u64,
) -> Result<(), redb::Error> {
    let cutoff = now_us.saturating_sub(REMOVALS_KEPT_FOR_US);
    table.retain_in((user, 0)..(user, cutoff), |_, _| false)?;
    let count = table.range((user, 0)..=(user, u64::MAX))?.count();
    if count > REMOVALS_PER_USER {
        let doomed: Vec<u64> = table
            .range((user, 0)..=(user, u64::MAX))?
            .take(count - REMOVALS_PER_USER)
            .map(|e| e.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        for at in doomed {
            table.remove((user, at))?;
        }
    }
    Ok(())
}

/// Deletes the user's removal log (with the account, D7).
pub(crate) fn delete_removals(
    table: &mut Table<'_, (&'static str, u64), &'static [u8]>,
    user: &str,
) -> Result<(), redb::Error> {
    table.retain_in((user, 0)..=(user, u64::MAX), |_, _| false)?;
    Ok(())
}

/// The user's removals of the last 30 days, newest first. A record that does not decode
/// is reported as damage.
pub(crate) fn load_removals(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    user: &str,
    now_us: u64,
) -> Result<Result<Vec<Removal>, String>, redb::Error> {
    let cutoff = now_us.saturating_sub(REMOVALS_KEPT_FOR_US);
    let mut out = Vec::new();
    for e in table.range((user, cutoff)..=(user, u64::MAX))?.rev() {
        let (k, v) = e?;
        let at = k.value().1;
        match RemovalRecord::decode(v.value()) {
            Ok(record) => out.push(Removal {
                removed_at_us: at,
                record,
            }),
            Err(e) => return Ok(Err(format!("removal record of {user} at {at}: {e}"))),
        }
        if out.len() >= REMOVALS_PER_USER {
            break;
        }
    }
    Ok(Ok(out))
}

pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

// ------------------------------------------------------------------ the database file

fn registrations_of(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    user: &str,
) -> Result<Vec<(String, RegistrationRecord)>, AdminError> {
    let mut out = Vec::new();
    for e in table.range((user, "")..)? {
        let (k, v) = e?;
        let (u, id) = k.value();
        if u != user {
            break;
        }
        let record = RegistrationRecord::decode(v.value())
            .map_err(|e| AdminError::Db(format!("registration {user}/{id}: {e}")))?;
        out.push((id.to_string(), record));
    }
    out.sort_by_key(|(_, r)| r.enabled_at_us);
    Ok(out)
}

/// The ledger of one user, read from the file (no server running).
pub fn read_ledger(db: &redb::Database, user: &str) -> Result<PushLedger, AdminError> {
    let txn = db.begin_read()?;
    if txn.open_table(ACCOUNTS)?.get(user)?.is_none() {
        return Err(AdminError::Missing(user.to_string()));
    }
    let registrations = registrations_of(&txn.open_table(PUSH_REGISTRATIONS)?, user)?
        .iter()
        .map(|(_, r)| RegistrationView::new(r))
        .collect();
    let removals = match txn.open_table(PUSH_REMOVALS) {
        Ok(t) => load_removals(&t, user, now_us())?.map_err(AdminError::Db)?,
        Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(PushLedger {
        registrations,
        removals,
    })
}

/// Removes the registration(s) `selector` names, logging each removal (no server
/// running). Returns what was removed.
pub fn remove_registrations(
    db: &redb::Database,
    user: &str,
    selector: &Selector,
) -> Result<Vec<RegistrationView>, AdminError> {
    let txn = db.begin_write()?;
    let removed = {
        if txn.open_table(ACCOUNTS)?.get(user)?.is_none() {
            return Err(AdminError::Missing(user.to_string()));
        }
        let mut regs = txn.open_table(PUSH_REGISTRATIONS)?;
        let rows = registrations_of(&regs, user)?;
        let hits = selector
            .select(rows.iter().map(|(_, r)| r), true)
            .map_err(|e| AdminError::Db(e.to_string()))?;
        let mut log = txn.open_table(PUSH_REMOVALS)?;
        let now = now_us();
        let mut removed = Vec::new();
        for i in hits {
            let (id, record) = &rows[i];
            regs.remove((user, id.as_str()))?;
            let entry = RemovalRecord::new(record, RemovalReason::Admin)
                .encode()
                .map_err(|e| AdminError::Db(e.to_string()))?;
            log_removal(&mut log, user, now, &entry)?;
            removed.push(RegistrationView::new(record));
        }
        removed
    };
    txn.commit()?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(jid: &str, node: Option<&str>) -> RegistrationRecord {
        RegistrationRecord {
            jid: jid.into(),
            node: node.map(Into::into),
            publish_options: Some("<x xmlns='jabber:x:data' type='submit'/>".into()),
            enabled_at_us: 1,
            client: "phone".into(),
            language: None,
            error_count: 2,
            last_success: None,
            last_error: None,
            last_timeout: None,
            extensions: None,
            last_s2s_failure: None,
        }
    }

    fn db() -> (tempfile::TempDir, redb::Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open_database(dir.path(), 1 << 20).unwrap();
        (dir, db.into_database())
    }

    /// A removal logged before the s2s failure was kept is still read, without one;
    /// one logged now keeps it.
    #[test]
    fn removals_read_with_and_without_the_s2s_failure() {
        #[derive(Serialize)]
        struct V1<'a> {
            jid: &'a str,
            node: Option<&'a str>,
            client: &'a str,
            enabled_at_us: u64,
            reason: RemovalReason,
            error_count: u32,
            last_success: Option<u64>,
            last_error: Option<ErrorNote>,
            last_timeout: Option<u64>,
        }
        let old = postcard::to_stdvec(&V1 {
            jid: "push.example",
            node: Some("n"),
            client: "phone",
            enabled_at_us: 1,
            reason: RemovalReason::Errors { count: 3 },
            error_count: 3,
            last_success: None,
            last_error: None,
            last_timeout: Some(7),
        })
        .unwrap();
        let r = RemovalRecord::decode(&old).unwrap();
        assert_eq!((r.node.as_deref(), r.last_timeout), (Some("n"), Some(7)));
        assert_eq!(r.reason, RemovalReason::Errors { count: 3 });
        assert_eq!(r.last_s2s_failure, None);

        let mut reg = record("push.example", None);
        reg.last_s2s_failure = Some(S2sFailureNote {
            at: 5,
            condition: "remote-server-timeout".into(),
            reason: "connect timed out".into(),
        });
        let now = RemovalRecord::new(&reg, RemovalReason::Admin);
        let back = RemovalRecord::decode(&now.encode().unwrap()).unwrap();
        assert_eq!(back, now);
        assert_eq!(back.last_s2s_failure, reg.last_s2s_failure);
    }

    #[test]
    fn the_log_keeps_thirty_days_and_thirty_two_entries() {
        let (_d, db) = db();
        let day = 24 * 3600 * 1_000_000u64;
        let base = 100 * day;
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(PUSH_REMOVALS).unwrap();
            let r = RemovalRecord::new(&record("push.example", Some("n")), RemovalReason::Evicted)
                .encode()
                .unwrap();
            log_removal(&mut t, "juliet", base, &r).unwrap();
            log_removal(&mut t, "romeo", base, &r).unwrap();
            // Same microsecond: a later key, not an overwrite.
            log_removal(&mut t, "juliet", base, &r).unwrap();
            assert_eq!(
                t.range(("juliet", 0)..=("juliet", u64::MAX))
                    .unwrap()
                    .count(),
                2
            );
            // 31 days later: the first two are too old and go at this write.
            log_removal(&mut t, "juliet", base + 31 * day, &r).unwrap();
            let left: Vec<u64> = t
                .range(("juliet", 0)..=("juliet", u64::MAX))
                .unwrap()
                .map(|e| e.unwrap().0.value().1)
                .collect();
            assert_eq!(left, [base + 31 * day]);
            for i in 0..40 {
                log_removal(&mut t, "juliet", base + 32 * day + i, &r).unwrap();
            }
            assert_eq!(
                t.range(("juliet", 0)..=("juliet", u64::MAX))
                    .unwrap()
                    .count(),
                REMOVALS_PER_USER
            );
            let loaded = load_removals(&t, "juliet", base + 32 * day + 40)
                .unwrap()
                .unwrap();
            assert_eq!(loaded.len(), REMOVALS_PER_USER);
            assert_eq!(
                loaded[0].removed_at_us,
                base + 32 * day + 39,
                "newest first"
            );
            // Another user's log is untouched.
            assert_eq!(
                t.range(("romeo", 0)..=("romeo", u64::MAX)).unwrap().count(),
                1
            );
            // Read 30 days after the last write: nothing is shown.
            assert!(
                load_removals(&t, "juliet", base + 63 * day)
                    .unwrap()
                    .unwrap()
                    .is_empty()
            );
            delete_removals(&mut t, "juliet").unwrap();
            assert_eq!(
                t.range(("juliet", 0)..=("juliet", u64::MAX))
                    .unwrap()
                    .count(),
                0
            );
        }
        txn.commit().unwrap();
    }

    #[test]
    fn a_node_alone_must_name_one_registration() {
        let recs = [
            record("a.example", Some("n1")),
            record("b.example", Some("n1")),
            record("a.example", None),
        ];
        let sel = |node: Option<&str>, jid: Option<&str>| Selector {
            node: node.map(Into::into),
            jid: jid.map(Into::into),
        };
        assert_eq!(
            sel(Some("n1"), None).select(recs.iter(), true),
            Err(SelectError::Ambiguous(vec![
                "a.example".into(),
                "b.example".into()
            ]))
        );
        assert_eq!(
            sel(Some("n1"), Some("b.example")).select(recs.iter(), true),
            Ok(vec![1])
        );
        assert_eq!(sel(Some(""), None).select(recs.iter(), true), Ok(vec![2]));
        assert_eq!(
            sel(Some("n2"), None).select(recs.iter(), true),
            Err(SelectError::None)
        );
        assert_eq!(
            sel(None, None).select(recs.iter(), false),
            Ok(vec![0, 1, 2])
        );
        assert_eq!(
            sel(Some("n1"), None).select(recs.iter(), false),
            Ok(vec![0, 1])
        );
    }

    #[test]
    fn direct_list_and_remove() {
        let (_d, db) = db();
        crate::store::admin::add_user(&db, "juliet", "pw", 4096).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(PUSH_REGISTRATIONS).unwrap();
            for (id, r) in [
                ("a.example<n1", record("a.example", Some("n1"))),
                ("b.example<n1", record("b.example", Some("n1"))),
            ] {
                t.insert(("juliet", id), r.encode().unwrap().as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        let ledger = read_ledger(&db, "juliet").unwrap();
        assert_eq!(ledger.registrations.len(), 2);
        assert!(ledger.removals.is_empty());
        let ambiguous = Selector {
            node: Some("n1".into()),
            jid: None,
        };
        assert!(matches!(
            remove_registrations(&db, "juliet", &ambiguous),
            Err(AdminError::Db(e)) if e.contains("a.example, b.example")
        ));
        let one = Selector {
            node: Some("n1".into()),
            jid: Some("b.example".into()),
        };
        let removed = remove_registrations(&db, "juliet", &one).unwrap();
        assert_eq!(removed[0].jid, "b.example");
        let ledger = read_ledger(&db, "juliet").unwrap();
        assert_eq!(ledger.registrations.len(), 1);
        assert_eq!(ledger.removals.len(), 1);
        assert_eq!(ledger.removals[0].record.reason, RemovalReason::Admin);
        assert_eq!(ledger.removals[0].record.error_count, 2);
        assert!(matches!(
            read_ledger(&db, "romeo"),
            Err(AdminError::Missing(_))
        ));
        // D7: the log goes with the account.
        crate::store::admin::delete_user(&db, "juliet").unwrap();
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(PUSH_REMOVALS).unwrap();
        assert_eq!(
            t.range(("juliet", 0)..=("juliet", u64::MAX))
                .unwrap()
                .count(),
            0
        );
    }
}
