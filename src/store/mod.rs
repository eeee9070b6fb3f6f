//! Persistent state in one redb file.
//!
//! [`Store`] is the front door: an actor on the actor thread that queues requests and
//! hands them to the [`writer`] thread in batches. While one commit runs, every request
//! that arrives waits and then shares the next transaction (group commit: on an SD card the
//! fsync, not the data, is the cost). Each caller is answered only after the commit that
//! holds its data returned, so nothing is acknowledged before it is durable.

pub mod admin;
mod admin_error;
pub mod app_servers;
pub mod archive;
mod archive_gate;
mod archive_record;
mod faults;
mod guard;
pub mod ledger;
mod offline_usage;
mod open;
mod ops;
mod record;
mod requeue;
pub mod schema;
mod writer;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use redb::{Database, ReadableDatabase};
use tokio::sync::oneshot;

pub use archive_gate::{ArchiveGate, ArchivePermit};
pub use faults::StoreFaults;
pub use guard::panic_is_contained;
pub use open::OpenError;
use open::Reopen;
pub use ops::{Change, QueuedKey, StoreError, StoreOp, StoreReply};
pub use record::{
    Account, EncryptSettings, ErrorNote, MAX_NOTE_TEXT, PushExtensions, RegistrationRecord,
    RoomRule, RosterItem, S2sFailureNote, Subscription, note_text,
};
pub use requeue::{Requeued, requeue_hibernated};
use writer::{DbSlot, ExecBatch, Writer};

/// File name of the database inside `data_dir`.
pub const DB_FILE: &str = "cloud-notify.redb";

/// Opens (or creates) the database file. Blocking; call before the actors start.
pub fn open_database(data_dir: &Path, cache_size: usize) -> Result<StoreFile, OpenError> {
    StoreFile::open(data_dir, cache_size, None)
}

/// [`open_database`], with the file behind a backend that the `disk_full` and `io_errors`
/// switches of [`StoreFile::faults`] can make fail (tests).
pub fn open_database_with_faults(
    data_dir: &Path,
    cache_size: usize,
) -> Result<StoreFile, OpenError> {
    StoreFile::open(data_dir, cache_size, Some(Arc::new(StoreFaults::default())))
}

/// An open database, and what the store needs to open it again after an I/O error
/// (redb refuses every write after one until the database is reopened). Dereferences to
/// the redb [`Database`] for direct use (the `user` commands, tests).
pub struct StoreFile {
    db: Database,
    reopen: Option<Reopen>,
    faults: Arc<StoreFaults>,
}

impl StoreFile {
    fn open(
        data_dir: &Path,
        cache_size: usize,
        faults: Option<Arc<StoreFaults>>,
    ) -> Result<StoreFile, OpenError> {
        create_data_dir(data_dir)?;
        let reopen = Reopen {
            path: data_dir.join(DB_FILE),
            cache_size,
            faults: faults.clone(),
        };
        let db = reopen.open(true)?;
        Ok(StoreFile {
            db,
            reopen: Some(reopen),
            faults: faults.unwrap_or_default(),
        })
    }

    /// The fault switches; `disk_full` and `io_errors` act only on a file opened with
    /// [`open_database_with_faults`].
    pub fn faults(&self) -> Arc<StoreFaults> {
        self.faults.clone()
    }

    /// The redb database alone; the store can then not reopen it after an I/O error.
    pub fn into_database(self) -> Database {
        self.db
    }
}

impl std::ops::Deref for StoreFile {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.db
    }
}

/// A database opened elsewhere (say on another backend) can be run by the store, which
/// then has no way to reopen it: after an I/O error it stays unavailable.
impl From<Database> for StoreFile {
    fn from(db: Database) -> Self {
        StoreFile {
            db,
            reopen: None,
            faults: Arc::default(),
        }
    }
}

/// Creates the data directory, readable by the service user alone (it holds the
/// accounts' credentials and the TLS key). A directory that already exists keeps its mode
/// (the admin or the package chose it); one that others can enter gets a warning.
fn create_data_dir(data_dir: &Path) -> Result<(), OpenError> {
    let err = |source| OpenError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(data_dir).map_err(err)?;
        let mode = std::fs::metadata(data_dir)
            .map_err(err)?
            .permissions()
            .mode();
        if mode & 0o007 != 0 {
            tracing::warn!(
                dir = %data_dir.display(),
                mode = format!("{:o}", mode & 0o777),
                "the data directory is open to every user; it holds credentials: chmod 700 it"
            );
        }
    }
    #[cfg(not(unix))]
    builder.create(data_dir).map_err(err)?;
    Ok(())
}

/// Load every registration of `user`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Vec<(String, RegistrationRecord)>, StoreError>")]
pub struct LoadRegistrations {
    pub user: String,
}

/// Load one account.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Option<Account>, StoreError>")]
pub struct LoadAccount {
    pub user: String,
}

/// Store a message for a user with no available session (durable before answered).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct PushOffline {
    pub user: String,
    pub stanza: String,
    /// `offline_max_messages`: refused (`Full`) when this many are waiting.
    pub max: usize,
    /// `offline_max_bytes`: refused (`Full`) when the waiting ones and this would be more.
    pub max_bytes: usize,
    /// The message's copy in a hibernated session's queue, removed in the same commit
    /// (D23).
    pub release: Option<QueuedKey>,
}

/// The user's offline messages, oldest first.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Vec<(u64, String)>, StoreError>")]
pub struct LoadOffline {
    pub user: String,
}

/// The user's roster, as `(contact bare JID, item)`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Vec<(String, RosterItem)>, StoreError>")]
pub struct LoadRoster {
    pub user: String,
}

/// A page of a user's message archive.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<archive::ArchivePage, StoreError>")]
pub struct QueryArchive(pub archive::ArchiveQuery);

/// A user's archive preferences (`None`: never set, everything is archived).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Option<archive::ArchivePrefs>, StoreError>")]
pub struct LoadArchivePrefs {
    pub user: String,
}

/// Every account's user name.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Vec<String>, StoreError>")]
pub struct ListAccounts;

/// The user's removal log of the last 30 days, newest first (`ledger`).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Vec<ledger::Removal>, StoreError>")]
pub struct LoadRemovals {
    pub user: String,
}

/// The app servers' domains the stored registrations publish to (`cloud-notify check`).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<app_servers::AppServerDomains, StoreError>")]
pub struct ListAppServerDomains;

impl Handler<ListAppServerDomains> for Store {
    type Result = ResponseFuture<Result<app_servers::AppServerDomains, StoreError>>;

    fn handle(&mut self, _: ListAppServerDomains, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.enqueue(StoreOp::AppServerDomains, ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(StoreReply::AppServerDomains(d))) => Ok(d),
                Ok(Ok(_)) => Err(StoreError::Failed("unexpected reply".into())),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }
}

/// How many accounts and push registrations are stored (read from the tables' headers).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<StoredCounts, StoreError>")]
pub struct Counts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredCounts {
    pub accounts: u64,
    pub registrations: u64,
}

/// Apply changes atomically; answered once they are durable (or, for `durable: false`,
/// committed without an fsync of their own).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Write {
    pub changes: Vec<Change>,
    pub durable: bool,
}

/// Archive a message (a `Change::Archive`). The archive changes waiting when a batch
/// starts go into it as one write, so a burst of messages takes one place in the queue,
/// not one each. That write is durable only when one of its changes asks to be
/// (`durable`): otherwise it rides the next durable commit and costs no fsync. Answered
/// once committed. Never refused for want of room: the sender took a place at the
/// [`ArchiveGate`] first (`store_max_pending` places), given back with the answer.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Archive {
    pub change: Change,
    pub durable: bool,
    pub permit: ArchivePermit,
}

/// Commit what is pending, flush, and close the file. Later requests fail with `Closed`.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Close;

/// The addresses other modules use; type-erased so a different backend can stand in.
#[derive(Clone)]
pub struct StoreClient {
    pub load: Recipient<LoadRegistrations>,
    pub write: Recipient<Write>,
}

struct Pending {
    op: StoreOp,
    reply: oneshot::Sender<Result<StoreReply, StoreError>>,
}

/// The group-commit front of the store. See the module documentation.
pub struct Store {
    writer: Addr<Writer>,
    db: DbSlot,
    faults: Arc<StoreFaults>,
    pending: VecDeque<Pending>,
    /// Archive changes for the next batch (see [`Archive`]); their permits bound them.
    archive: Vec<(Archive, oneshot::Sender<Result<(), StoreError>>)>,
    in_flight: bool,
    max_pending: usize,
    /// Commits (batches) executed so far: how much group commit saved shows in benchmarks.
    batches: u64,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Store {
    /// Starts the writer thread and the front actor around an open database.
    /// Must run inside an actix `System`.
    pub fn start(file: impl Into<StoreFile>, max_pending: usize) -> Addr<Store> {
        Self::start_with_metrics(file, max_pending, Arc::default())
    }

    /// [`start`](Self::start), timing batches into the server's `metrics`.
    pub fn start_with_metrics(
        file: impl Into<StoreFile>,
        max_pending: usize,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Addr<Store> {
        let StoreFile { db, reopen, faults } = file.into();
        let slot: DbSlot = Arc::new(Mutex::new(Some(db)));
        let (s, f) = (slot.clone(), faults.clone());
        let writer = SyncArbiter::start(1, move || Writer {
            db: s.clone(),
            faults: f.clone(),
            reopen: reopen.clone(),
            health: Default::default(),
        });
        Store {
            writer,
            db: slot,
            faults,
            pending: VecDeque::new(),
            archive: Vec::new(),
            in_flight: false,
            max_pending,
            batches: 0,
            metrics,
        }
        .start()
    }

    fn enqueue(
        &mut self,
        op: StoreOp,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Result<StoreReply, StoreError>> {
        let (tx, rx) = oneshot::channel();
        if self.pending.len() >= self.max_pending {
            tracing::warn!(
                limit = self.max_pending,
                "store queue full: request refused"
            );
            let _ = tx.send(Err(StoreError::Busy));
            return rx;
        }
        self.pending.push_back(Pending { op, reply: tx });
        self.kick(ctx);
        self.metrics.store_pending(self.pending.len());
        rx
    }

    /// Sends everything queued as one batch, unless a batch is already running; its
    /// completion calls `kick` again.
    fn kick(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || (self.pending.is_empty() && self.archive.is_empty()) {
            return;
        }
        self.in_flight = true;
        self.batches += 1;
        let mut batch: Vec<Pending> = Vec::with_capacity(self.pending.len() + 1);
        // First, so that a query in the same batch sees what was archived before it.
        if !self.archive.is_empty() {
            batch.push(Self::archive_write(std::mem::take(&mut self.archive)));
        }
        batch.extend(self.pending.drain(..));
        let ops: Vec<StoreOp> = batch.iter().map(|p| p.op.clone()).collect();
        let writes = ops.iter().any(StoreOp::is_write);
        tracing::trace!(size = batch.len(), "store batch");
        let fut = self.writer.send(ExecBatch(ops));
        let started = std::time::Instant::now();
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.in_flight = false;
            act.metrics
                .store_batch(batch.len(), writes.then(|| started.elapsed()));
            match res {
                Ok(results) => {
                    for (p, r) in batch.into_iter().zip(results) {
                        let _ = p.reply.send(r);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "store writer unavailable");
                    for p in batch {
                        let _ = p.reply.send(Err(StoreError::Closed));
                    }
                }
            }
            act.kick(ctx);
            act.metrics.store_pending(act.pending.len());
        }));
    }
}

impl Store {
    /// The batch's archive changes as one write (durable when one of them asks), its
    /// answer passed to each.
    fn archive_write(waiting: Vec<(Archive, oneshot::Sender<Result<(), StoreError>>)>) -> Pending {
        let durable = waiting.iter().any(|(a, _)| a.durable);
        let (changes, replies): (Vec<Change>, Vec<_>) = waiting
            .into_iter()
            .map(|(a, tx)| (a.change, (tx, a.permit)))
            .unzip();
        let (tx, rx) = oneshot::channel();
        actix::spawn(async move {
            let result = match rx.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Closed),
            };
            // Each place at the gate is given back with its answer: until then the
            // write is one the store still holds.
            for (reply, permit) in replies {
                let _ = reply.send(result.clone());
                drop(permit);
            }
        });
        Pending {
            op: StoreOp::Write { changes, durable },
            reply: tx,
        }
    }
}

impl Handler<Archive> for Store {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, msg: Archive, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.archive.push((msg, tx));
        self.kick(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(StoreError::Closed)) })
    }
}

impl Actor for Store {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Callers use `send`, which waits for mailbox room; the real bound is
        // `store_max_pending`, enforced above with a `Busy` answer.
        ctx.set_mailbox_capacity(256);
    }
}

impl Handler<LoadRegistrations> for Store {
    type Result = ResponseFuture<Result<Vec<(String, RegistrationRecord)>, StoreError>>;

    fn handle(&mut self, msg: LoadRegistrations, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.enqueue(StoreOp::LoadRegistrations { user: msg.user }, ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(StoreReply::Registrations(rows))) => Ok(rows),
                Ok(Ok(_)) => Err(StoreError::Failed("unexpected reply".into())),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }
}

impl Handler<LoadAccount> for Store {
    type Result = ResponseFuture<Result<Option<Account>, StoreError>>;

    fn handle(&mut self, msg: LoadAccount, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.enqueue(StoreOp::LoadAccount { user: msg.user }, ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(StoreReply::Account(a))) => Ok(a),
                Ok(Ok(_)) => Err(StoreError::Failed("unexpected reply".into())),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }
}

impl Handler<PushOffline> for Store {
    type Result = ResponseFuture<Result<u64, StoreError>>;

    fn handle(&mut self, msg: PushOffline, ctx: &mut Context<Self>) -> Self::Result {
        let op = StoreOp::PushOffline {
            user: msg.user,
            stanza: msg.stanza,
            max: msg.max,
            max_bytes: msg.max_bytes,
            release: msg.release,
        };
        let rx = self.enqueue(op, ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(StoreReply::Stored(seq))) => Ok(seq),
                Ok(Ok(_)) => Err(StoreError::Failed("unexpected reply".into())),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }
}

impl Handler<LoadOffline> for Store {
    type Result = ResponseFuture<Result<Vec<(u64, String)>, StoreError>>;

    fn handle(&mut self, msg: LoadOffline, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.enqueue(StoreOp::LoadOffline { user: msg.user }, ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(StoreReply::OfflineMessages(m))) => Ok(m),
                Ok(Ok(_)) => Err(StoreError::Failed("unexpected reply".into())),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }
}

impl Handler<LoadRoster> for Store {
    type Result = ResponseFuture<Result<Vec<(String, RosterItem)>, StoreError>>;

    fn handle(&mut self, msg: LoadRoster, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.enqueue(StoreOp::LoadRoster { user: msg.user }, ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(StoreReply::Roster(r))) => Ok(r),
                Ok(Ok(_)) => Err(StoreError::Failed("unexpected reply".into())),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }
}

impl Handler<QueryArchive> for Store {
    type Result = ResponseFuture<Result<archive::ArchivePage, StoreError>>;

    fn handle(&mut self, msg: QueryArchive, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.enqueue(StoreOp::QueryArchive(msg.0), ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(StoreReply::ArchivePage(p))) => Ok(p),
                Ok(Ok(_)) => Err(StoreError::Failed("unexpected reply".into())),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }
}

impl Handler<LoadArchivePrefs> for Store {
    type Result = ResponseFuture<Result<Option<archive::ArchivePrefs>, StoreError>>;

    fn handle(&mut self, msg: LoadArchivePrefs, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.enqueue(StoreOp::LoadArchivePrefs { user: msg.user }, ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(StoreReply::ArchivePrefs(p))) => Ok(p),
                Ok(Ok(_)) => Err(StoreError::Failed("unexpected reply".into())),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }
}

impl Handler<ListAccounts> for Store {
    type Result = ResponseFuture<Result<Vec<String>, StoreError>>;

    fn handle(&mut self, _: ListAccounts, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.enqueue(StoreOp::ListAccounts, ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(StoreReply::Accounts(a))) => Ok(a),
                Ok(Ok(_)) => Err(StoreError::Failed("unexpected reply".into())),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }
}

impl Handler<LoadRemovals> for Store {
    type Result = ResponseFuture<Result<Vec<ledger::Removal>, StoreError>>;

    fn handle(&mut self, msg: LoadRemovals, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.enqueue(StoreOp::LoadRemovals { user: msg.user }, ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(StoreReply::Removals(r))) => Ok(r),
                Ok(Ok(_)) => Err(StoreError::Failed("unexpected reply".into())),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }
}

impl Handler<Counts> for Store {
    type Result = ResponseFuture<Result<StoredCounts, StoreError>>;

    fn handle(&mut self, _: Counts, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.enqueue(StoreOp::Counts, ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(StoreReply::Counts {
                    accounts,
                    registrations,
                })) => Ok(StoredCounts {
                    accounts,
                    registrations,
                }),
                Ok(Ok(_)) => Err(StoreError::Failed("unexpected reply".into())),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }
}

impl Handler<Write> for Store {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, msg: Write, ctx: &mut Context<Self>) -> Self::Result {
        let op = StoreOp::Write {
            changes: msg.changes,
            durable: msg.durable,
        };
        let rx = self.enqueue(op, ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }
}

impl Handler<Close> for Store {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) -> Self::Result {
        // Queued behind every request that came before, whatever the bound: they are
        // committed first, then the file is flushed and closed.
        let (tx, rx) = oneshot::channel();
        self.pending.push_back(Pending {
            op: StoreOp::Close,
            reply: tx,
        });
        self.kick(ctx);
        Box::pin(
            async move {
                if !matches!(rx.await, Ok(Ok(_))) {
                    tracing::error!("store writer gone before close");
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}

/// Test and diagnostics access that bypasses the queue.
#[derive(Message)]
#[rtype(result = "StoreProbe")]
pub struct Probe;

/// Handles for tests and benchmarks: the fault switches, the committed view, batch count.
#[derive(Clone)]
pub struct StoreProbe {
    pub faults: Arc<StoreFaults>,
    db: DbSlot,
    pub batches: u64,
}

impl StoreProbe {
    /// The registrations of `user` as committed right now (a read transaction sees only
    /// committed data), or `None` when the store is closed.
    pub fn committed_registrations(&self, user: &str) -> Option<Vec<(String, RegistrationRecord)>> {
        let guard = self.db.lock().ok()?;
        let db = guard.as_ref()?;
        let txn = db.begin_read().ok()?;
        let table = txn.open_table(schema::PUSH_REGISTRATIONS).ok()?;
        let mut out = Vec::new();
        for entry in table.range((user, "")..).ok()? {
            let (k, v) = entry.ok()?;
            let (u, id) = k.value();
            if u != user {
                break;
            }
            out.push((id.to_string(), RegistrationRecord::decode(v.value()).ok()?));
        }
        Some(out)
    }
}

impl Handler<Probe> for Store {
    type Result = MessageResult<Probe>;

    fn handle(&mut self, _: Probe, _: &mut Context<Self>) -> Self::Result {
        MessageResult(StoreProbe {
            faults: self.faults.clone(),
            db: self.db.clone(),
            batches: self.batches,
        })
    }
}

impl Store {
    /// The recipients the push module needs.
    pub fn client(addr: &Addr<Store>) -> StoreClient {
        StoreClient {
            load: addr.clone().recipient(),
            write: addr.clone().recipient(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archive::{ArchiveQuery, ArchivedMessage};

    fn archive(id: u64, permit: ArchivePermit) -> Archive {
        Archive {
            change: Change::Archive {
                user: "juliet".into(),
                id,
                message: ArchivedMessage {
                    with: "romeo@x".into(),
                    outgoing: false,
                    stanza: "<message xmlns='jabber:client'><body>hi</body></message>".into(),
                },
                max: 1000,
            },
            durable: false,
            permit,
        }
    }

    /// With every place at the gate taken, a writer waits for one instead of losing its
    /// message: each write sent is archived, and the places all come back.
    #[actix_rt::test]
    async fn archive_writes_past_the_room_wait_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let file = open_database(dir.path(), 1 << 20).unwrap();
        admin::add_user(&file, "juliet", "pw", 4096).unwrap();
        let store = Store::start(file, 2);
        let gate = ArchiveGate::new(2);
        let mut answers = Vec::new();
        let mut waited = 0;
        for id in 1..=20u64 {
            let permit = match gate.try_enter() {
                Some(p) => p,
                None => {
                    waited += 1;
                    gate.enter().await.expect("a place")
                }
            };
            answers.push(store.send(archive(id, permit)));
        }
        assert!(waited > 0, "no writer waited: the room was never full");
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        let page = store
            .send(QueryArchive(ArchiveQuery {
                user: "juliet".into(),
                high: u64::MAX,
                max: 100,
                ..Default::default()
            }))
            .await
            .unwrap()
            .unwrap();
        let ids: Vec<u64> = page.rows.iter().map(|r| r.id).collect();
        assert_eq!(ids, (1..=20).collect::<Vec<_>>());
        assert_eq!(gate.free(), 2, "a place was not given back");
    }
}
