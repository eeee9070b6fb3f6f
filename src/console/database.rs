//! The database file, which a command opens itself only when no server answers: a
//! running server holds it.

use crate::config::Config;

/// The database file, when no server holds it. A missing one is an error, as for the
/// `user` commands: run from the wrong directory, a command must not create an empty
/// database.
pub(super) fn open(cfg: &Config) -> Result<redb::Database, String> {
    let file = cfg.data_dir.join(crate::store::DB_FILE);
    if !file.exists() {
        return Err(format!(
            "no database at {} and no server running there: is the configuration \
             (--config) the server's?",
            file.display()
        ));
    }
    crate::store::open_database(&cfg.data_dir, cfg.store_cache_size)
        .map(crate::store::StoreFile::into_database)
        .map_err(|e| {
            let msg = e.to_string();
            if msg.contains("already open") || msg.contains("DatabaseAlreadyOpen") {
                format!(
                    "{msg}: another cloud-notify holds {} but does not answer on its admin socket",
                    cfg.data_dir.display()
                )
            } else {
                msg
            }
        })
}
