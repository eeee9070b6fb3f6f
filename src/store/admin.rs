//! Account administration straight on the database file, for the `user` commands when no
//! server holds the data directory. Blocking; never used on the actor thread.

use redb::{Database, ReadableDatabase, ReadableTable};

pub use super::admin_error::AdminError;
use super::record::Account;
use super::schema::{ACCOUNTS, OFFLINE, PUSH_REGISTRATIONS, PUSH_REMOVALS, ROSTER, SM_QUEUE};

fn encode(a: &Account) -> Result<Vec<u8>, AdminError> {
    a.encode().map_err(|e| AdminError::Db(e.to_string()))
}

/// Derives an account's credentials from a password (the PBKDF2 cost is here).
pub fn derive(password: &str, iterations: u32) -> Result<Account, AdminError> {
    Account::from_password(password, iterations).map_err(|e| AdminError::Random(e.to_string()))
}

/// Derives many accounts on every core.
pub fn derive_all(
    users: Vec<(String, String)>,
    iterations: u32,
) -> Result<Vec<(String, Account)>, AdminError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = users.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = users
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(u, p)| derive(p, iterations).map(|a| (u.clone(), a)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Stores an account: `replace` false refuses an existing user, true requires one.
pub fn put_account(
    db: &Database,
    user: &str,
    a: &Account,
    replace: bool,
) -> Result<(), AdminError> {
    let bytes = encode(a)?;
    let txn = db.begin_write()?;
    {
        let mut t = txn.open_table(ACCOUNTS)?;
        let exists = t.get(user)?.is_some();
        if exists && !replace {
            return Err(AdminError::Exists(user.to_string()));
        }
        if !exists && replace {
            return Err(AdminError::Missing(user.to_string()));
        }
        t.insert(user, bytes.as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

pub fn user_exists(db: &Database, user: &str) -> Result<bool, AdminError> {
    let txn = db.begin_read()?;
    Ok(txn.open_table(ACCOUNTS)?.get(user)?.is_some())
}

/// Creates an account; refuses to overwrite one.
pub fn add_user(
    db: &Database,
    user: &str,
    password: &str,
    iterations: u32,
) -> Result<(), AdminError> {
    put_account(db, user, &derive(password, iterations)?, false)
}

/// Replaces the password of an existing account.
pub fn set_password(
    db: &Database,
    user: &str,
    password: &str,
    iterations: u32,
) -> Result<(), AdminError> {
    put_account(db, user, &derive(password, iterations)?, true)
}

/// Deletes the account and everything stored for it (D7).
pub fn delete_user(db: &Database, user: &str) -> Result<(), AdminError> {
    let txn = db.begin_write()?;
    {
        let mut t = txn.open_table(ACCOUNTS)?;
        if t.remove(user)?.is_none() {
            return Err(AdminError::Missing(user.to_string()));
        }
        let mut regs = txn.open_table(PUSH_REGISTRATIONS)?;
        let ids: Vec<String> = regs
            .range((user, "")..)?
            .map_while(|e| e.ok())
            .map(|(k, _)| {
                let (u, id) = k.value();
                (u.to_string(), id.to_string())
            })
            .take_while(|(u, _)| u == user)
            .map(|(_, id)| id)
            .collect();
        for id in ids {
            regs.remove((user, id.as_str()))?;
        }
        txn.open_table(OFFLINE)?
            .retain_in((user, 0)..=(user, u64::MAX), |_, _| false)?;
        txn.open_table(ROSTER)?
            .retain_in((user, "")..(user, "\u{10FFFF}"), |_, _| false)?;
        super::ledger::delete_removals(&mut txn.open_table(PUSH_REMOVALS)?, user)?;
        // Resumption ids are ASCII: every one sorts below U+10FFFF.
        txn.open_table(SM_QUEUE)?
            .retain_in((user, "", 0)..=(user, "\u{10FFFF}", u64::MAX), |_, _| false)?;
        super::archive::ArchiveTables::open(&txn)
            .and_then(|mut a| a.delete_user(user))
            .map_err(|e| AdminError::Db(e.to_string()))?;
    }
    txn.commit()?;
    Ok(())
}

/// The app servers' domains the registrations publish to, read from the file.
pub fn app_server_domains(
    db: &Database,
) -> Result<super::app_servers::AppServerDomains, AdminError> {
    let txn = db.begin_read()?;
    let t = txn.open_table(PUSH_REGISTRATIONS)?;
    super::app_servers::scan(&t).map_err(|e| AdminError::Db(e.to_string()))
}

pub fn list_users(db: &Database) -> Result<Vec<String>, AdminError> {
    let txn = db.begin_read()?;
    let t = txn.open_table(ACCOUNTS)?;
    let mut out = Vec::new();
    for e in t.iter()? {
        out.push(e?.0.value().to_string());
    }
    Ok(out)
}

/// Adds many accounts in one transaction (one fsync). Credentials are derived on every
/// core, since PBKDF2 is the cost. Existing users are skipped, and reported.
pub fn import(
    db: &Database,
    users: Vec<(String, String)>,
    iterations: u32,
) -> Result<(usize, Vec<String>), AdminError> {
    import_accounts(db, derive_all(users, iterations)?)
}

/// Adds accounts whose credentials are already derived, in one transaction.
pub fn import_accounts(
    db: &Database,
    accounts: Vec<(String, Account)>,
) -> Result<(usize, Vec<String>), AdminError> {
    let txn = db.begin_write()?;
    let mut added = 0;
    let mut skipped = Vec::new();
    {
        let mut t = txn.open_table(ACCOUNTS)?;
        for (user, account) in accounts {
            if t.get(user.as_str())?.is_some() {
                skipped.push(user);
                continue;
            }
            t.insert(user.as_str(), encode(&account)?.as_slice())?;
            added += 1;
        }
    }
    txn.commit()?;
    Ok((added, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Hash;

    fn db() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open_database(dir.path(), 1 << 20).unwrap();
        (dir, db.into_database())
    }

    fn stored(db: &Database, user: &str) -> Account {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(ACCOUNTS).unwrap();
        Account::decode(t.get(user).unwrap().unwrap().value()).unwrap()
    }

    #[test]
    fn add_passwd_del_list() {
        let (_d, db) = db();
        add_user(&db, "juliet", "pw1", 4096).unwrap();
        assert!(matches!(
            add_user(&db, "juliet", "x", 4096),
            Err(AdminError::Exists(_))
        ));
        assert!(
            stored(&db, "juliet")
                .credential(Hash::Sha256)
                .verify_password(Hash::Sha256, "pw1")
        );
        set_password(&db, "juliet", "pw2", 4096).unwrap();
        let a = stored(&db, "juliet");
        assert!(a.credential(Hash::Sha1).verify_password(Hash::Sha1, "pw2"));
        assert!(!a.credential(Hash::Sha1).verify_password(Hash::Sha1, "pw1"));
        assert!(matches!(
            set_password(&db, "romeo", "x", 4096),
            Err(AdminError::Missing(_))
        ));
        add_user(&db, "romeo", "r", 4096).unwrap();
        assert_eq!(list_users(&db).unwrap(), ["juliet", "romeo"]);
        delete_user(&db, "juliet").unwrap();
        assert_eq!(list_users(&db).unwrap(), ["romeo"]);
        assert!(matches!(
            delete_user(&db, "juliet"),
            Err(AdminError::Missing(_))
        ));
    }

    #[test]
    fn import_skips_existing() {
        let (_d, db) = db();
        add_user(&db, "u1", "p", 4096).unwrap();
        let users = (0..50)
            .map(|i| (format!("u{i}"), format!("p{i}")))
            .collect();
        let (added, skipped) = import(&db, users, 4096).unwrap();
        assert_eq!((added, skipped), (49, vec!["u1".to_string()]));
        assert_eq!(list_users(&db).unwrap().len(), 50);
        assert!(
            stored(&db, "u7")
                .credential(Hash::Sha256)
                .verify_password(Hash::Sha256, "p7")
        );
    }
}
