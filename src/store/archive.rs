//! The message archive (XEP-0313) on disk: per user, ordered by time.
//!
//! A message's archive id is a microsecond timestamp, unique across the process (the host
//! hands them out), so one key orders a user's archive by time and names the message
//! (its XEP-0359 stanza-id). Four tables keep every operation in proportion to what it
//! touches:
//! - `archive`: `(user, id)` → the message, for time ranges and paging;
//! - `archive_with`: `(user, bare JID of the peer, id)`, for queries by `with`;
//! - `archive_expiry`: `(id, user)`, across users, so expiry reads only what expires;
//! - `archive_count`: `user` → messages kept, for the per-user cap without a scan.
//!
//! Archive writes share the store's commits (see `store::Archive`): durable only when
//! the host asks, which it does when the push module will hear of the message (the
//! archive is then the copy a woken phone catches up from); otherwise they ride the
//! next durable commit and cost no fsync.

use redb::{ReadableTable, Table, WriteTransaction};

pub use super::archive_record::{
    ArchivePage, ArchivePrefs, ArchiveQuery, ArchiveRow, ArchivedMessage, PrefsDefault, bare,
};
use super::ops::StoreError;
pub use super::schema::{ARCHIVE, ARCHIVE_COUNT, ARCHIVE_EXPIRY, ARCHIVE_PREFS, ARCHIVE_WITH};

/// Expired rows removed per step: the list of keys a step holds in memory is bounded
/// whatever expires at once.
const EXPIRY_STEP: usize = 1024;

/// The archive's tables in one write transaction.
pub(super) struct ArchiveTables<'txn> {
    archive: Table<'txn, (&'static str, u64), &'static [u8]>,
    with: Table<'txn, (&'static str, &'static str, u64), ()>,
    expiry: Table<'txn, (u64, &'static str), ()>,
    count: Table<'txn, &'static str, u64>,
    prefs: Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> ArchiveTables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(ArchiveTables {
            archive: txn.open_table(ARCHIVE)?,
            with: txn.open_table(ARCHIVE_WITH)?,
            expiry: txn.open_table(ARCHIVE_EXPIRY)?,
            count: txn.open_table(ARCHIVE_COUNT)?,
            prefs: txn.open_table(ARCHIVE_PREFS)?,
        })
    }

    /// Archives one message. Past `max` messages the user's oldest go (a ring, as a
    /// phone's chat history would: the newest are the ones a catch-up needs). An id that
    /// is already taken (a clock set back across a restart) is refused with a log line,
    /// never written over.
    pub fn insert(
        &mut self,
        user: &str,
        id: u64,
        message: &ArchivedMessage,
        max: u64,
    ) -> Result<(), StoreError> {
        if self.archive.get((user, id))?.is_some() {
            tracing::warn!(%user, id, "archive id taken (clock set back?): message not archived");
            return Ok(());
        }
        let bytes = message
            .encode()
            .map_err(|e| StoreError::Failed(format!("encoding an archived message: {e}")))?;
        self.archive.insert((user, id), bytes.as_slice())?;
        self.with.insert((user, bare(&message.with), id), ())?;
        self.expiry.insert((id, user), ())?;
        let mut count = self.count.get(user)?.map_or(0, |c| c.value()) + 1;
        while count > max {
            let Some(oldest) = self.archive.range((user, 0)..=(user, u64::MAX))?.next() else {
                break;
            };
            let oldest = oldest?.0.value().1;
            self.remove(user, oldest)?;
            count -= 1;
        }
        self.count.insert(user, count)?;
        Ok(())
    }

    /// Removes one message and its index rows; the count is the caller's.
    fn remove(&mut self, user: &str, id: u64) -> Result<(), StoreError> {
        let Some(bytes) = self.archive.remove((user, id))? else {
            return Ok(());
        };
        let with = ArchivedMessage::decode(bytes.value())
            .map(|m| bare(&m.with).to_string())
            .map_err(|e| StoreError::Corrupt(format!("archived message {user}/{id}: {e}")))?;
        drop(bytes);
        self.with.remove((user, with.as_str(), id))?;
        self.expiry.remove((id, user))?;
        Ok(())
    }

    /// Removes every message with an id (time) before `before`, oldest first, reading
    /// only those. Returns how many went.
    pub fn expire(&mut self, before: u64) -> Result<u64, StoreError> {
        let mut removed = 0;
        loop {
            let mut step: Vec<(u64, String)> = Vec::new();
            for row in self.expiry.range((0, "")..(before, ""))? {
                let (k, _) = row?;
                let (id, user) = k.value();
                step.push((id, user.to_string()));
                if step.len() == EXPIRY_STEP {
                    break;
                }
            }
            if step.is_empty() {
                return Ok(removed);
            }
            for (id, user) in &step {
                self.remove(user, *id)?;
                let left = self.count.get(user.as_str())?.map_or(0, |c| c.value());
                if left <= 1 {
                    self.count.remove(user.as_str())?;
                } else {
                    self.count.insert(user.as_str(), left - 1)?;
                }
                removed += 1;
            }
        }
    }

    /// Removes the user's whole archive (the account is deleted, D7).
    pub fn delete_user(&mut self, user: &str) -> Result<(), StoreError> {
        loop {
            let mut step: Vec<u64> = Vec::new();
            for row in self.archive.range((user, 0)..=(user, u64::MAX))? {
                step.push(row?.0.value().1);
                if step.len() == EXPIRY_STEP {
                    break;
                }
            }
            if step.is_empty() {
                break;
            }
            for id in step {
                self.remove(user, id)?;
            }
        }
        self.count.remove(user)?;
        self.prefs.remove(user)?;
        Ok(())
    }

    /// The user's preferences; `None` when they never set any (everything is archived).
    pub fn prefs(&self, user: &str) -> Result<Option<ArchivePrefs>, StoreError> {
        load_prefs(&self.prefs, user)
    }

    pub fn put_prefs(&mut self, user: &str, prefs: &ArchivePrefs) -> Result<(), StoreError> {
        let bytes = prefs
            .encode()
            .map_err(|e| StoreError::Failed(format!("encoding archive preferences: {e}")))?;
        self.prefs.insert(user, bytes.as_slice())?;
        Ok(())
    }
}

/// The user's archive preferences, from a read or a write transaction.
pub fn load_prefs(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    user: &str,
) -> Result<Option<ArchivePrefs>, StoreError> {
    let Some(v) = table.get(user)? else {
        return Ok(None);
    };
    ArchivePrefs::decode(v.value())
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("archive preferences of {user}: {e}")))
}

/// Answers a query from the archive's tables (in a read or a write transaction).
pub fn query(
    archive: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    with: &impl ReadableTable<(&'static str, &'static str, u64), ()>,
    q: &ArchiveQuery,
) -> Result<ArchivePage, StoreError> {
    let user = q.user.as_str();
    for id in &q.must_exist {
        if archive.get((user, *id))?.is_none() {
            return Ok(ArchivePage {
                unknown_id: true,
                ..Default::default()
            });
        }
    }
    let mut page = ArchivePage::default();
    if q.low > q.high || q.max == 0 {
        page.complete = q.low > q.high;
        return Ok(page);
    }
    let load = |id: u64| -> Result<Option<ArchiveRow>, StoreError> {
        let Some(v) = archive.get((user, id))? else {
            return Ok(None);
        };
        let message = ArchivedMessage::decode(v.value())
            .map_err(|e| StoreError::Corrupt(format!("archived message {user}/{id}: {e}")))?;
        if q.with_full.as_ref().is_some_and(|f| *f != message.with) {
            return Ok(None);
        }
        Ok(Some(ArchiveRow { id, message }))
    };
    let wanted = |id: u64| q.ids.is_empty() || q.ids.contains(&id);
    // One more than the page, to know whether the page is the last.
    let take = |id: u64, rows: &mut Vec<ArchiveRow>| -> Result<bool, StoreError> {
        if !wanted(id) {
            return Ok(true);
        }
        if let Some(row) = load(id)? {
            if rows.len() == q.max {
                return Ok(false);
            }
            rows.push(row);
        }
        Ok(true)
    };
    let mut rows = Vec::with_capacity(q.max.min(256));
    let mut more = false;
    match &q.with {
        Some(w) => {
            let range = with.range((user, w.as_str(), q.low)..=(user, w.as_str(), q.high))?;
            if q.from_end {
                for r in range.rev() {
                    if !take(r?.0.value().2, &mut rows)? {
                        more = true;
                        break;
                    }
                }
            } else {
                for r in range {
                    if !take(r?.0.value().2, &mut rows)? {
                        more = true;
                        break;
                    }
                }
            }
        }
        None => {
            let range = archive.range((user, q.low)..=(user, q.high))?;
            if q.from_end {
                for r in range.rev() {
                    if !take(r?.0.value().1, &mut rows)? {
                        more = true;
                        break;
                    }
                }
            } else {
                for r in range {
                    if !take(r?.0.value().1, &mut rows)? {
                        more = true;
                        break;
                    }
                }
            }
        }
    }
    if q.from_end {
        rows.reverse();
    }
    page.rows = rows;
    page.complete = !more;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, ReadableTableMetadata};

    fn msg(with: &str) -> ArchivedMessage {
        ArchivedMessage {
            with: with.into(),
            outgoing: false,
            stanza: format!("<message from='{with}'/>"),
        }
    }

    fn db() -> (tempfile::TempDir, redb::Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("a.redb")).unwrap();
        (dir, db)
    }

    fn insert(db: &redb::Database, user: &str, ids: &[u64], with: &str, max: u64) {
        let txn = db.begin_write().unwrap();
        {
            let mut t = ArchiveTables::open(&txn).unwrap();
            for id in ids {
                t.insert(user, *id, &msg(with), max).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn run(db: &redb::Database, q: &ArchiveQuery) -> ArchivePage {
        let txn = db.begin_read().unwrap();
        query(
            &txn.open_table(ARCHIVE).unwrap(),
            &txn.open_table(ARCHIVE_WITH).unwrap(),
            q,
        )
        .unwrap()
    }

    fn ids(p: &ArchivePage) -> Vec<u64> {
        p.rows.iter().map(|r| r.id).collect()
    }

    fn all(user: &str, max: usize) -> ArchiveQuery {
        ArchiveQuery {
            user: user.into(),
            high: u64::MAX,
            max,
            ..Default::default()
        }
    }

    #[test]
    fn pages_from_either_end_say_when_they_are_the_last() {
        let (_d, db) = db();
        insert(&db, "juliet", &[1, 2, 3, 4, 5], "romeo@x/a", 100);
        insert(&db, "romeo", &[6], "juliet@x", 100);
        let first = run(&db, &all("juliet", 2));
        assert_eq!((ids(&first), first.complete), (vec![1, 2], false));
        let last = run(
            &db,
            &ArchiveQuery {
                from_end: true,
                ..all("juliet", 2)
            },
        );
        assert_eq!((ids(&last), last.complete), (vec![4, 5], false));
        let rest = run(
            &db,
            &ArchiveQuery {
                low: 3,
                ..all("juliet", 5)
            },
        );
        assert_eq!((ids(&rest), rest.complete), (vec![3, 4, 5], true));
    }

    #[test]
    fn with_uses_the_bare_index_and_a_full_jid_narrows_it() {
        let (_d, db) = db();
        insert(&db, "juliet", &[1, 3], "romeo@x/a", 100);
        insert(&db, "juliet", &[2], "nurse@x", 100);
        insert(&db, "juliet", &[4], "romeo@x/b", 100);
        let q = ArchiveQuery {
            with: Some("romeo@x".into()),
            ..all("juliet", 10)
        };
        assert_eq!(ids(&run(&db, &q)), [1, 3, 4]);
        let q = ArchiveQuery {
            with_full: Some("romeo@x/b".into()),
            ..q
        };
        assert_eq!(ids(&run(&db, &q)), [4]);
    }

    #[test]
    fn an_unknown_id_is_reported_not_taken_for_an_empty_page() {
        let (_d, db) = db();
        insert(&db, "juliet", &[1], "romeo@x", 100);
        let q = ArchiveQuery {
            must_exist: vec![7],
            ..all("juliet", 10)
        };
        assert!(run(&db, &q).unknown_id);
    }

    #[test]
    fn the_cap_drops_the_oldest() {
        let (_d, db) = db();
        insert(&db, "juliet", &[1, 2, 3, 4], "romeo@x", 3);
        assert_eq!(ids(&run(&db, &all("juliet", 10))), [2, 3, 4]);
        let txn = db.begin_read().unwrap();
        assert_eq!(txn.open_table(ARCHIVE_EXPIRY).unwrap().len().unwrap(), 3);
        assert_eq!(txn.open_table(ARCHIVE_WITH).unwrap().len().unwrap(), 3);
    }

    #[test]
    fn expiry_removes_only_what_is_older_and_keeps_counts() {
        let (_d, db) = db();
        insert(&db, "juliet", &[1, 2, 5], "romeo@x", 100);
        insert(&db, "romeo", &[3, 6], "juliet@x", 100);
        let txn = db.begin_write().unwrap();
        let n = ArchiveTables::open(&txn).unwrap().expire(5).unwrap();
        txn.commit().unwrap();
        assert_eq!(n, 3);
        assert_eq!(ids(&run(&db, &all("juliet", 10))), [5]);
        assert_eq!(ids(&run(&db, &all("romeo", 10))), [6]);
        let txn = db.begin_read().unwrap();
        let count = txn.open_table(ARCHIVE_COUNT).unwrap();
        assert_eq!(count.get("juliet").unwrap().unwrap().value(), 1);
        assert_eq!(count.get("romeo").unwrap().unwrap().value(), 1);
    }

    #[test]
    fn deleting_a_user_leaves_no_row_of_theirs() {
        let (_d, db) = db();
        insert(&db, "juliet", &[1, 2], "romeo@x", 100);
        insert(&db, "romeo", &[3], "juliet@x", 100);
        let txn = db.begin_write().unwrap();
        ArchiveTables::open(&txn)
            .unwrap()
            .delete_user("juliet")
            .unwrap();
        txn.commit().unwrap();
        let txn = db.begin_read().unwrap();
        assert_eq!(txn.open_table(ARCHIVE).unwrap().len().unwrap(), 1);
        assert_eq!(txn.open_table(ARCHIVE_WITH).unwrap().len().unwrap(), 1);
        assert_eq!(txn.open_table(ARCHIVE_EXPIRY).unwrap().len().unwrap(), 1);
        assert!(
            txn.open_table(ARCHIVE_COUNT)
                .unwrap()
                .get("juliet")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_taken_id_is_not_written_over() {
        let (_d, db) = db();
        insert(&db, "juliet", &[1], "romeo@x", 100);
        insert(&db, "juliet", &[1], "nurse@x", 100);
        let p = run(&db, &all("juliet", 10));
        assert_eq!(p.rows[0].message.with, "romeo@x");
    }
}
