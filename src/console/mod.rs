//! The admin's commands beyond accounts: `cloud-notify push …` and `cloud-notify
//! status`. Like the `user` commands they reach a running server through its admin
//! socket and otherwise open the database file themselves; `push test` and `status` need
//! the running server.
//!
//! Everything that came from a peer (nodes, resources, an app server's error text) is
//! printed escaped: a control character in it cannot rewrite the admin's terminal.
//!
//! Unix only, like the admin socket.

mod push;
mod status;

use std::process::ExitCode;

use chrono::TimeZone;
use xmpp_parsers::jid::BareJid;

use crate::config::Config;
use crate::xmpp::admin::client::AdminClient;

pub use push::{PushCommand, push};
pub use status::status;

/// Exit code when the server is not running and the command needs it (as `systemctl
/// status` and LSB init scripts use it).
pub const NOT_RUNNING: u8 = 3;

/// What a command prints and its exit code.
struct Outcome {
    text: String,
    code: u8,
    /// An answer (stdout) rather than an error message (stderr).
    answer: bool,
}

impl Outcome {
    fn ok(text: String) -> Self {
        Outcome {
            text,
            code: 0,
            answer: true,
        }
    }

    /// A report printed as an answer whose exit code says something went wrong (a test
    /// push that was not answered with success).
    fn failed_answer(text: String) -> Self {
        Outcome {
            text,
            code: 1,
            answer: true,
        }
    }

    fn fail(text: String) -> Self {
        Outcome {
            text,
            code: 1,
            answer: false,
        }
    }

    /// "Not running" is an answer (stdout), with exit code 3.
    fn not_running(text: String) -> Self {
        Outcome {
            text,
            code: NOT_RUNNING,
            answer: true,
        }
    }

    /// Prints (answers on stdout, errors on stderr) and gives the exit code.
    fn finish(self) -> ExitCode {
        use std::io::Write;
        let text = self.text.trim_end();
        if self.answer {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        } else {
            let _ = writeln!(std::io::stderr().lock(), "cloud-notify: {text}");
        }
        ExitCode::from(self.code)
    }
}

/// The running server's admin socket, or `None` when no server answers on it. A
/// request waits at most `timeout` for its answer.
fn server(cfg: &Config, timeout: std::time::Duration) -> Option<AdminClient> {
    let c = AdminClient::connect(&cfg.data_dir).ok()?;
    // Without a timeout a hung server would hang the command; failing to set one
    // leaves the wait unbounded, which is still a working command.
    let _ = c.set_timeout(Some(timeout));
    Some(c)
}

/// How long a request other than a test push may take: a status asks the store, which
/// waits behind the commits (an fsync on an SD card can take a while).
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What a timed-out or broken request reads as.
fn request(c: &mut AdminClient, line: &str) -> Result<String, String> {
    c.request(line).map_err(|e| {
        if e.contains("timed out") || e.contains("temporarily unavailable") {
            format!(
                "the server did not answer in time ({e}); is it stuck? `journalctl -u \
                 cloud-notify` (or its log) may say why"
            )
        } else {
            e
        }
    })
}

/// The database file, when no server holds it. A missing one is an error, as for the
/// `user` commands: run from the wrong directory, a command must not create an empty
/// database.
fn open(cfg: &Config) -> Result<redb::Database, String> {
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

/// The local part of a JID of our domain (or a bare local part), as every command
/// that names a user takes it.
pub fn user_of(jid: &str, cfg: &Config) -> Result<String, String> {
    let full = if jid.contains('@') {
        jid.to_string()
    } else {
        format!("{jid}@{}", cfg.domain)
    };
    let bare = BareJid::new(&full).map_err(|e| format!("{jid} is not a valid JID: {e}"))?;
    if bare.domain().as_str() != cfg.domain {
        return Err(format!(
            "{jid} is not on this server's domain ({})",
            cfg.domain
        ));
    }
    bare.node()
        .map(|n| n.to_string())
        .ok_or_else(|| format!("{jid} has no user part"))
}

/// Decodes an answer of the admin socket (postcard in base64).
fn decode<T: serde::de::DeserializeOwned>(answer: &str) -> Result<T, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(answer.trim())
        .ok()
        .and_then(|b| postcard::from_bytes(&b).ok())
        .ok_or_else(|| {
            "the running server's answer cannot be read: is it another version of \
             cloud-notify? Restart it after an upgrade"
                .to_string()
        })
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, String> {
    use base64::Engine;
    postcard::to_stdvec(value)
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
        .map_err(|e| e.to_string())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// A Unix time as `2026-12-01 10:00:00 UTC`.
fn stamp(secs: u64) -> String {
    chrono::Utc
        .timestamp_opt(i64::try_from(secs).unwrap_or(i64::MAX), 0)
        .single()
        .map_or_else(
            || format!("{secs} (Unix time)"),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// A Unix time as `2026-12-01 10:00:00 UTC (3h 2m ago)`.
fn when(secs: u64, now: u64) -> String {
    let stamp = stamp(secs);
    if secs > now {
        format!("{stamp} (in {})", span(secs - now))
    } else {
        format!("{stamp} ({} ago)", span(now - secs))
    }
}

/// Text from a peer, quoted, with anything unprintable escaped.
fn quoted(s: &str) -> String {
    format!("'{}'", s.escape_debug())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_times() {
        assert_eq!(span(12), "12s");
        assert_eq!(span(250), "4m 10s");
        assert_eq!(span(7500), "2h 5m");
        assert_eq!(span(3 * 86_400 + 4 * 3600 + 5), "3d 4h");
        assert_eq!(
            when(1_700_000_000, 1_700_000_060),
            "2023-11-14 22:13:20 UTC (1m 0s ago)"
        );
    }

    #[test]
    fn peer_text_cannot_carry_control_characters() {
        assert_eq!(quoted("a\nb\u{1b}[2J"), "'a\\nb\\u{1b}[2J'");
    }

    #[test]
    fn users_are_local_parts_of_our_domain() {
        let cfg = Config::default();
        assert_eq!(user_of("juliet@localhost", &cfg), Ok("juliet".into()));
        assert_eq!(user_of("juliet", &cfg), Ok("juliet".into()));
        assert!(user_of("juliet@elsewhere", &cfg).is_err());
    }
}
