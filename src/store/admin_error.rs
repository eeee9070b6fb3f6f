//! The error of work done straight on the database file (the `user` commands, the
//! push ledger read by the `push` command): its own module so that `admin` and `ledger`,
//! which both report it, need not import each other.

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("user {0} already exists")]
    Exists(String),
    #[error("no such user: {0}")]
    Missing(String),
    #[error("cannot derive credentials: {0}")]
    Random(String),
    #[error("storage: {0}")]
    Db(String),
}

impl From<redb::Error> for AdminError {
    fn from(e: redb::Error) -> Self {
        AdminError::Db(e.to_string())
    }
}

macro_rules! db_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for AdminError {
            fn from(e: $t) -> Self { AdminError::from(redb::Error::from(e)) }
        }
    )*};
}
db_errors!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
