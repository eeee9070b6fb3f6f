//! The command line, as an admin uses it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

struct Box {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

fn setup(extra: &str) -> Box {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cloud-notify.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "domain = \"example.com\"\ndata_dir = {:?}\nscram_iterations = 4096\n{extra}",
            data.display().to_string()
        ),
    )
    .unwrap();
    Box { dir, config }
}

/// The binary under test; through `CLOUD_NOTIFY_TEST_RUNNER` (set by cross/test.sh to
/// the qemu command) when the tests run for another architecture.
fn cloud_notify() -> Command {
    let bin = env!("CARGO_BIN_EXE_cloud-notify");
    match std::env::var("CLOUD_NOTIFY_TEST_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut parts = runner.split_whitespace();
            let mut c = Command::new(parts.next().unwrap_or_default());
            c.args(parts).arg(bin);
            c
        }
        _ => Command::new(bin),
    }
}

fn run(b: &Box, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = cloud_notify()
        .arg("--config")
        .arg(&b.config)
        .args(args)
        .current_dir(b.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_prints_the_effective_configuration() {
    let b = setup("push_max_devices = 3");
    let o = run(&b, &["check"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("push_max_devices = 3"));
    assert!(stdout(&o).contains("domain = \"example.com\""));
    assert!(b.dir.path().join("data/cloud-notify.redb").exists());
}

#[test]
fn bad_configuration_stops_with_the_key_named() {
    let b = setup("push_max_devices = 0");
    let o = run(&b, &["check"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`push_max_devices = 0` is not allowed: an integer from 1 to 16"),
        "{}",
        stderr(&o)
    );
    let b = setup("push_max_device = 3");
    let o = run(&b, &[], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown configuration key `push_max_device`"));
}

#[test]
fn user_add_list_passwd_del() {
    let b = setup("");
    let o = run(
        &b,
        &["user", "add", "juliet@example.com", "--password", "pw"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&b, &["user", "add", "juliet", "--password", "pw"], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists"));
    let o = run(
        &b,
        &["user", "add", "romeo@elsewhere.org", "--password", "pw"],
        None,
    );
    assert!(stderr(&o).contains("not on this server's domain"));
    let o = run(&b, &["user", "list"], None);
    assert_eq!(stdout(&o).trim(), "juliet@example.com");
    let o = run(&b, &["user", "del", "juliet@example.com"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&b, &["user", "list"], None);
    assert_eq!(stdout(&o).trim(), "");
    let o = run(&b, &["user", "del", "juliet@example.com"], None);
    assert!(stderr(&o).contains("no such user"));
}

#[test]
fn user_import_reads_jid_password_lines() {
    let b = setup("");
    let mut input = String::from("# accounts\n");
    for i in 0..200 {
        input.push_str(&format!("user{i}@example.com pass{i}\n"));
    }
    let o = run(&b, &["user", "import"], Some(&input));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("imported 200 accounts"));
    let o = run(&b, &["user", "list"], None);
    assert_eq!(stdout(&o).lines().count(), 200);
    let o = run(
        &b,
        &["user", "import"],
        Some("user1@example.com again\nbad-line\n"),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("line 2: expected `jid password`"));
}

/// With the server running (it holds the database), the user commands go through its
/// admin socket and take effect at once.
#[cfg(unix)]
#[test]
fn user_commands_work_while_the_server_runs() {
    let b = setup("c2s_listen = \"127.0.0.1:0\"\ncomponent_listen = \"127.0.0.1:0\"");
    let mut server = cloud_notify()
        .arg("--config")
        .arg(&b.config)
        .arg("serve")
        .current_dir(b.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let socket = b.dir.path().join("data/admin.sock");
    let started = std::time::Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = run(
        &b,
        &["user", "add", "juliet@example.com", "--password", "pw"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        &b,
        &["user", "add", "juliet@example.com", "--password", "pw"],
        None,
    );
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    let o = run(
        &b,
        &["user", "import"],
        Some("romeo@example.com r\njuliet@example.com x\n"),
    );
    assert!(stdout(&o).contains("imported 1 accounts"), "{}", stdout(&o));
    let o = run(&b, &["user", "list"], None);
    assert_eq!(stdout(&o).trim(), "juliet@example.com\nromeo@example.com");
    let o = run(&b, &["user", "del", "romeo@example.com"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&b, &["user", "list"], None);
    assert_eq!(stdout(&o).trim(), "juliet@example.com");
    // SIGTERM: a clean stop, which removes the socket.
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let status = server.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM");
    assert!(!socket.exists());
    // And the data is there for the next direct use.
    let o = run(&b, &["user", "list"], None);
    assert_eq!(stdout(&o).trim(), "juliet@example.com");
}
