//! Interop with XMPP software nobody on this team wrote, each against the server started
//! in-process (127.0.0.1, ephemeral ports, the self-signed certificate of its data dir):
//!
//! - slixmpp (Python) with its XEP-0198 support, a hand-declared XEP-0357 `<enable/>`
//!   (slixmpp ships no push plugin), its carbons (XEP-0280) and MAM (XEP-0313, paged
//!   with RSM) plugins, and a slixmpp component as the app server:
//!   `tests/interop/slixmpp_push.py`;
//! - the Tigase encrypted push payload, enabled by a slixmpp client with a key made in
//!   Python and opened at a slixmpp component by `cryptography`'s AESGCM (OpenSSL):
//!   `tests/interop/tigase_encrypted_push.py`;
//! - xmpp.js (`@xmpp/client` as the clients, `@xmpp/component` as the app server):
//!   logins, roster and subscriptions, messages, offline storage, XEP-0198 resumption
//!   through a proxy that cuts the connection, XEP-0357 publish:
//!   `tests/interop/xmppjs/xmppjs_push.mjs`;
//! - go-sendxmpp (Debian's package, go-xmpp inside): sending over STARTTLS and direct
//!   TLS, its listen mode, with a slixmpp peer: `tests/interop/go_sendxmpp.py`;
//! - profanity (Debian's package, libstrophe inside), a console client driven through
//!   tmux: logins, messages both ways, and what it asks for at login that the server
//!   refuses: `tests/interop/profanity.py`.
//!
//! The tools come from `eval "$(bash .ci/interop-setup.sh)"`, which exports
//! `CLOUD_NOTIFY_PYTHON`, `CLOUD_NOTIFY_XMPPJS` (and `CLOUD_NOTIFY_NODE`),
//! `CLOUD_NOTIFY_GO_SENDXMPP`, `CLOUD_NOTIFY_PROFANITY` and `CLOUD_NOTIFY_TMUX`. A test
//! whose tool is not set is skipped with a notice, except under CI (`CI` set), where it
//! fails: CI must run them all.
//!
//! The scripts print `STEP <name>: PASS|FAIL|SKIP|N/A <detail>` per step and
//! `MISSING <stack>: <what>` for what the stack asked for or would use that the server
//! does not serve; the test prints them and fails naming every failed step.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cloud_notify::config::{ComponentConfig, Config};
use cloud_notify::store::{admin, open_database};
use cloud_notify::xmpp::server::Server;

const APP_JID: &str = "push.localhost";
const APP_SECRET: &str = "s3cr3t";

fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The path in `var`, or None (with a notice) when unset outside CI; under CI a missing
/// tool fails the test.
fn tool(var: &str, stack: &str) -> Option<String> {
    let value = std::env::var(var).ok().filter(|p| !p.is_empty());
    if value.is_none() {
        assert!(
            !under_ci(),
            "{var} is not set, and CI must run the {stack} interop test: \
             run `eval \"$(bash .ci/interop-setup.sh)\"` before `cargo test`"
        );
        // Straight to stderr, past libtest's capture: a skip should be seen.
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: {stack} interop test skipped: {var} is not set \
             (eval \"$(bash .ci/interop-setup.sh)\" to run it)"
        );
    }
    value
}

fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "cloud_notify=info".into()),
        )
        .try_init();
}

/// The server with accounts juliet/juliet-pw and romeo/romeo-pw, the push.localhost
/// component allowed, and (when `direct_tls`) a direct-TLS listener too.
struct Harness {
    server: Server,
    cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(direct_tls: bool) -> Harness {
        init_log();
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            domain: "localhost".into(),
            data_dir: dir.path().to_path_buf(),
            c2s_listen: "127.0.0.1:0".parse().unwrap(),
            c2s_direct_tls_listen: direct_tls.then(|| "127.0.0.1:0".parse().unwrap()),
            component_listen: "127.0.0.1:0".parse().unwrap(),
            scram_iterations: 4096,
            push_batch_window: Duration::from_millis(200),
            components: vec![ComponentConfig {
                jid: APP_JID.into(),
                secret: APP_SECRET.into(),
            }],
            ..Config::default()
        };
        {
            let db = open_database(&cfg.data_dir, cfg.store_cache_size).unwrap();
            admin::add_user(&db, "juliet", "juliet-pw", 4096).unwrap();
            admin::add_user(&db, "romeo", "romeo-pw", 4096).unwrap();
        }
        let server = Server::start(cfg).await.expect("server starts");
        let cert = dir.path().join("tls-cert.pem");
        assert!(cert.exists(), "self-signed certificate at {cert:?}");
        Harness {
            server,
            cert,
            _dir: dir,
        }
    }

    fn c2s_port(&self) -> String {
        self.server.c2s_addr.port().to_string()
    }

    fn direct_tls_port(&self) -> String {
        let addr: SocketAddr = self.server.direct_tls_addr.expect("direct TLS listener");
        addr.port().to_string()
    }

    fn component_port(&self) -> String {
        self.server.component_addr.port().to_string()
    }
}

struct Run {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    deadline: Duration,
}

/// Runs the script to its end or kills it at `deadline`, without blocking the actix
/// runtime the server runs on. Output goes to files, not pipes: a full pipe cannot stall
/// the script while it runs.
async fn run(mut cmd: Command, deadline: Duration) -> Run {
    let out = tempfile::tempdir().unwrap();
    let (stdout_path, stderr_path) = (out.path().join("stdout"), out.path().join("stderr"));
    let started = Instant::now();
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    // The child is waited for on the blocking pool: its exit is the event, the deadline
    // the bound.
    let pid = child.id().to_string();
    let mut waiting = tokio::task::spawn_blocking(move || child.wait());
    let status = match tokio::time::timeout(deadline, &mut waiting).await {
        Ok(Ok(Ok(status))) => Some(status),
        Ok(Ok(Err(e))) => panic!("cannot wait for {program}: {e}"),
        Ok(Err(e)) => panic!("waiting for {program} failed: {e}"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
            let _ = waiting.await;
            None
        }
    };
    let read = |p: &Path| {
        std::fs::read_to_string(p).unwrap_or_else(|e| format!("<cannot read {p:?}: {e}>"))
    };
    Run {
        status,
        stdout: read(&stdout_path),
        stderr: read(&stderr_path),
        elapsed: started.elapsed(),
        deadline,
    }
}

/// Prints the steps and what is missing; fails naming every failed step (or the
/// script's own FAIL line when it stopped before reporting steps).
fn judge(stack: &str, run: Run) {
    let steps: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("STEP ") || l.starts_with("MISSING "))
        .collect();
    let failed: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("STEP ") && l.contains(": FAIL"))
        .collect();
    let ok = matches!(run.status, Some(s) if s.success()) && failed.is_empty();
    if ok {
        if std::env::var_os("CLOUD_NOTIFY_INTEROP_VERBOSE").is_some() {
            println!("==== {stack} script stderr ====\n{}", run.stderr);
        }
        println!("{}", run.stdout);
        println!("{stack} interop passed in {:.1?}", run.elapsed);
        return;
    }
    eprintln!("==== {stack} script stdout ====\n{}", run.stdout);
    eprintln!("==== {stack} script stderr ====\n{}", run.stderr);
    eprintln!("==== {stack}: steps ====");
    for l in &steps {
        eprintln!("{l}");
    }
    let why = match run.status {
        None => format!("killed after {:?}", run.deadline),
        Some(s) => format!("exited with {s} after {:.1?}", run.elapsed),
    };
    let fails = if failed.is_empty() {
        run.stdout
            .lines()
            .find(|l| l.starts_with("FAIL: "))
            .unwrap_or("no FAIL line (see stderr)")
            .to_string()
    } else {
        failed.join("\n  ")
    };
    panic!("{stack} interop {why}; failed:\n  {fails}");
}

// -- slixmpp ----------------------------------------------------------------------------

#[actix_rt::test]
async fn slixmpp_starttls_scram_smacks_resume_and_push() {
    let Some(python) = tool("CLOUD_NOTIFY_PYTHON", "slixmpp") else {
        return;
    };
    let h = Harness::start(true).await;
    let mut cmd = python_script(&python, "slixmpp_push.py", &h);
    cmd.args(["--component-port", &h.component_port()]);
    // The script gives itself 60 s; this is the backstop if it hangs anyway.
    let r = run(cmd, Duration::from_secs(100)).await;
    h.server.shutdown().await;
    judge("slixmpp", r);
}

/// The Tigase encrypted push payload opened by Python's `cryptography` (OpenSSL's
/// AES-GCM) with the key the slixmpp client enabled: the tag must verify.
#[actix_rt::test]
async fn tigase_encrypted_push_opens_with_an_independent_aes_gcm() {
    let Some(python) = tool("CLOUD_NOTIFY_PYTHON", "slixmpp + cryptography") else {
        return;
    };
    let h = Harness::start(false).await;
    let mut cmd = Command::new(&python);
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tigase_encrypted_push.py"))
        .args(["--host", "127.0.0.1"])
        .args(["--c2s-port", &h.c2s_port()])
        .args(["--component-port", &h.component_port()])
        .arg("--ca-cert")
        .arg(&h.cert)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    // The script gives itself 50 s; this is the backstop if it hangs anyway.
    let r = run(cmd, Duration::from_secs(80)).await;
    h.server.shutdown().await;
    judge("tigase encrypted push (slixmpp, cryptography)", r);
}

// -- xmpp.js ----------------------------------------------------------------------------

#[actix_rt::test]
async fn xmppjs_logins_roster_messages_offline_smacks_and_push() {
    let Some(modules) = tool("CLOUD_NOTIFY_XMPPJS", "xmpp.js") else {
        return;
    };
    let node = std::env::var("CLOUD_NOTIFY_NODE").unwrap_or_else(|_| "node".into());
    let h = Harness::start(true).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/xmppjs/xmppjs_push.mjs");
    let mut cmd = Command::new(&node);
    cmd.arg(&script)
        .args(["--host", "127.0.0.1"])
        .args(["--c2s-port", &h.c2s_port()])
        .args(["--tls-port", &h.direct_tls_port()])
        .args(["--component-port", &h.component_port()])
        .arg("--ca-cert")
        .arg(&h.cert)
        .arg("--modules")
        .arg(&modules);
    // The script gives itself 120 s; this is the backstop if it hangs anyway.
    let r = run(cmd, Duration::from_secs(150)).await;
    h.server.shutdown().await;
    judge("xmpp.js", r);
}

/// A Python interop script from tests/interop/ with the server's addresses and CA.
fn python_script(python: &str, name: &str, h: &Harness) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/interop")
            .join(name),
    )
    .args(["--host", "127.0.0.1"])
    .args(["--c2s-port", &h.c2s_port()])
    .args(["--tls-port", &h.direct_tls_port()])
    .arg("--ca-cert")
    .arg(&h.cert)
    .env("PYTHONUNBUFFERED", "1")
    .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

// -- go-sendxmpp ------------------------------------------------------------------------

#[actix_rt::test]
async fn go_sendxmpp_send_over_starttls_and_direct_tls_and_listen() {
    let Some(gosend) = tool("CLOUD_NOTIFY_GO_SENDXMPP", "go-sendxmpp") else {
        return;
    };
    // The peer that sends to and receives from go-sendxmpp is slixmpp.
    let Some(python) = tool("CLOUD_NOTIFY_PYTHON", "go-sendxmpp (its slixmpp peer)") else {
        return;
    };
    let h = Harness::start(true).await;
    let mut cmd = python_script(&python, "go_sendxmpp.py", &h);
    cmd.arg("--go-sendxmpp").arg(&gosend);
    // The script gives itself 90 s; this is the backstop if it hangs anyway.
    let r = run(cmd, Duration::from_secs(120)).await;
    h.server.shutdown().await;
    judge("go-sendxmpp", r);
}

// -- profanity --------------------------------------------------------------------------

#[actix_rt::test]
async fn profanity_logins_messages_and_what_it_asks_for_at_login() {
    let Some(profanity) = tool("CLOUD_NOTIFY_PROFANITY", "profanity") else {
        return;
    };
    let Some(tmux) = tool("CLOUD_NOTIFY_TMUX", "profanity (tmux drives it)") else {
        return;
    };
    // The peer is slixmpp.
    let Some(python) = tool("CLOUD_NOTIFY_PYTHON", "profanity (its slixmpp peer)") else {
        return;
    };
    let h = Harness::start(true).await;
    let mut cmd = python_script(&python, "profanity.py", &h);
    cmd.arg("--profanity")
        .arg(&profanity)
        .arg("--tmux")
        .arg(&tmux);
    // The script gives itself 100 s; this is the backstop if it hangs anyway.
    let r = run(cmd, Duration::from_secs(130)).await;
    h.server.shutdown().await;
    judge("profanity", r);
}
