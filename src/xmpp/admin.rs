//! The admin socket: the `user` commands reach a running server through it, since redb
//! admits one process per file. A Unix socket in the data directory, mode 0600, so only
//! the service user (and root) can open it.
//!
//! One request per line, one answer line each (`ok …` or `err …`):
//! `exists U`, `add U CRED`, `set U CRED`, `del U`, `list`. `CRED` is the base64 of the
//! account's encoded SCRAM credentials, derived by the command line tool: the password
//! never reaches the server. The `push` commands and `status` have their own requests
//! ([`ops`]).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::user::DeleteAccount;
use crate::store::{Account, Change, ListAccounts, LoadAccount, StoreError, Write};

/// File name of the socket inside `data_dir`.
pub const SOCKET: &str = "admin.sock";

/// Longest request line (an account's credentials are a few hundred bytes).
const MAX_LINE: usize = 16 * 1024;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

pub mod ops;
mod shared;

pub use shared::Shared;

/// Binds the socket (replacing a stale one from a crashed run) with mode 0600.
pub fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(stream: UnixStream, shared: Rc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut lines)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(n) if n > MAX_LINE => {
                let _ = write.write_all(b"err request too long\n").await;
                return;
            }
            Ok(_) => {}
        }
        let answer = handle(line.trim_end(), &shared).await;
        if write
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn exists(user: &str, shared: &Shared) -> Result<bool, String> {
    match shared.store.send(LoadAccount { user: user.into() }).await {
        Ok(Ok(a)) => Ok(a.is_some()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn write(changes: Vec<Change>, shared: &Shared) -> Result<(), String> {
    match shared
        .store
        .send(Write {
            changes,
            durable: true,
        })
        .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// One request line, parsed. Kept apart from [`handle`] (which talks to the store) so
/// the parsing of what arrives on the socket can be fuzzed on its own (fuzz/).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    List,
    Exists {
        user: String,
    },
    /// `add` (`replace: false`) or `set` (`replace: true`).
    Put {
        user: String,
        account: Account,
        replace: bool,
    },
    Del {
        user: String,
    },
}

/// Parses one request line (without its newline); `Err` is the text after `err`.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let mut parts = line.split(' ');
    let verb = parts.next().unwrap_or_default();
    let user = parts.next().unwrap_or_default().to_string();
    match verb {
        "list" => Ok(Request::List),
        _ if user.is_empty() => Err("missing user".into()),
        "exists" => Ok(Request::Exists { user }),
        "add" | "set" => {
            let account = parts
                .next()
                .and_then(|c| B64.decode(c).ok())
                .and_then(|b| Account::decode(&b).ok())
                .ok_or("malformed credentials")?;
            Ok(Request::Put {
                user,
                account,
                replace: verb == "set",
            })
        }
        "del" => Ok(Request::Del { user }),
        _ => Err(format!("unknown request {verb}")),
    }
}

async fn handle(line: &str, shared: &Shared) -> String {
    // The push and status requests have their own module.
    if let Some(result) = ops::handle(line, shared).await {
        return match result {
            Ok(s) => format!("ok {s}"),
            Err(e) => format!("err {e}"),
        };
    }
    let result: Result<String, String> = async {
        match parse_request(line)? {
            Request::List => match shared.store.send(ListAccounts).await {
                Ok(Ok(users)) => Ok(users.join(" ")),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Request::Exists { user } => exists(&user, shared).await.map(|e| if e { "yes" } else { "no" }.into()),
            Request::Put { user, account, replace } => {
                let present = exists(&user, shared).await?;
                if !replace && present {
                    return Err("exists".into());
                }
                if replace && !present {
                    return Err("missing".into());
                }
                write(vec![Change::PutAccount { user: user.clone(), account }], shared).await?;
                tracing::info!(%user, "account {}", if replace { "password changed" } else { "added" });
                Ok(String::new())
            }
            Request::Del { user } => {
                if !exists(&user, shared).await? {
                    return Err("missing".into());
                }
                // Through the user's actor when one runs: its sessions end at once (a
                // deleted account must not go on sending), its push state goes, and
                // everything stored for the user is deleted (account, registrations,
                // roster, offline messages).
                match shared.router.send(DeleteAccount { user: user.clone() }).await {
                    Ok(Ok(())) => {}
                    Ok(Err(StoreError::Closed)) | Err(_) => return Err("store closed".into()),
                    Ok(Err(e)) => return Err(e.to_string()),
                }
                tracing::info!(%user, "account deleted");
                Ok(String::new())
            }
        }
    }
    .await;
    match result {
        Ok(s) if s.is_empty() => "ok".into(),
        Ok(s) => format!("ok {s}"),
        Err(e) => format!("err {e}"),
    }
}

/// The client side, for the command line tool.
pub mod client {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::path::Path;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    use crate::store::Account;

    pub struct AdminClient {
        reader: BufReader<UnixStream>,
        writer: UnixStream,
    }

    impl AdminClient {
        pub fn connect(data_dir: &Path) -> std::io::Result<Self> {
            let stream = UnixStream::connect(super::socket_path(data_dir))?;
            Ok(AdminClient {
                reader: BufReader::new(stream.try_clone()?),
                writer: stream,
            })
        }

        /// How long [`request`](Self::request) waits for an answer (`None`: for ever).
        pub fn set_timeout(&self, timeout: Option<std::time::Duration>) -> std::io::Result<()> {
            self.writer.set_read_timeout(timeout)
        }

        /// Sends one request; `Ok` carries the text after `ok`, `Err` the text after `err`.
        pub fn request(&mut self, line: &str) -> Result<String, String> {
            writeln!(self.writer, "{line}").map_err(|e| e.to_string())?;
            let mut answer = String::new();
            self.reader
                .read_line(&mut answer)
                .map_err(|e| e.to_string())?;
            let answer = answer.trim_end();
            if let Some(rest) = answer.strip_prefix("ok") {
                Ok(rest.trim_start().to_string())
            } else if let Some(rest) = answer.strip_prefix("err ") {
                Err(rest.to_string())
            } else {
                Err(format!("unexpected answer: {answer}"))
            }
        }

        pub fn credentials(account: &Account) -> Result<String, String> {
            account
                .encode()
                .map(|b| B64.encode(b))
                .map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{Hash, ScramCredential};

    #[test]
    fn requests_parse_and_bad_ones_are_named() {
        assert_eq!(parse_request("list"), Ok(Request::List));
        assert_eq!(
            parse_request("exists juliet"),
            Ok(Request::Exists {
                user: "juliet".into()
            })
        );
        assert_eq!(
            parse_request("del juliet"),
            Ok(Request::Del {
                user: "juliet".into()
            })
        );
        let cred = |h| ScramCredential::with_salt(h, "pw", vec![1; 16], 4096);
        let account = Account {
            scram_sha1: cred(Hash::Sha1),
            scram_sha256: cred(Hash::Sha256),
        };
        let line = format!(
            "set juliet {}",
            client::AdminClient::credentials(&account).unwrap()
        );
        assert_eq!(
            parse_request(&line),
            Ok(Request::Put {
                user: "juliet".into(),
                account,
                replace: true
            })
        );
        assert_eq!(parse_request("exists"), Err("missing user".into()));
        assert_eq!(parse_request("bogus"), Err("missing user".into()));
        assert_eq!(
            parse_request("bogus u"),
            Err("unknown request bogus".into())
        );
        assert_eq!(
            parse_request("add juliet !!"),
            Err("malformed credentials".into())
        );
        assert_eq!(
            parse_request("add juliet"),
            Err("malformed credentials".into())
        );
    }
}
