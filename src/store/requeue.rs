//! What a crash left in hibernated sessions' queues goes to offline storage at the next
//! start (D23).
//!
//! An orderly stop ends every session, and each hands its unacknowledged messages to
//! offline storage itself. A crash, a kill or a power cut ends none: the messages that
//! waited for hibernated sessions are still in `sm_queue`, and the sessions are gone
//! (their resumption ids died with the process). Before any client connects they are
//! moved, in one transaction, to their users' offline storage, where the next login
//! finds them.
//!
//! Past `offline_max_messages` or `offline_max_bytes` they are kept all the same. At a
//! live session's end such a message is bounced, so that its sender learns it was not
//! kept; after a crash there is nobody to tell (the senders' sessions died too, and an
//! error message is never stored offline), so a bounce would be a silent loss. The
//! bytes are on disk already and only change table, and they are bounded by what the
//! queues may hold (`smacks_max_queue_size` per session). The user is named in a warning.
//! A message for an account deleted in the meantime is dropped, counted in the log.

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::guard;
use super::ops::StoreError;
use super::schema::{ACCOUNTS, OFFLINE, SM_QUEUE};

/// What [`requeue_hibernated`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Requeued {
    /// Messages moved to offline storage.
    pub messages: usize,
    /// Users they belong to.
    pub users: usize,
    /// Users whose offline storage is now past `offline_max_messages` or
    /// `offline_max_bytes`.
    pub over_limit: Vec<String>,
    /// Messages dropped because their account no longer exists.
    pub no_such_user: usize,
}

/// Moves every message of `sm_queue` to offline storage, in one durable transaction.
/// Blocking; call at start, before the store's actors and the listeners run. Nothing to
/// move costs a read and no commit.
pub fn requeue_hibernated(
    db: &Database,
    max: usize,
    max_bytes: usize,
) -> Result<Requeued, StoreError> {
    guard::contain(|| requeue(db, max, max_bytes)).unwrap_or_else(|panic| {
        Err(StoreError::Corrupt(format!(
            "reading the database failed ({panic})"
        )))
    })
}

/// `(user, messages in queue order)`, users in key order.
type ByUser = Vec<(String, Vec<Vec<u8>>)>;

fn queued(
    table: &impl ReadableTable<(&'static str, &'static str, u64), &'static [u8]>,
) -> Result<ByUser, StoreError> {
    let mut out: ByUser = Vec::new();
    // Keys sort by user, then session, then sequence: each session's messages come in
    // the order they were queued, one session after the other.
    for entry in table.iter()? {
        let (k, v) = entry?;
        let (user, _, _) = k.value();
        match out.last_mut() {
            Some((u, messages)) if u == user => messages.push(v.value().to_vec()),
            _ => out.push((user.to_string(), vec![v.value().to_vec()])),
        }
    }
    Ok(out)
}

fn requeue(db: &Database, max: usize, max_bytes: usize) -> Result<Requeued, StoreError> {
    let empty = {
        let txn = db.begin_read()?;
        txn.open_table(SM_QUEUE)?.is_empty()?
    };
    if empty {
        return Ok(Requeued::default());
    }
    let mut done = Requeued::default();
    let txn = db.begin_write()?;
    {
        let mut queue = txn.open_table(SM_QUEUE)?;
        let accounts = txn.open_table(ACCOUNTS)?;
        let mut offline = txn.open_table(OFFLINE)?;
        for (user, messages) in queued(&queue)? {
            if accounts.get(user.as_str())?.is_none() {
                done.no_such_user += messages.len();
                continue;
            }
            let (mut count, mut bytes, mut last) = (0usize, 0usize, 0u64);
            for e in offline.range((user.as_str(), 0)..=(user.as_str(), u64::MAX))? {
                let (k, v) = e?;
                count += 1;
                bytes = bytes.saturating_add(v.value().len());
                last = k.value().1;
            }
            for m in &messages {
                last += 1;
                count += 1;
                bytes = bytes.saturating_add(m.len());
                offline.insert((user.as_str(), last), m.as_slice())?;
            }
            done.messages += messages.len();
            done.users += 1;
            if count > max || bytes > max_bytes {
                done.over_limit.push(user);
            }
        }
        queue.retain(|_, _| false)?;
    }
    txn.commit()?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::admin;

    fn db() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open_database(dir.path(), 1 << 20).unwrap();
        (dir, db.into_database())
    }

    fn put_queued(db: &Database, rows: &[(&str, &str, u64, &str)]) {
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(SM_QUEUE).unwrap();
            for (user, session, seq, text) in rows {
                t.insert((*user, *session, *seq), text.as_bytes()).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn offline(db: &Database, user: &str) -> Vec<(u64, String)> {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(OFFLINE).unwrap();
        t.range((user, 0)..=(user, u64::MAX))
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value().1, String::from_utf8(v.value().to_vec()).unwrap())
            })
            .collect()
    }

    #[test]
    fn queued_messages_go_after_the_stored_ones_in_queue_order_and_leave_the_queue() {
        let (_d, db) = db();
        for u in ["juliet", "romeo"] {
            admin::add_user(&db, u, "pw", 4096).unwrap();
        }
        let txn = db.begin_write().unwrap();
        txn.open_table(OFFLINE)
            .unwrap()
            .insert(("juliet", 7), "stored".as_bytes())
            .unwrap();
        txn.commit().unwrap();
        put_queued(
            &db,
            &[
                ("juliet", "s1", 2, "a2"),
                ("juliet", "s1", 10, "a10"),
                ("juliet", "s2", 1, "b1"),
                ("romeo", "s3", 5, "r5"),
                ("gone", "s4", 1, "lost"),
            ],
        );
        let done = requeue_hibernated(&db, 1000, 1 << 20).unwrap();
        assert_eq!(
            done,
            Requeued {
                messages: 4,
                users: 2,
                over_limit: vec![],
                no_such_user: 1,
            }
        );
        let texts = |u| {
            offline(&db, u)
                .into_iter()
                .map(|(_, t)| t)
                .collect::<Vec<_>>()
        };
        assert_eq!(texts("juliet"), ["stored", "a2", "a10", "b1"]);
        assert_eq!(offline(&db, "juliet")[1].0, 8, "after the last stored one");
        assert_eq!(texts("romeo"), ["r5"]);
        assert!(texts("gone").is_empty());
        let txn = db.begin_read().unwrap();
        assert!(txn.open_table(SM_QUEUE).unwrap().is_empty().unwrap());
        drop(txn);
        // Nothing left: a second start moves nothing.
        assert_eq!(
            requeue_hibernated(&db, 1000, 1 << 20).unwrap(),
            Requeued::default()
        );
    }

    #[test]
    fn past_the_limits_they_are_kept_and_the_user_is_named() {
        let (_d, db) = db();
        admin::add_user(&db, "juliet", "pw", 4096).unwrap();
        put_queued(
            &db,
            &[
                ("juliet", "s", 1, "m1"),
                ("juliet", "s", 2, "m2"),
                ("juliet", "s", 3, "m3"),
            ],
        );
        let done = requeue_hibernated(&db, 2, 1 << 20).unwrap();
        assert_eq!(done.messages, 3);
        assert_eq!(done.over_limit, ["juliet"]);
        assert_eq!(offline(&db, "juliet").len(), 3);
    }
}
