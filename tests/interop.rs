//! Interop with a client nobody on this team wrote: slixmpp (Python) with its XEP-0198
//! support, a hand-declared XEP-0357 `<enable/>` (slixmpp ships no push plugin) and a
//! slixmpp component as the app server. The scenario and its checks are in
//! `tests/interop/slixmpp_push.py`; this test starts the server in-process and runs it.
//!
//! The interpreter comes from `CLOUD_NOTIFY_PYTHON` (a virtualenv with slixmpp:
//! `eval "$(.ci/interop-setup.sh)"`). Without it the test is skipped, except under CI,
//! where it fails: CI must run it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cloud_notify::config::{ComponentConfig, Config};
use cloud_notify::store::{admin, open_database};
use cloud_notify::xmpp::server::Server;

/// The script gives itself 50 s; this is the backstop if it hangs anyway.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(90);

fn python() -> Option<String> {
    let python = std::env::var("CLOUD_NOTIFY_PYTHON")
        .ok()
        .filter(|p| !p.is_empty());
    if python.is_none() {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        assert!(
            !ci,
            "CLOUD_NOTIFY_PYTHON is not set, and CI must run the slixmpp interop test: \
             run `eval \"$(bash .ci/interop-setup.sh)\"` before `cargo test`"
        );
        // Straight to stderr, past libtest's capture: a skip should be seen.
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: slixmpp interop test skipped: CLOUD_NOTIFY_PYTHON is not set \
             (eval \"$(bash .ci/interop-setup.sh)\" to run it)"
        );
    }
    python
}

/// Waits for the child without blocking the actix runtime; kills it at the deadline.
async fn wait_with_deadline(child: &mut std::process::Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + SCRIPT_DEADLINE;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("cannot wait for the interop script: {e}"),
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read {path:?}: {e}>"))
}

#[actix_rt::test]
async fn slixmpp_starttls_scram_smacks_resume_and_push() {
    let Some(python) = python() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "cloud_notify=info".into()),
        )
        .try_init();

    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        domain: "localhost".into(),
        data_dir: dir.path().to_path_buf(),
        c2s_listen: "127.0.0.1:0".parse().unwrap(),
        component_listen: "127.0.0.1:0".parse().unwrap(),
        scram_iterations: 4096,
        push_batch_window: Duration::from_millis(200),
        components: vec![ComponentConfig {
            jid: "push.localhost".into(),
            secret: "s3cr3t".into(),
        }],
        ..Config::default()
    };
    {
        let db = open_database(&cfg.data_dir, cfg.store_cache_size).unwrap();
        admin::add_user(&db, "juliet", "juliet-pw", 4096).unwrap();
        admin::add_user(&db, "romeo", "romeo-pw", 4096).unwrap();
    }
    let server = Server::start(cfg.clone()).await.expect("server starts");
    let cert = dir.path().join("tls-cert.pem");
    assert!(cert.exists(), "self-signed certificate at {cert:?}");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/slixmpp_push.py");
    let out = tempfile::tempdir().unwrap();
    let (stdout_path, stderr_path) = (out.path().join("stdout"), out.path().join("stderr"));
    let started = Instant::now();
    // Output to files, not pipes: a full pipe cannot stall the script while we poll.
    let mut child = Command::new(&python)
        .arg(&script)
        .args(["--host", "127.0.0.1"])
        .args(["--c2s-port", &server.c2s_addr.port().to_string()])
        .args([
            "--component-port",
            &server.component_addr.port().to_string(),
        ])
        .arg("--ca-cert")
        .arg(&cert)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} (CLOUD_NOTIFY_PYTHON): {e}"));
    let status = wait_with_deadline(&mut child).await;
    let elapsed = started.elapsed();
    server.shutdown().await;

    let (stdout, stderr) = (read(&stdout_path), read(&stderr_path));
    match status {
        Some(s) if s.success() => {
            println!("{stdout}");
            println!("slixmpp interop passed in {elapsed:.1?}");
        }
        other => {
            eprintln!("==== interop script stdout ====\n{stdout}");
            eprintln!("==== interop script stderr ====\n{stderr}");
            let why = match other {
                None => format!("killed after {SCRIPT_DEADLINE:?}"),
                Some(s) => format!("exited with {s}"),
            };
            let fail = stdout
                .lines()
                .find(|l| l.starts_with("FAIL: "))
                .unwrap_or("no FAIL line (see stderr)");
            panic!("slixmpp interop {why}: {fail}");
        }
    }
}
