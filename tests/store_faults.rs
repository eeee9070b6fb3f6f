//! The store under failure (issue 8): a full or failing disk, a damaged file, and who may
//! read the data directory. The disk faults are injected under redb (a storage backend
//! that answers `ENOSPC`/`EIO` like a real disk), so redb's own reaction is what is
//! tested; the damaged file and the permissions go through the command line as an admin
//! meets them.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cloud_notify::store::{
    self, Change, Close, LoadAccount, LoadOffline, LoadRegistrations, PushOffline,
    RegistrationRecord, Store, StoreError, Write, admin, schema,
};
use redb::ReadableDatabase;

const DEADLINE: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------ helpers

/// The store's log lines, shown with a failing test's output.
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("cloud_notify=debug")
        .try_init();
}

fn record(node: &str) -> RegistrationRecord {
    RegistrationRecord {
        jid: "push.example.com".into(),
        node: Some(node.into()),
        publish_options: None,
        enabled_at_us: 1,
        client: "phone".into(),
        language: None,
        error_count: 0,
        last_success: None,
        last_error: None,
        last_timeout: None,
        extensions: None,
        last_s2s_failure: None,
    }
}

fn put(user: &str, node: &str) -> Write {
    Write {
        changes: vec![Change::PutRegistration {
            user: user.into(),
            identifier: node.into(),
            record: record(node),
        }],
        durable: true,
    }
}

/// A message big enough that storing it must grow the file.
fn big_stanza(i: usize) -> String {
    format!(
        "<message xmlns='jabber:client' to='juliet@example.com' id='m{i}'><body>{}</body></message>",
        "x".repeat(300_000)
    )
}

fn push_offline(user: &str, stanza: String) -> PushOffline {
    PushOffline {
        user: user.into(),
        stanza,
        max: 1000,
        max_bytes: 1 << 30,
        release: None,
    }
}

/// Retries `attempt` until it succeeds; fails the test at the deadline.
async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let start = Instant::now();
    loop {
        match attempt().await {
            Ok(v) => return v,
            // The store answers at once (with an error while it waits to reopen); the pause
            // only keeps this loop from spinning while the store's backoff runs.
            Err(_) if start.elapsed() < DEADLINE => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{what}: still failing after {DEADLINE:?}: {e}"),
        }
    }
}

/// Every registration node of `user`, read from the file by a fresh open (what a restart
/// would find).
fn nodes_on_disk(data_dir: &Path, user: &str) -> Vec<String> {
    let db = store::open_database(data_dir, 1 << 20).expect("reopen the file");
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(schema::PUSH_REGISTRATIONS).unwrap();
    let mut out = Vec::new();
    for e in t.range((user, "")..).unwrap() {
        let (k, _) = e.unwrap();
        let (u, id) = k.value();
        if u != user {
            break;
        }
        out.push(id.to_string());
    }
    out
}

// ------------------------------------------------------------------ a full or failing disk

/// ENOSPC: the write that hits it fails, writes keep failing while the disk is full,
/// reads keep working, and once there is room again the store reopens the database by
/// itself and writes succeed, with everything acknowledged before still there.
#[actix_rt::test]
async fn disk_full_fails_writes_cleanly_and_the_store_recovers_on_its_own() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let file = store::open_database_with_faults(dir.path(), 1 << 20).unwrap();
    let faults = file.faults();
    admin::add_user(&file, "juliet", "pw", 4096).unwrap();
    let store = Store::start(file, 64);

    store.send(put("juliet", "before")).await.unwrap().unwrap();
    store
        .send(push_offline("juliet", big_stanza(0)))
        .await
        .unwrap()
        .unwrap();

    faults.set_disk_full(true);
    let full = store
        .send(push_offline("juliet", big_stanza(1)))
        .await
        .unwrap();
    assert!(
        matches!(full, Err(StoreError::Io(_))),
        "the requester learns the write failed: {full:?}"
    );
    // While the disk stays full every write fails, whatever it is, and is not acknowledged.
    for i in 0..3 {
        let r = store
            .send(push_offline("juliet", big_stanza(10 + i)))
            .await
            .unwrap();
        assert!(r.is_err(), "a write while the disk is full: {r:?}");
    }
    // Logins still work: reading needs no room.
    let account = eventually("a read while the disk is full", || async {
        store
            .send(LoadAccount {
                user: "juliet".into(),
            })
            .await
            .unwrap()
    })
    .await;
    assert!(account.is_some());

    faults.set_disk_full(false);
    eventually("a write once there is room again", || async {
        store.send(put("juliet", "after")).await.unwrap()
    })
    .await;
    let seq = eventually("a big write once there is room again", || async {
        store
            .send(push_offline("juliet", big_stanza(2)))
            .await
            .unwrap()
    })
    .await;
    assert!(seq > 1);
    let offline = store
        .send(LoadOffline {
            user: "juliet".into(),
        })
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<bool> = offline
        .iter()
        .map(|(_, s)| s.contains("id='m0'") || s.contains("id='m2'"))
        .collect();
    assert_eq!(
        ids,
        [true, true],
        "the acknowledged messages, and only those"
    );

    store.send(Close).await.unwrap();
    assert_eq!(nodes_on_disk(dir.path(), "juliet"), ["after", "before"]);
}

/// EIO on every write: the database cannot even be reopened while the disk fails, so
/// every request fails (none hangs, none is acknowledged); when the disk works again the
/// store comes back by itself with the acknowledged data.
#[actix_rt::test]
async fn io_errors_fail_requests_cleanly_and_the_store_recovers_on_its_own() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let file = store::open_database_with_faults(dir.path(), 1 << 20).unwrap();
    let faults = file.faults();
    let store = Store::start(file, 64);
    store.send(put("romeo", "kept")).await.unwrap().unwrap();

    faults.set_io_errors(true);
    let r = store.send(put("romeo", "lost")).await.unwrap();
    assert!(matches!(r, Err(StoreError::Io(_))), "{r:?}");
    for _ in 0..3 {
        let r = store.send(put("romeo", "lost-too")).await.unwrap();
        assert!(r.is_err(), "{r:?}");
        let r = store
            .send(LoadRegistrations {
                user: "romeo".into(),
            })
            .await
            .unwrap();
        // A read either still works or fails cleanly; it never sees an unacknowledged write.
        if let Ok(rows) = r {
            assert!(rows.iter().all(|(id, _)| id == "kept"), "{rows:?}");
        }
    }

    faults.set_io_errors(false);
    eventually("a write once the disk works again", || async {
        store.send(put("romeo", "later")).await.unwrap()
    })
    .await;
    let rows = store
        .send(LoadRegistrations {
            user: "romeo".into(),
        })
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["kept", "later"]);
    store.send(Close).await.unwrap();
    assert_eq!(nodes_on_disk(dir.path(), "romeo"), ["kept", "later"]);
}

// ------------------------------------------------------------------ a damaged file

/// Marks the offline messages written by [`database_with_offline_messages`].
const MARK: &[u8] = b"ROMEO-OFFLINE-PAYLOAD";

/// A database with two accounts and many offline messages for romeo, which fill most of
/// the file, so the damage below lands in them and nowhere else.
fn database_with_offline_messages(data_dir: &Path) -> PathBuf {
    let db = store::open_database(data_dir, 1 << 20).unwrap();
    admin::add_user(&db, "juliet", "juliet-pw", 4096).unwrap();
    admin::add_user(&db, "romeo", "romeo-pw", 4096).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(schema::OFFLINE).unwrap();
        let payload = String::from_utf8_lossy(MARK).repeat(100);
        for seq in 1..=600u64 {
            let stanza = format!(
                "<message xmlns='jabber:client' to='romeo@example.com' id='o{seq}'><body>{payload}</body></message>"
            );
            t.insert(("romeo", seq), stanza.as_bytes()).unwrap();
        }
    }
    txn.commit().unwrap();
    drop(db);
    data_dir.join(store::DB_FILE)
}

/// Overwrites every 4 KiB block that holds romeo's messages: their pages' headers and
/// contents become garbage, as after a bad sector or a torn write. Returns how many.
fn damage_offline_pages(file: &Path) -> usize {
    use std::os::unix::fs::FileExt;
    let bytes = std::fs::read(file).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    let mut damaged = 0;
    for (i, block) in bytes.chunks(4096).enumerate() {
        if block.windows(MARK.len()).any(|w| w == MARK) {
            f.write_all_at(&vec![0x5a; block.len()], (i * 4096) as u64)
                .unwrap();
            damaged += 1;
        }
    }
    f.sync_all().unwrap();
    assert!(damaged > 10, "the messages span many pages ({damaged})");
    damaged
}

/// Found at run time: the request that reads the damaged pages fails with an error, and
/// the store goes on serving everything else, including requests of the same batch.
#[actix_rt::test]
async fn damage_found_at_run_time_fails_the_request_not_the_store() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let path = database_with_offline_messages(dir.path());
    let file = store::open_database(dir.path(), 64 * 1024).unwrap();
    let store = Store::start(file, 64);
    damage_offline_pages(&path);

    // In one batch: the damaged read and an unrelated one.
    let romeo = store.send(LoadOffline {
        user: "romeo".into(),
    });
    let juliet = store.send(LoadAccount {
        user: "juliet".into(),
    });
    let (romeo, juliet) = (romeo.await.unwrap(), juliet.await.unwrap());
    assert!(
        matches!(romeo, Err(StoreError::Corrupt(_))),
        "the damaged read fails with an error: {romeo:?}"
    );
    assert!(
        matches!(juliet, Ok(Some(_))),
        "the other request is answered: {juliet:?}"
    );
    // And the store still writes.
    store.send(put("juliet", "n1")).await.unwrap().unwrap();
    let again = store
        .send(LoadOffline {
            user: "romeo".into(),
        })
        .await
        .unwrap();
    assert!(again.is_err(), "still an error, not a crash: {again:?}");
    store.send(Close).await.unwrap();
}

// ------------------------------------------------------------------ through the command line

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
}

fn setup(extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cloud-notify.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "domain = \"example.com\"\ndata_dir = {:?}\nscram_iterations = 4096\n\
             c2s_listen = \"127.0.0.1:0\"\ncomponent_listen = \"127.0.0.1:0\"\n{extra}",
            data.display().to_string()
        ),
    )
    .unwrap();
    Setup { dir, config, data }
}

/// The binary under test; through `CLOUD_NOTIFY_TEST_RUNNER` (set by cross/test.sh to
/// the qemu command) when the tests run for another architecture.
fn cloud_notify(s: &Setup) -> Command {
    let bin = env!("CARGO_BIN_EXE_cloud-notify");
    let mut c = match std::env::var("CLOUD_NOTIFY_TEST_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut parts = runner.split_whitespace();
            let mut c = Command::new(parts.next().unwrap_or_default());
            c.args(parts).arg(bin);
            c
        }
        _ => Command::new(bin),
    };
    c.arg("--config")
        .arg(&s.config)
        .current_dir(s.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(s: &Setup, args: &[&str]) -> Output {
    cloud_notify(s).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits for the process to end by itself; kills it at the deadline.
fn wait_for_exit(child: Child) -> Output {
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "still running after {DEADLINE:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A server process, stopped (SIGTERM) when dropped.
struct Running {
    child: Option<Child>,
    socket: PathBuf,
    /// Its log so far, read by a thread that also says when it serves.
    log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Starts `serve` and waits for its "serving" line (its admin socket is bound
    /// before it says so), or for it to end first.
    fn start(s: &Setup) -> Running {
        let mut child = cloud_notify(s).arg("serve").spawn().unwrap();
        let err = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (serving_tx, serving) = std::sync::mpsc::channel();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains(" serving ") {
                    let _ = serving_tx.send(());
                }
                let mut l = sink.lock().unwrap();
                l.extend_from_slice(line.as_bytes());
                l.push(b'\n');
            }
        });
        let started = serving.recv_timeout(DEADLINE).is_ok();
        let mut r = Running {
            child: Some(child),
            socket: s.data.join("admin.sock"),
            log,
            reader: Some(reader),
        };
        if !started {
            let o = r.stop();
            panic!("server did not start ({}):\n{}", o.status, stderr(&o));
        }
        r
    }

    /// One admin request straight on the socket: only the running server can answer it.
    fn admin(&self, line: &str) -> std::io::Result<String> {
        let mut stream = std::os::unix::net::UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(DEADLINE))?;
        writeln!(stream, "{line}")?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer)?;
        Ok(answer.trim_end().to_string())
    }

    /// SIGTERM, then the exit status with the whole log as its stderr.
    fn stop(&mut self) -> Output {
        let child = self.child.take().expect("running");
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let mut out = wait_for_exit(child);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        out.stderr = std::mem::take(&mut *self.log.lock().unwrap());
        out
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn assert_damage_reported(o: &Output, file: &Path, what: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "{what}: must fail; stderr:\n{err}");
    assert!(
        !err.contains("panicked"),
        "{what}: a message, not a panic:\n{err}"
    );
    assert!(
        err.contains(&file.display().to_string()),
        "{what}: names the file:\n{err}"
    );
    assert!(
        err.contains("damaged") && err.contains("backup"),
        "{what}: says what happened and what to do:\n{err}"
    );
}

/// A damaged page is found when the server starts (or `check` runs), not at the first
/// login: a clear message naming the file and the remedy, and a failure exit.
#[test]
fn a_damaged_file_is_refused_at_start_with_a_message() {
    let s = setup("");
    let path = database_with_offline_messages(&s.data);
    damage_offline_pages(&path);

    let o = run(&s, &["check"]);
    assert_damage_reported(&o, &path, "check");

    let child = cloud_notify(&s).arg("serve").spawn().unwrap();
    let o = wait_for_exit(child);
    assert_damage_reported(&o, &path, "serve");
}

/// Damage that appears while the server runs fails the request that meets it, is logged
/// with the file's name, and the server keeps running.
#[test]
fn damage_found_while_serving_does_not_stop_the_server() {
    let s = setup("store_cache_size = 65536");
    let path = database_with_offline_messages(&s.data);
    let mut server = Running::start(&s);
    damage_offline_pages(&path);

    // Deleting romeo walks his offline messages, through the damaged pages.
    let answer = server.admin("del romeo").expect("an answer, not a crash");
    assert!(
        answer.starts_with("err"),
        "an error answer, got {answer:?} (nothing: the server died)"
    );
    let answer = server
        .admin("list")
        .expect("the server still answers after the damage");
    assert_eq!(answer, "ok juliet romeo");

    let o = server.stop();
    assert!(o.status.success(), "clean stop: {}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("damaged"), "logged:\n{err}");
    assert!(
        err.contains(&path.display().to_string()),
        "the log names the file:\n{err}"
    );
}

/// The data directory is the service's alone: created 0700, and the database, the
/// generated TLS key and certificate and the admin socket are 0600.
#[cfg(unix)]
#[test]
fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let s = setup("");
    let mut server = Running::start(&s);
    assert_eq!(mode(&s.data), 0o700, "data directory");
    for f in [store::DB_FILE, "tls-cert.pem", "tls-key.pem", "admin.sock"] {
        assert_eq!(mode(&s.data.join(f)), 0o600, "{f}");
    }
    let o = server.stop();
    assert!(o.status.success(), "{}", stderr(&o));

    // A user command that creates a fresh directory makes it the same way; `check`
    // creates nothing at all.
    let s = setup("");
    let o = run(&s, &["check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!s.data.exists(), "check is read-only");
    let o = run(
        &s,
        &[
            "user",
            "add",
            "a@example.com",
            "--password",
            "pw",
            "--create",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mode(&s.data), 0o700);
    assert_eq!(mode(&s.data.join(store::DB_FILE)), 0o600);
}
