//! The one thread that touches redb.
//!
//! It runs on a `SyncArbiter` so a commit (an fsync on an SD card can take tens of
//! milliseconds) never stalls the actor thread. It executes whole batches handed to it by
//! the `Store` actor: one write transaction and one commit for all writes of a batch.
//!
//! It also keeps the store alive through a bad disk. After an I/O error (a full disk, a
//! failing card) redb refuses every later write until the database is reopened, so the
//! writer drops the handle and opens the file again, at once and then with a growing
//! pause while that fails; in between, requests fail at once with `StoreError::Io`.
//! Only committed (for durable writes: synced) data was ever acknowledged, and a reopen
//! finds exactly that. Every call into redb runs under [`guard::contain`], so a damaged
//! page that makes redb panic fails the request, not the thread.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Actor, Handler, Message, SyncContext};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction,
};

use super::app_servers;
use super::archive::{self, ARCHIVE, ARCHIVE_PREFS, ARCHIVE_WITH, ArchiveTables};
use super::faults::StoreFaults;
use super::guard;
use super::ledger;
use super::offline_usage::OfflineUsage;
use super::open::Reopen;
use super::ops::{Change, QueuedKey, StoreError, StoreOp, StoreReply};
use super::record::{Account, RegistrationRecord, RosterItem};
use super::schema::{ACCOUNTS, OFFLINE, PUSH_REGISTRATIONS, PUSH_REMOVALS, ROSTER, SM_QUEUE};

/// The open database, or `None` once closed (or while a reopen fails). A slot rather than a
/// bare `Arc<Database>` so that closing drops the database (and its file lock) at a known
/// moment.
pub type DbSlot = Arc<Mutex<Option<Database>>>;

/// Longest pause between two attempts to reopen the database.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct Writer {
    pub(super) db: DbSlot,
    pub(super) faults: Arc<StoreFaults>,
    /// How to open the file again; `None` for a database the store did not open.
    pub(super) reopen: Option<Reopen>,
    pub(super) health: Health,
}

/// What the writer knows about the disk, between batches.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// After `Close`: requests fail with `Closed` for good.
    closed: bool,
    /// I/O failures in a row (a failed commit, a failed reopen): sets the pause before the
    /// next reopen. Cleared by the first write that commits.
    failures: u32,
    /// Set while redb refuses writes after an I/O error: when to reopen the database.
    reopen_at: Option<Instant>,
}

/// The pause before reopening after `failures` I/O failures in a row: none after the
/// first (a passing glitch costs nothing), then 100 ms doubling up to [`MAX_BACKOFF`], so
/// a disk that stays full costs a reopen (and a log line) every 30 s, not a busy loop.
fn backoff(failures: u32) -> Duration {
    match failures {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(100)
            .saturating_mul(1u32.checked_shl(n - 2).unwrap_or(u32::MAX))
            .min(MAX_BACKOFF),
    }
}

impl Actor for Writer {
    type Context = SyncContext<Self>;
}

/// A batch of operations; the reply has one result per operation, in order.
#[derive(Message)]
#[rtype(result = "Vec<Result<StoreReply, StoreError>>")]
pub struct ExecBatch(pub Vec<StoreOp>);

impl Handler<ExecBatch> for Writer {
    type Result = Vec<Result<StoreReply, StoreError>>;

    fn handle(&mut self, ExecBatch(mut ops): ExecBatch, _: &mut SyncContext<Self>) -> Self::Result {
        if let Some(pos) = ops.iter().position(|o| matches!(o, StoreOp::Close)) {
            let rest = ops.split_off(pos);
            let mut results = if ops.is_empty() {
                Vec::new()
            } else {
                self.execute(ops)
            };
            self.close();
            results.push(Ok(StoreReply::Written));
            results.extend(rest.iter().skip(1).map(|_| Err(StoreError::Closed)));
            return results;
        }
        self.execute(ops)
    }
}

impl Writer {
    /// The file's name, for log lines an admin acts on.
    fn file(&self) -> String {
        self.reopen
            .as_ref()
            .map_or_else(|| "the database".into(), |r| r.path.display().to_string())
    }

    fn execute(&mut self, ops: Vec<StoreOp>) -> Vec<Result<StoreReply, StoreError>> {
        if self.health.closed {
            return ops.iter().map(|_| Err(StoreError::Closed)).collect();
        }
        self.reopen_if_due();
        let results = {
            let guard = match self.db.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            let Some(db) = guard.as_ref() else {
                let e = StoreError::Io(
                    "the database is unavailable after an I/O error; reopening it is retried"
                        .into(),
                );
                return ops.iter().map(|_| Err(e.clone())).collect();
            };
            self.run(db, &ops)
        };
        self.observe(&ops, &results);
        results
    }

    fn run(&self, db: &Database, ops: &[StoreOp]) -> Vec<Result<StoreReply, StoreError>> {
        if !ops.iter().any(StoreOp::is_write) {
            return ops.iter().map(|op| self.read_only(db, op)).collect();
        }
        match self.in_one_transaction(db, ops) {
            Ok(results) => results,
            // One bad request must not fail its neighbours: retry each on its own, so only
            // the requests that really fail report an error. Reads go alone too: after an
            // I/O error redb refuses writes but can still answer them.
            Err(_) if ops.len() > 1 => ops
                .iter()
                .map(|op| {
                    if op.is_write() {
                        self.in_one_transaction(db, std::slice::from_ref(op))
                            .and_then(|mut r| r.pop().unwrap_or(Err(StoreError::Closed)))
                    } else {
                        self.read_only(db, op)
                    }
                })
                .collect(),
            Err(e) => vec![Err(e)],
        }
    }

    /// Learns from a batch's results: an I/O error schedules a reopen, a committed write
    /// ends a failure streak, damage is logged for the admin.
    fn observe(&mut self, ops: &[StoreOp], results: &[Result<StoreReply, StoreError>]) {
        if let Some(e) = results.iter().find_map(|r| match r {
            Err(StoreError::Corrupt(e)) => Some(e),
            _ => None,
        }) {
            tracing::error!(
                file = %self.file(),
                error = %e,
                "the database file is damaged: the request failed; stop the server and \
                 restore the file from a backup (`cloud-notify check` confirms the damage)"
            );
        }
        if let Some(e) = results.iter().find_map(|r| match r {
            Err(StoreError::Io(e)) => Some(e.clone()),
            _ => None,
        }) {
            self.latch(&e);
        } else if self.health.failures > 0
            && ops
                .iter()
                .zip(results)
                .any(|(op, r)| op.is_write() && r.is_ok())
        {
            tracing::info!(file = %self.file(), "database writes succeed again");
            self.health.failures = 0;
        }
    }

    /// An I/O error: redb now refuses writes until the database is reopened.
    fn latch(&mut self, error: &str) {
        if self.health.reopen_at.is_some() {
            // Already waiting to reopen; this is the same failure seen again.
            return;
        }
        self.health.failures += 1;
        if self.reopen.is_none() {
            tracing::error!(
                file = %self.file(),
                %error,
                "database I/O failed (disk full or failing?); this store cannot reopen it"
            );
            return;
        }
        let delay = backoff(self.health.failures);
        self.health.reopen_at = Some(Instant::now() + delay);
        tracing::error!(
            file = %self.file(),
            %error,
            retry_in_ms = delay.as_millis() as u64,
            "database I/O failed (disk full or failing?): nothing of the failed requests \
             was acknowledged; writes fail until the database is reopened"
        );
    }

    /// Drops the database and opens the file again, when the pause after an I/O error is
    /// over. Failing, it tries again after a longer pause; meanwhile requests fail.
    fn reopen_if_due(&mut self) {
        let (Some(at), Some(reopen)) = (self.health.reopen_at, self.reopen.clone()) else {
            return;
        };
        if Instant::now() < at {
            return;
        }
        let mut guard = match self.db.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        // The old handle goes first: it holds the file's lock. Closing it writes nothing
        // after an I/O error; the next open recovers the file to its last commit.
        if let Some(old) = guard.take()
            && let Err(panic) = guard::contain(move || drop(old))
        {
            tracing::warn!(file = %self.file(), %panic, "closing the failed database handle");
        }
        let error = match guard::contain(|| reopen.open(false)) {
            Ok(Ok(db)) => {
                *guard = Some(db);
                self.health.reopen_at = None;
                tracing::info!(file = %self.file(), "database reopened after an I/O error");
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(panic) => panic,
        };
        self.health.failures += 1;
        let delay = backoff(self.health.failures);
        self.health.reopen_at = Some(Instant::now() + delay);
        tracing::warn!(
            file = %self.file(),
            %error,
            retry_in_ms = delay.as_millis() as u64,
            "cannot reopen the database yet; requests fail meanwhile"
        );
    }
}

impl Writer {
    fn close(&mut self) {
        self.health.closed = true;
        let mut guard = match self.db.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Make the non-durable ledger writes durable before the file is let go.
        if let Some(db) = guard.as_ref() {
            match guard::contain(|| durable_empty_commit(db)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "final flush of the store failed"),
                Err(panic) => tracing::error!(%panic, "final flush of the store failed"),
            }
        }
        if let Some(db) = guard.take()
            && let Err(panic) = guard::contain(move || drop(db))
        {
            tracing::error!(%panic, "closing the store failed");
        }
    }
}

fn durable_empty_commit(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    txn.commit()?;
    Ok(())
}

/// What a panic inside redb becomes: the request fails as if the page were unreadable.
fn contained_panic(panic: String) -> StoreError {
    StoreError::Corrupt(format!("reading the database failed ({panic})"))
}

impl Writer {
    fn read_only(&self, db: &Database, op: &StoreOp) -> Result<StoreReply, StoreError> {
        guard::contain(|| self.read_only_unguarded(db, op))
            .unwrap_or_else(|p| Err(contained_panic(p)))
    }

    fn read_only_unguarded(&self, db: &Database, op: &StoreOp) -> Result<StoreReply, StoreError> {
        if self.faults.reads_fail() {
            return Err(StoreError::Failed("injected read failure".into()));
        }
        let txn = db.begin_read()?;
        match op {
            StoreOp::LoadRegistrations { user } => {
                load_registrations(&txn.open_table(PUSH_REGISTRATIONS)?, user)
            }
            StoreOp::LoadAccount { user } => load_account(&txn.open_table(ACCOUNTS)?, user),
            StoreOp::LoadOffline { user } => load_offline(&txn.open_table(OFFLINE)?, user),
            StoreOp::LoadRoster { user } => load_roster(&txn.open_table(ROSTER)?, user),
            StoreOp::ListAccounts => list_accounts(&txn.open_table(ACCOUNTS)?),
            // A file stamped by a binary that had no removal log yet has no table: no
            // removals (the first write creates it).
            StoreOp::LoadRemovals { user } => match txn.open_table(PUSH_REMOVALS) {
                Ok(t) => load_removals(&t, user),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(StoreReply::Removals(Vec::new())),
                Err(e) => Err(e.into()),
            },
            StoreOp::Counts => counts(
                &txn.open_table(ACCOUNTS)?,
                &txn.open_table(PUSH_REGISTRATIONS)?,
            ),
            StoreOp::AppServerDomains => Ok(StoreReply::AppServerDomains(app_servers::scan(
                &txn.open_table(PUSH_REGISTRATIONS)?,
            )?)),
            StoreOp::QueryArchive(q) => Ok(StoreReply::ArchivePage(archive::query(
                &txn.open_table(ARCHIVE)?,
                &txn.open_table(ARCHIVE_WITH)?,
                q,
            )?)),
            StoreOp::LoadArchivePrefs { user } => Ok(StoreReply::ArchivePrefs(
                archive::load_prefs(&txn.open_table(ARCHIVE_PREFS)?, user)?,
            )),
            StoreOp::Write { .. } | StoreOp::PushOffline { .. } | StoreOp::Close => {
                Err(StoreError::Failed("write in a read-only batch".into()))
            }
        }
    }

    /// Runs all ops in one write transaction. `Err` means nothing was committed; `Ok` holds
    /// the per-op results of a committed transaction.
    fn in_one_transaction(
        &self,
        db: &Database,
        ops: &[StoreOp],
    ) -> Result<Vec<Result<StoreReply, StoreError>>, StoreError> {
        // A panic leaves the transaction uncommitted: redb drops it unwinding, and the
        // handle stays usable (it repairs the leaked pages at the next open).
        guard::contain(|| self.in_one_transaction_unguarded(db, ops))
            .unwrap_or_else(|p| Err(contained_panic(p)))
    }

    fn in_one_transaction_unguarded(
        &self,
        db: &Database,
        ops: &[StoreOp],
    ) -> Result<Vec<Result<StoreReply, StoreError>>, StoreError> {
        let mut txn = db.begin_write()?;
        let durable = ops.iter().any(StoreOp::is_durable_write);
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        let mut results = Vec::with_capacity(ops.len());
        let mut usage = OfflineUsage::default();
        for op in ops {
            match self.apply(&txn, op, &mut usage) {
                Ok(reply) => results.push(Ok(reply)),
                // A refusal (offline storage full, no such user) is decided before the
                // request changes anything (but the release of the message's queued
                // copy, which the refusal settles too): it answers its own request and
                // the batch goes on. Failing the batch would retry every request in a commit of
                // its own, an fsync each, just when a flood fills someone's storage.
                Err(e @ (StoreError::Full | StoreError::NoSuchUser)) => results.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        if self.faults.writes_fail() {
            // Dropping an uncommitted transaction aborts it.
            return Err(StoreError::Failed(
                "injected write failure (disk full)".into(),
            ));
        }
        txn.commit()?;
        Ok(results)
    }

    fn apply(
        &self,
        txn: &WriteTransaction,
        op: &StoreOp,
        usage: &mut OfflineUsage,
    ) -> Result<StoreReply, StoreError> {
        let mut t = Tables::open(txn)?;
        match op {
            // Split off before any transaction starts (see `handle`).
            StoreOp::Close => Err(StoreError::Closed),
            StoreOp::LoadRegistrations { user } => {
                self.read(|| load_registrations(&t.registrations, user))
            }
            StoreOp::LoadAccount { user } => self.read(|| load_account(&t.accounts, user)),
            StoreOp::LoadOffline { user } => self.read(|| load_offline(&t.offline, user)),
            StoreOp::LoadRoster { user } => self.read(|| load_roster(&t.roster, user)),
            StoreOp::ListAccounts => self.read(|| list_accounts(&t.accounts)),
            StoreOp::LoadRemovals { user } => {
                self.read(|| load_removals(&txn.open_table(PUSH_REMOVALS)?, user))
            }
            StoreOp::Counts => self.read(|| counts(&t.accounts, &t.registrations)),
            StoreOp::AppServerDomains => self.read(|| {
                Ok(StoreReply::AppServerDomains(app_servers::scan(
                    &t.registrations,
                )?))
            }),
            StoreOp::LoadArchivePrefs { user } => self.read(|| {
                Ok(StoreReply::ArchivePrefs(archive::load_prefs(
                    &txn.open_table(ARCHIVE_PREFS)?,
                    user,
                )?))
            }),
            StoreOp::QueryArchive(q) => self.read(|| {
                Ok(StoreReply::ArchivePage(archive::query(
                    &txn.open_table(ARCHIVE)?,
                    &txn.open_table(ARCHIVE_WITH)?,
                    q,
                )?))
            }),
            StoreOp::PushOffline {
                user,
                stanza,
                max,
                max_bytes,
                release,
            } => t.push_offline(usage, user, stanza, (*max, *max_bytes), release.as_ref()),
            StoreOp::Write { changes, .. } => {
                for change in changes {
                    t.apply_change(txn, change, usage)?;
                }
                Ok(StoreReply::Written)
            }
        }
    }

    /// Runs a read, unless the fault switches say reads fail.
    fn read(
        &self,
        load: impl FnOnce() -> Result<StoreReply, StoreError>,
    ) -> Result<StoreReply, StoreError> {
        if self.faults.reads_fail() {
            return Err(StoreError::Failed("injected read failure".into()));
        }
        load()
    }
}

/// The tables a write transaction works on, opened once for the whole operation.
struct Tables<'txn> {
    registrations: redb::Table<'txn, (&'static str, &'static str), &'static [u8]>,
    accounts: redb::Table<'txn, &'static str, &'static [u8]>,
    offline: redb::Table<'txn, (&'static str, u64), &'static [u8]>,
    roster: redb::Table<'txn, (&'static str, &'static str), &'static [u8]>,
    queue: redb::Table<'txn, (&'static str, &'static str, u64), &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            registrations: txn.open_table(PUSH_REGISTRATIONS)?,
            accounts: txn.open_table(ACCOUNTS)?,
            offline: txn.open_table(OFFLINE)?,
            roster: txn.open_table(ROSTER)?,
            queue: txn.open_table(SM_QUEUE)?,
        })
    }

    /// Stores one offline message within the user's `(count, bytes)` quota.
    fn push_offline(
        &mut self,
        usage: &mut OfflineUsage,
        user: &str,
        stanza: &str,
        (max, max_bytes): (usize, usize),
        release: Option<&QueuedKey>,
    ) -> Result<StoreReply, StoreError> {
        // First, so that a refusal (the message is then bounced) lets the queued
        // copy go too: its fate is decided either way.
        if let Some(k) = release {
            self.queue.remove((user, k.session.as_str(), k.seq))?;
        }
        if self.accounts.get(user)?.is_none() {
            return Err(StoreError::NoSuchUser);
        }
        let u = usage.get(&self.offline, user)?;
        // Counted in stored bytes (the stanza with its delay stamp), which is what
        // the file grows by; a count alone let a few large messages fill the disk.
        if u.count >= max || u.bytes.saturating_add(stanza.len()) > max_bytes {
            return Err(StoreError::Full);
        }
        let seq = u.last + 1;
        self.offline.insert((user, seq), stanza.as_bytes())?;
        u.count += 1;
        u.bytes = u.bytes.saturating_add(stanza.len());
        u.last = seq;
        Ok(StoreReply::Stored(seq))
    }

    fn apply_change(
        &mut self,
        txn: &WriteTransaction,
        change: &Change,
        usage: &mut OfflineUsage,
    ) -> Result<(), StoreError> {
        match change {
            Change::PutRegistration {
                user,
                identifier,
                record,
            } => {
                let bytes = encoded(record.encode())?;
                self.registrations
                    .insert((user.as_str(), identifier.as_str()), bytes.as_slice())?;
            }
            Change::DeleteRegistration { user, identifier } => {
                self.registrations
                    .remove((user.as_str(), identifier.as_str()))?;
            }
            Change::PutAccount { user, account } => {
                let bytes = encoded(account.encode())?;
                self.accounts.insert(user.as_str(), bytes.as_slice())?;
            }
            Change::PutRosterItem {
                user,
                contact,
                item,
            } => {
                let bytes = encoded(item.encode())?;
                self.roster
                    .insert((user.as_str(), contact.as_str()), bytes.as_slice())?;
            }
            Change::DeleteRosterItem { user, contact } => {
                self.roster.remove((user.as_str(), contact.as_str()))?;
            }
            Change::DeleteOffline { user, up_to } => self.delete_offline(usage, user, *up_to)?,
            Change::PutQueued {
                user,
                session,
                seq,
                stanza,
            } => {
                self.queue
                    .insert((user.as_str(), session.as_str(), *seq), stanza.as_bytes())?;
            }
            Change::DeleteQueued {
                user,
                session,
                up_to,
            } => self.delete_queued(user, session, *up_to)?,
            Change::DeleteUser { user } => self.delete_user(txn, usage, user)?,
            Change::Archive {
                user,
                id,
                message,
                max,
            } => {
                // A message for a name with no account is bounced by offline storage or
                // never delivered; it must not leave an archive behind (names are free
                // for a sender to invent).
                if self.accounts.get(user.as_str())?.is_some() {
                    let mut tables = ArchiveTables::open(txn)?;
                    let peer = archive::bare(&message.with);
                    let wanted = match tables.prefs(user)? {
                        None => true,
                        Some(p) => {
                            p.archives(peer, self.roster.get((user.as_str(), peer))?.is_some())
                        }
                    };
                    if wanted {
                        tables.insert(user, *id, message, *max)?;
                    }
                }
            }
            Change::PutArchivePrefs { user, prefs } => {
                ArchiveTables::open(txn)?.put_prefs(user, prefs)?
            }
            Change::ExpireArchive { before } => {
                let n = ArchiveTables::open(txn)?.expire(*before)?;
                if n > 0 {
                    tracing::debug!(messages = n, "archive expiry");
                }
            }
            Change::LogRemoval {
                user,
                at_us,
                record,
            } => {
                let bytes = encoded(record.encode())?;
                ledger::log_removal(&mut txn.open_table(PUSH_REMOVALS)?, user, *at_us, &bytes)?;
            }
        }
        Ok(())
    }

    fn delete_offline(
        &mut self,
        usage: &mut OfflineUsage,
        user: &str,
        up_to: u64,
    ) -> Result<(), StoreError> {
        usage.forget(user);
        self.offline
            .retain_in((user, 0)..=(user, up_to), |_, _| false)?;
        Ok(())
    }

    fn delete_queued(&mut self, user: &str, session: &str, up_to: u64) -> Result<(), StoreError> {
        self.queue
            .retain_in((user, session, 0)..=(user, session, up_to), |_, _| false)?;
        Ok(())
    }

    /// Everything stored for the user: account, queues, roster, offline messages,
    /// registrations and their removal log.
    fn delete_user(
        &mut self,
        txn: &WriteTransaction,
        usage: &mut OfflineUsage,
        user: &str,
    ) -> Result<(), StoreError> {
        usage.forget(user);
        self.accounts.remove(user)?;
        self.queue
            .retain_in((user, "", 0)..=(user, "\u{10FFFF}", u64::MAX), |_, _| false)?;
        self.roster
            .retain_in((user, "")..(user, "\u{10FFFF}"), |_, _| false)?;
        self.offline
            .retain_in((user, 0)..=(user, u64::MAX), |_, _| false)?;
        let keys: Vec<String> = user_range(&self.registrations, user)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for id in keys {
            self.registrations.remove((user, id.as_str()))?;
        }
        ledger::delete_removals(&mut txn.open_table(PUSH_REMOVALS)?, user)?;
        ArchiveTables::open(txn)?.delete_user(user)?;
        Ok(())
    }
}

/// A record's bytes, or the failure the request reports.
fn encoded<E: std::fmt::Display>(bytes: Result<Vec<u8>, E>) -> Result<Vec<u8>, StoreError> {
    bytes.map_err(|e| StoreError::Failed(e.to_string()))
}

type RawRows = Vec<(String, Vec<u8>)>;

fn user_range(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    user: &str,
) -> Result<RawRows, StoreError> {
    let mut rows = Vec::new();
    // Keys sort by (user, identifier); "" is the smallest identifier.
    for entry in table.range((user, "")..)? {
        let (k, v) = entry?;
        let (u, id) = k.value();
        if u != user {
            break;
        }
        rows.push((id.to_string(), v.value().to_vec()));
    }
    Ok(rows)
}

fn load_registrations(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    user: &str,
) -> Result<StoreReply, StoreError> {
    let rows = user_range(table, user)?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, bytes) in rows {
        let record = RegistrationRecord::decode(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("registration {user}/{id}: {e}")))?;
        out.push((id, record));
    }
    Ok(StoreReply::Registrations(out))
}

fn load_account(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    user: &str,
) -> Result<StoreReply, StoreError> {
    let Some(v) = table.get(user)? else {
        return Ok(StoreReply::Account(None));
    };
    let account = Account::decode(v.value())
        .map_err(|e| StoreError::Corrupt(format!("account {user}: {e}")))?;
    Ok(StoreReply::Account(Some(account)))
}

fn load_offline(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    user: &str,
) -> Result<StoreReply, StoreError> {
    let mut out = Vec::new();
    for e in table.range((user, 0)..=(user, u64::MAX))? {
        let (k, v) = e?;
        let text = String::from_utf8(v.value().to_vec())
            .map_err(|e| StoreError::Corrupt(format!("offline message of {user}: {e}")))?;
        out.push((k.value().1, text));
    }
    Ok(StoreReply::OfflineMessages(out))
}

fn load_roster(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    user: &str,
) -> Result<StoreReply, StoreError> {
    let mut out = Vec::new();
    for e in table.range((user, "")..)? {
        let (k, v) = e?;
        let (u, contact) = k.value();
        if u != user {
            break;
        }
        let item = RosterItem::decode(v.value())
            .map_err(|e| StoreError::Corrupt(format!("roster item {user}/{contact}: {e}")))?;
        out.push((contact.to_string(), item));
    }
    Ok(StoreReply::Roster(out))
}

fn load_removals(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    user: &str,
) -> Result<StoreReply, StoreError> {
    match ledger::load_removals(table, user, ledger::now_us())? {
        Ok(removals) => Ok(StoreReply::Removals(removals)),
        Err(damage) => Err(StoreError::Corrupt(damage)),
    }
}

fn counts(
    accounts: &impl ReadableTableMetadata,
    registrations: &impl ReadableTableMetadata,
) -> Result<StoreReply, StoreError> {
    // Kept in each table's header: no scan.
    Ok(StoreReply::Counts {
        accounts: accounts.len()?,
        registrations: registrations.len()?,
    })
}

fn list_accounts(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<StoreReply, StoreError> {
    let mut out = Vec::new();
    for e in table.iter()? {
        out.push(e?.0.value().to_string());
    }
    Ok(StoreReply::Accounts(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::archive::{ArchiveQuery, ArchivedMessage};

    fn archive(user: &str, id: u64) -> StoreOp {
        StoreOp::Write {
            changes: vec![Change::Archive {
                user: user.into(),
                id,
                message: ArchivedMessage {
                    with: "romeo@x".into(),
                    outgoing: false,
                    stanza: "<message xmlns='jabber:client'><body>hi</body></message>".into(),
                },
                max: 100,
            }],
            durable: false,
        }
    }

    fn page(user: &str) -> StoreOp {
        StoreOp::QueryArchive(ArchiveQuery {
            user: user.into(),
            high: u64::MAX,
            max: 10,
            ..Default::default()
        })
    }

    /// Only an account has an archive: messages to invented names leave nothing.
    #[test]
    fn a_name_without_an_account_gets_no_archive() {
        let dir = tempfile::tempdir().unwrap();
        let file = crate::store::open_database(dir.path(), 1 << 20).unwrap();
        crate::store::admin::add_user(&file, "juliet", "pw", 4096).unwrap();
        let mut w = Writer {
            db: Arc::new(Mutex::new(Some(file.into_database()))),
            faults: Arc::default(),
            reopen: None,
            health: Health::default(),
        };
        let results = w.execute(vec![archive("juliet", 1), archive("nobody", 2)]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let rows = |r: &Result<StoreReply, StoreError>| match r {
            Ok(StoreReply::ArchivePage(p)) => p.rows.len(),
            other => panic!("{other:?}"),
        };
        let pages = w.execute(vec![page("juliet"), page("nobody")]);
        assert_eq!((rows(&pages[0]), rows(&pages[1])), (1, 0));
    }

    #[test]
    fn reopen_backoff_starts_at_once_doubles_and_is_capped() {
        let ms = |n| backoff(n).as_millis();
        assert_eq!([ms(0), ms(1), ms(2), ms(3), ms(4)], [0, 0, 100, 200, 400]);
        assert_eq!(ms(10), 25_600);
        assert_eq!(backoff(11), MAX_BACKOFF);
        assert_eq!(backoff(40), MAX_BACKOFF, "no overflow past 32 doublings");
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
