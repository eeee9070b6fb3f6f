//! The store's vocabulary: what callers may ask of it. This is the narrow interface
//! design.md promises, so another backend could answer the same messages.

use super::app_servers::AppServerDomains;
use super::archive_record::{ArchivePage, ArchivePrefs, ArchiveQuery, ArchivedMessage};
use super::ledger::{Removal, RemovalRecord};
use super::record::{Account, RegistrationRecord, RosterItem};

/// One change inside a write. All changes of one request commit together or not at all.
// Changes live only between a request and its commit; boxing the record would cost an
// allocation per write to save a few hundred bytes for microseconds.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Insert or replace a registration.
    PutRegistration {
        user: String,
        identifier: String,
        record: RegistrationRecord,
    },
    /// Remove a registration (absent is not an error).
    DeleteRegistration { user: String, identifier: String },
    /// Create or replace an account.
    PutAccount { user: String, account: Account },
    /// Insert or replace a roster item.
    PutRosterItem {
        user: String,
        contact: String,
        item: RosterItem,
    },
    /// Remove a roster item.
    DeleteRosterItem { user: String, contact: String },
    /// Remove offline messages up to and including `up_to` (they were delivered).
    DeleteOffline { user: String, up_to: u64 },
    /// Keep a message waiting in a hibernated session's queue (D23): `session` is the
    /// session's XEP-0198 resumption id, `seq` the message's place in its stream,
    /// `stanza` the message as offline storage would keep it.
    PutQueued {
        user: String,
        session: String,
        seq: u64,
        stanza: String,
    },
    /// Forget a session's queued messages up to and including `up_to` (acknowledged, or
    /// the session ended).
    DeleteQueued {
        user: String,
        session: String,
        up_to: u64,
    },
    /// Archive a message (XEP-0313) under `id` (its time in microseconds, unique); past
    /// `max` messages the user's oldest go.
    Archive {
        user: String,
        id: u64,
        message: ArchivedMessage,
        max: u64,
    },
    /// Remove every archived message older than `before` (microseconds since the epoch).
    ExpireArchive { before: u64 },
    /// Set which messages the user wants archived (XEP-0441).
    PutArchivePrefs { user: String, prefs: ArchivePrefs },
    /// Remove everything stored for a user: account, registrations, offline messages,
    /// roster, queued messages, removal log, archive (D7).
    DeleteUser { user: String },
    /// Note a removed registration in the user's removal log (`ledger`), at `at_us`
    /// (microseconds since the epoch); old entries past the log's bounds go.
    LogRemoval {
        user: String,
        at_us: u64,
        record: RemovalRecord,
    },
}

/// Where a queued message is kept (see [`Change::PutQueued`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedKey {
    /// The session's XEP-0198 resumption id.
    pub session: String,
    pub seq: u64,
}

/// A unit of work for the writer thread.
#[derive(Debug, Clone)]
pub enum StoreOp {
    /// Every registration of one user, as `(identifier, record)`.
    LoadRegistrations { user: String },
    /// One account, if it exists.
    LoadAccount { user: String },
    /// Store a message for a user with no available session; refused when the user does
    /// not exist, already has `max` messages waiting, or would then have more than
    /// `max_bytes` of them. `release` names the queued copy of the message (D23), removed
    /// in the same transaction whether the message is stored or refused (then bounced):
    /// a crash finds it in one place, never two.
    PushOffline {
        user: String,
        stanza: String,
        max: usize,
        max_bytes: usize,
        release: Option<QueuedKey>,
    },
    /// The user's offline messages, oldest first, with their sequence numbers.
    LoadOffline { user: String },
    /// The user's roster.
    LoadRoster { user: String },
    /// Every account's user name.
    ListAccounts,
    /// The user's removal log of the last 30 days, newest first.
    LoadRemovals { user: String },
    /// How many accounts and registrations are stored.
    Counts,
    /// The app servers' domains the registrations publish to.
    AppServerDomains,
    /// A page of the user's message archive.
    QueryArchive(ArchiveQuery),
    /// The user's archive preferences (`None`: never set).
    LoadArchivePrefs { user: String },
    /// Commit everything before it, flush, and close the file.
    Close,
    /// Apply changes. `durable = false` rides on the next durable commit (or the flush at
    /// shutdown): used for ledger fields whose loss on a crash costs nothing.
    Write { changes: Vec<Change>, durable: bool },
}

impl StoreOp {
    pub(super) fn is_write(&self) -> bool {
        matches!(self, StoreOp::Write { .. } | StoreOp::PushOffline { .. })
    }

    pub(super) fn is_durable_write(&self) -> bool {
        matches!(
            self,
            StoreOp::Write { durable: true, .. } | StoreOp::PushOffline { .. }
        )
    }
}

/// The answer to one `StoreOp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreReply {
    Registrations(Vec<(String, RegistrationRecord)>),
    Account(Option<Account>),
    /// The sequence number a stored offline message got.
    Stored(u64),
    OfflineMessages(Vec<(u64, String)>),
    Roster(Vec<(String, RosterItem)>),
    Accounts(Vec<String>),
    Removals(Vec<Removal>),
    ArchivePage(ArchivePage),
    ArchivePrefs(Option<ArchivePrefs>),
    Counts {
        accounts: u64,
        registrations: u64,
    },
    AppServerDomains(AppServerDomains),
    Written,
}

/// Why a store request failed. Callers turn every variant into `wait/internal-server-error`
/// (or `resource-constraint` for `Busy`) and change nothing in memory.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("storage failed: {0}")]
    Failed(String),
    /// The file holds something that is not what was written: a damaged page, or a
    /// record that does not decode. Only a backup repairs it.
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// The disk refused a read or write (full, or failing). The store reopens the database
    /// on its own once writes succeed again; until then requests fail with this.
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("too many storage requests waiting (store_max_pending)")]
    Busy,
    #[error("the store is closed")]
    Closed,
    #[error("no such user")]
    NoSuchUser,
    #[error("the user's offline storage is full")]
    Full,
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Corrupted(_) => StoreError::Corrupt(e.to_string()),
            // After an I/O error redb refuses every write until the database is reopened,
            // which the writer does; say so rather than repeat redb's advice to the caller.
            redb::Error::PreviousIo => StoreError::Io(
                "writes are stopped after an earlier I/O error until the database is reopened"
                    .into(),
            ),
            redb::Error::Io(_)
            | redb::Error::Backend(_)
            | redb::Error::LockPoisoned(_)
            | redb::Error::DatabaseClosed => StoreError::Io(e.to_string()),
            _ => StoreError::Failed(e.to_string()),
        }
    }
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::from(redb::Error::from(e)) }
        }
    )*};
}
redb_errors!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
