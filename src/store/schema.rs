//! Tables and the on-disk format version.

use redb::{ReadableDatabase, TableDefinition};

/// The version of the table layout this binary writes. An older file is migrated at open;
/// a newer file is refused, because an older binary cannot know what it would destroy.
///
/// 1. registrations, accounts, offline messages, rosters.
/// 2. `sm_queue`: messages waiting in hibernated sessions' queues (D23), and
///    `push_removals`: the registrations removed in the last 30 days. Migrating from 1
///    creates both tables; nothing else changes. A version 1 binary refuses the file, as
///    it would neither deliver the queued messages nor delete them with their account.
/// 3. The message archive (`archive`, `archive_with`, `archive_expiry`, `archive_count`,
///    `archive_prefs`, see `store::archive`), and registration records that may carry the
///    Tigase push extensions (version 2 records are still read as they are). Migrating
///    creates the five empty tables and rewrites nothing. A version 2 binary refuses the
///    file, as it would neither delete the archive with its account nor read such a
///    registration.
pub const SCHEMA_VERSION: u64 = 3;

/// `"schema_version"` → version.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// `(username, registration identifier)` → postcard `RegistrationRecord`.
pub const PUSH_REGISTRATIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("push_registrations");

/// `username` → postcard `Account` (SCRAM credentials; never a password).
pub const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");

/// `(username, seq)` → a message stored for a user with no available session (XEP-0160),
/// serialized with its delay stamp.
pub const OFFLINE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("offline");

/// `(username, contact bare JID)` → postcard `RosterItem`.
pub const ROSTER: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("roster");

/// `(username, removed at µs)` → postcard `RemovalRecord`: registrations removed in the
/// last 30 days, at most 32 per user (`ledger`).
pub const PUSH_REMOVALS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("push_removals");

/// `(username, XEP-0198 resumption id, sequence number)` → a chat or normal message
/// waiting in a hibernated session's unacknowledged queue, serialized with its delay
/// stamp, exactly as offline storage would keep it (D23). Rows leave when the client
/// acknowledges the message, when it moves to offline storage as its session ends, and
/// at the next start for whatever a crash left behind.
pub const SM_QUEUE: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("sm_queue");

/// The message archive (XEP-0313), see `store::archive`:
/// `(username, archive id)` → postcard [`ArchivedMessage`].
pub const ARCHIVE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("archive");
/// `(username, peer's bare JID, archive id)` → nothing: the `with` index.
pub const ARCHIVE_WITH: TableDefinition<(&str, &str, u64), ()> =
    TableDefinition::new("archive_with");
/// `(archive id, username)` → nothing: every user's messages in time order, for expiry.
pub const ARCHIVE_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("archive_expiry");
/// `username` → how many messages the user's archive holds.
pub const ARCHIVE_COUNT: TableDefinition<&str, u64> = TableDefinition::new("archive_count");

/// `username` → postcard `ArchivePrefs`: which messages the user wants archived
/// (XEP-0441); no row: all of them.
pub const ARCHIVE_PREFS: TableDefinition<&str, &[u8]> = TableDefinition::new("archive_prefs");

const VERSION_KEY: &str = "schema_version";

/// Why a data file cannot be used by this binary.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the data file has schema version {found}, written by a newer cloud-notify; \
         this binary understands up to version {SCHEMA_VERSION}: upgrade cloud-notify \
         or restore a backup made by this version"
    )]
    TooNew { found: u64 },
    #[error("database error while checking the schema: {0}")]
    Db(#[from] redb::Error),
}

/// Stamps a new file with the current version, or checks an existing one.
pub fn check_or_init(db: &redb::Database) -> Result<(), SchemaError> {
    let found = {
        let txn = db.begin_read().map_err(redb::Error::from)?;
        match txn.open_table(META) {
            Ok(t) => t
                .get(VERSION_KEY)
                .map_err(redb::Error::from)?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(redb::Error::from(e).into()),
        }
    };
    match found {
        Some(v) if v > SCHEMA_VERSION => Err(SchemaError::TooNew { found: v }),
        Some(v) if v == SCHEMA_VERSION => Ok(()),
        // A fresh file, or an older one: create the tables it lacks and stamp it.
        older => {
            if let Some(v) = older {
                tracing::info!(from = v, to = SCHEMA_VERSION, "database schema migrated");
            }
            let txn = db.begin_write().map_err(redb::Error::from)?;
            {
                let mut meta = txn.open_table(META).map_err(redb::Error::from)?;
                meta.insert(VERSION_KEY, SCHEMA_VERSION)
                    .map_err(redb::Error::from)?;
                txn.open_table(PUSH_REGISTRATIONS)
                    .map_err(redb::Error::from)?;
                txn.open_table(ACCOUNTS).map_err(redb::Error::from)?;
                txn.open_table(OFFLINE).map_err(redb::Error::from)?;
                txn.open_table(ROSTER).map_err(redb::Error::from)?;
                txn.open_table(PUSH_REMOVALS).map_err(redb::Error::from)?;
                txn.open_table(SM_QUEUE).map_err(redb::Error::from)?;
                txn.open_table(ARCHIVE).map_err(redb::Error::from)?;
                txn.open_table(ARCHIVE_WITH).map_err(redb::Error::from)?;
                txn.open_table(ARCHIVE_EXPIRY).map_err(redb::Error::from)?;
                txn.open_table(ARCHIVE_COUNT).map_err(redb::Error::from)?;
                txn.open_table(ARCHIVE_PREFS).map_err(redb::Error::from)?;
            }
            txn.commit().map_err(redb::Error::from)?;
            Ok(())
        }
    }
}

/// Overwrites the stored version; only for tests that simulate a file from a newer binary.
#[doc(hidden)]
pub fn force_version(db: &redb::Database, version: u64) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(META)?.insert(VERSION_KEY, version)?;
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableTableMetadata, TableHandle};

    fn version(db: &redb::Database) -> Option<u64> {
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        meta.get(VERSION_KEY).unwrap().map(|v| v.value())
    }

    /// A version 1 file (no `sm_queue`) is migrated at open: the table is created, the
    /// rest kept, the version stamped.
    #[test]
    fn a_version_1_file_gets_the_queue_table() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = crate::store::open_database(dir.path(), 1 << 20).unwrap();
            crate::store::admin::add_user(&db, "juliet", "pw", 4096).unwrap();
            let txn = db.begin_write().unwrap();
            assert!(txn.delete_table(SM_QUEUE).unwrap());
            txn.commit().unwrap();
            force_version(&db, 1).unwrap();
        }
        let db = crate::store::open_database(dir.path(), 1 << 20).unwrap();
        assert_eq!(version(&db), Some(SCHEMA_VERSION));
        let txn = db.begin_read().unwrap();
        let names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        assert!(names.iter().any(|n| n == "sm_queue"), "{names:?}");
        assert!(txn.open_table(SM_QUEUE).unwrap().is_empty().unwrap());
        assert_eq!(txn.open_table(ACCOUNTS).unwrap().len().unwrap(), 1);
    }

    /// A version 2 file (no archive) is migrated at open: the five archive tables are
    /// created empty, the rest kept.
    #[test]
    fn a_version_2_file_gets_the_archive_tables() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = crate::store::open_database(dir.path(), 1 << 20).unwrap();
            crate::store::admin::add_user(&db, "juliet", "pw", 4096).unwrap();
            let txn = db.begin_write().unwrap();
            for t in [
                "archive",
                "archive_with",
                "archive_expiry",
                "archive_count",
                "archive_prefs",
            ] {
                assert!(
                    txn.delete_table(redb::TableDefinition::<&str, u64>::new(t))
                        .unwrap()
                );
            }
            txn.commit().unwrap();
            force_version(&db, 2).unwrap();
        }
        let db = crate::store::open_database(dir.path(), 1 << 20).unwrap();
        assert_eq!(version(&db), Some(SCHEMA_VERSION));
        let txn = db.begin_read().unwrap();
        assert!(txn.open_table(ARCHIVE).unwrap().is_empty().unwrap());
        assert!(txn.open_table(ARCHIVE_WITH).unwrap().is_empty().unwrap());
        assert!(txn.open_table(ARCHIVE_EXPIRY).unwrap().is_empty().unwrap());
        assert!(txn.open_table(ARCHIVE_COUNT).unwrap().is_empty().unwrap());
        assert!(txn.open_table(ARCHIVE_PREFS).unwrap().is_empty().unwrap());
        assert_eq!(txn.open_table(ACCOUNTS).unwrap().len().unwrap(), 1);
    }
}
