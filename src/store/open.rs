//! Opening the database file, at start and again after an I/O error. The writer reopens
//! through [`Reopen`] without importing the store's front door, which imports the writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::Database;
use redb::backends::FileBackend;

use super::faults::{self, StoreFaults};
use super::guard;
use super::schema;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {path}: {source}")]
    Database {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("database {path}: {source}")]
    Schema {
        path: PathBuf,
        source: schema::SchemaError,
    },
    /// The integrity check at open found pages that are not what was written.
    #[error(
        "the database {path} is damaged ({detail}). cloud-notify will not run on it: stop \
         the service, then restore this file from a backup, or move it aside to start with \
         an empty database (accounts and push registrations are then lost). \
         `cloud-notify check` tests the file again."
    )]
    Damaged { path: PathBuf, detail: String },
}

/// How to open the same file again.
#[derive(Clone)]
pub(crate) struct Reopen {
    pub(crate) path: PathBuf,
    pub(super) cache_size: usize,
    pub(super) faults: Option<Arc<StoreFaults>>,
}

impl Reopen {
    /// Opens the file; `check` reads every page first (see [`open_file`]).
    pub(crate) fn open(&self, check: bool) -> Result<Database, OpenError> {
        open_file(&self.path, self.cache_size, check, self.faults.as_ref())
    }
}

/// Opens (creating it if needed, mode 0600) the database file.
///
/// With `check`, redb reads every page of the file and verifies its checksum before it
/// is used: a plain open trusts the pages, and a damaged one then panics or misleads at
/// the first request that reads it, perhaps weeks later. The check costs a read of the
/// whole file (a fraction of a second for a few MB), so it runs at start and for the
/// `user` commands, not when the writer reopens the file after an I/O error (that file
/// was checked at start, and redb recovers an unclean one itself).
fn open_file(
    path: &Path,
    cache_size: usize,
    check: bool,
    faults: Option<&Arc<StoreFaults>>,
) -> Result<Database, OpenError> {
    match guard::contain(|| open_file_unguarded(path, cache_size, check, faults)) {
        Ok(result) => result,
        // redb can panic on a damaged page it was asked to trust.
        Err(panic) => Err(OpenError::Damaged {
            path: path.to_path_buf(),
            detail: panic,
        }),
    }
}

fn open_file_unguarded(
    path: &Path,
    cache_size: usize,
    check: bool,
    faults: Option<&Arc<StoreFaults>>,
) -> Result<Database, OpenError> {
    let db_err = |source: redb::DatabaseError| match source {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => OpenError::Damaged {
            path: path.to_path_buf(),
            detail,
        },
        // What redb answers when the file's header is not one of its own: the first page
        // was overwritten (or the file is something else under our name).
        redb::DatabaseError::Storage(redb::StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            OpenError::Damaged {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }
        }
        source => OpenError::Database {
            path: path.to_path_buf(),
            source,
        },
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(|e| db_err(e.into()))?;
    let backend = FileBackend::new(file).map_err(db_err)?;
    let mut builder = Database::builder();
    builder
        .set_cache_size(cache_size)
        .set_check_integrity_on_open(check);
    let db = match faults {
        Some(f) => builder.create_with_backend(faults::FaultyBackend {
            inner: backend,
            faults: f.clone(),
        }),
        None => builder.create_with_backend(backend),
    }
    .map_err(db_err)?;
    schema::check_or_init(&db).map_err(|source| match source {
        schema::SchemaError::Db(redb::Error::Corrupted(detail)) => OpenError::Damaged {
            path: path.to_path_buf(),
            detail,
        },
        source => OpenError::Schema {
            path: path.to_path_buf(),
            source,
        },
    })?;
    Ok(db)
}
