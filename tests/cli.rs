//! The command line, as an admin uses it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

#[path = "support/dns.rs"]
mod dns;

/// Listeners on ports the system picks, so that `check`'s bind test never meets a
/// server someone runs on the default ports of this machine.
const EPHEMERAL_PORTS: &str = "c2s_listen = \"127.0.0.1:0\"\ncomponent_listen = \"127.0.0.1:0\"";

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
    let b = setup(&format!("push_max_devices = 3\n{EPHEMERAL_PORTS}"));
    let o = run(&b, &["check", "--offline"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("push_max_devices = 3"));
    assert!(stdout(&o).contains("domain = \"example.com\""));
    assert!(
        !b.dir.path().join("data").exists(),
        "check changes nothing: no data directory"
    );
}

#[test]
fn check_says_which_federation_setup_it_is() {
    let b = setup(EPHEMERAL_PORTS);
    let o = run(&b, &["check", "--offline"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("s2s_listen is unset"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("bidirectional streams (XEP-0288) are used"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("dialback is the only way"),
        "{}",
        stdout(&o)
    );
    let b = setup(&format!(
        "{EPHEMERAL_PORTS}\ns2s_listen = \"127.0.0.1:0\"\ns2s_hosts = {{ \"other.example\" = \"127.0.0.1:5269\" }}"
    ));
    let o = run(&b, &["check", "--offline"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("bidirectional streams (XEP-0288) are offered"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("s2s_listen 127.0.0.1:0 can be bound"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("other.example reached without DNS"),
        "{}",
        stdout(&o)
    );
}

/// Writes a certificate for `names` valid until `not_after` and its key.
fn certificate(dir: &std::path::Path, stem: &str, names: &[&str], days: i64) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(400);
    params.not_after = now + time::Duration::days(days);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

/// `check` catches what would stop `serve`, or hurt its clients, before it runs.
#[test]
fn check_catches_certificate_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let (good_c, good_k) = certificate(tmp.path(), "good", &["example.com"], 90);
    let (_, other_k) = certificate(tmp.path(), "other", &["example.com"], 90);
    let (wrong_c, wrong_k) = certificate(tmp.path(), "wrong", &["elsewhere.org"], 90);
    let (old_c, old_k) = certificate(tmp.path(), "old", &["example.com"], -3);
    let (soon_c, soon_k) = certificate(tmp.path(), "soon", &["*.com", "example.com"], 5);
    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, "nothing here\n").unwrap();
    let empty = empty.display().to_string();
    let cases: [(&str, &str, &str); 6] = [
        (
            "/nonexistent/cert.pem",
            good_k.as_str(),
            "/nonexistent/cert.pem",
        ),
        (empty.as_str(), good_k.as_str(), "no certificate"),
        (
            good_c.as_str(),
            other_k.as_str(),
            "TLS configuration refused",
        ),
        (
            wrong_c.as_str(),
            wrong_k.as_str(),
            "but the domain is example.com",
        ),
        (old_c.as_str(), old_k.as_str(), "expired"),
        (soon_c.as_str(), soon_k.as_str(), "renew it"),
    ];
    for (cert, key, expect) in cases {
        let b = setup(&format!(
            "tls_certificate = {cert:?}\ntls_key = {key:?}\n{EPHEMERAL_PORTS}"
        ));
        let o = run(&b, &["check", "--offline"], None);
        assert!(!o.status.success(), "{cert}: {}", stdout(&o));
        assert!(stderr(&o).contains(expect), "{cert}: {}", stderr(&o));
    }
    let b = setup(&format!(
        "tls_certificate = {good_c:?}\ntls_key = {good_k:?}"
    ));
    let o = run(&b, &["check", "--offline"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("certificate is for example.com"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("certificate expires in"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn bad_configuration_stops_with_the_key_named() {
    let b = setup("push_max_devices = 0");
    let o = run(&b, &["check", "--offline"], None);
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
        &[
            "user",
            "add",
            "juliet@example.com",
            "--password",
            "pw",
            "--create",
        ],
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
    let o = run(&b, &["user", "import", "--create"], Some(&input));
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
    let mut server = serve(&b);
    let socket = b.dir.path().join("data/admin.sock");
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
    // check works next to the running server (it used to fail: database already open).
    let o = run(&b, &["check", "--offline"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("a server is running"), "{}", stdout(&o));
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

/// Reads from a blocking socket until `marker` (10 s at most).
fn read_until(s: &mut std::net::TcpStream, marker: &str) -> String {
    use std::io::Read;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.contains(marker) {
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "no {marker:?}; got {got:?}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    got
}

/// A configuration serving plaintext PLAIN on loopback ports, with juliet's account.
fn plaintext_server_with_juliet() -> Box {
    let b = setup(&format!(
        "{EPHEMERAL_PORTS}\nc2s_require_encryption = false\nallow_unencrypted_plain_auth = true"
    ));
    let o = run(
        &b,
        &[
            "user",
            "add",
            "juliet@example.com",
            "--password",
            "pw",
            "--create",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    b
}

const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

/// Juliet logged in (PLAIN, pw) and bound on a plaintext stream.
fn juliet_bound(c2s: &str) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(c2s).unwrap();
    s.write_all(HEADER).unwrap();
    read_until(&mut s, "</stream:features>");
    // \0juliet\0pw
    s.write_all(
        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldABwdw==</auth>",
    )
    .unwrap();
    read_until(&mut s, "<success");
    s.write_all(HEADER).unwrap();
    read_until(&mut s, "</stream:features>");
    s.write_all(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        .unwrap();
    read_until(&mut s, "</iq>");
    s
}

/// A newline in a value a peer controls (here a push node) is escaped in the log: it
/// cannot start a forged line for fail2ban or the admin to read.
#[cfg(unix)]
#[test]
fn a_newline_from_a_peer_cannot_forge_a_log_line() {
    let b = plaintext_server_with_juliet();
    let (mut server, c2s, mut log, lines, reader) = serve_logged(&b);
    let mut s = juliet_bound(&c2s);
    s.write_all(b"<iq type='set' id='e'><enable xmlns='urn:xmpp:push:0' jid='push.example.com' node='n1&#10;2026-01-01T00:00:00Z  WARN forged: admin logged in'/></iq>")
        .unwrap();
    let answer = read_until(&mut s, "id='e'");
    assert!(!answer.contains("error"), "{answer}");
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    let _ = reader.join();
    log.extend(lines.try_iter());
    let all = log.join("\n");
    assert!(
        log.iter().any(|l| l.contains("n1\\n2026-01-01")),
        "the node is logged, escaped:\n{all}"
    );
    assert!(
        !log.iter().any(|l| l.starts_with("2026-01-01")),
        "a forged line:\n{all}"
    );
}

/// Starts `serve` with a debug log on loopback ports; returns the child, the c2s
/// address and the log lines so far (the rest arrive on the receiver).
#[cfg(unix)]
fn serve_logged(
    b: &Box,
) -> (
    std::process::Child,
    String,
    Vec<String>,
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    let mut server = cloud_notify()
        .arg("--config")
        .arg(&b.config)
        .arg("serve")
        .env("CLOUD_NOTIFY_LOG", "debug")
        .current_dir(b.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let err = server.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let c2s = loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the server logs that it serves");
        log.push(line.clone());
        if let Some(addr) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("c2s_addr="))
        {
            break addr.to_string();
        }
    };
    (server, c2s, log, lines, reader)
}

/// A failed login is logged with the user tried and the client's address, in a line
/// the shipped fail2ban filter matches, with `<HOST>` the client's address.
#[cfg(unix)]
#[test]
fn failed_logins_are_logged_for_fail2ban() {
    let b = plaintext_server_with_juliet();
    let (mut server, c2s, mut log, lines, reader) = serve_logged(&b);
    let mut s = std::net::TcpStream::connect(&c2s).unwrap();
    s.write_all(HEADER).unwrap();
    read_until(&mut s, "</stream:features>");
    // \0juliet\0wrong
    s.write_all(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldAB3cm9uZw==</auth>")
        .unwrap();
    read_until(&mut s, "not-authorized");
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    let _ = reader.join();
    log.extend(lines.try_iter());
    let filter = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("packaging/fail2ban/cloud-notify.conf"),
    )
    .unwrap();
    let failregex = filter
        .lines()
        .find_map(|l| l.strip_prefix("failregex = "))
        .expect("a failregex")
        .replace("<HOST>", r"(?P<host>[0-9A-Fa-f:.]+)");
    let re = regex::Regex::new(&failregex).unwrap();
    let hits: Vec<&String> = log.iter().filter(|l| re.is_match(l)).collect();
    assert_eq!(
        hits.len(),
        1,
        "one failed login, one match:\n{}",
        log.join("\n")
    );
    let host = &re.captures(hits[0]).unwrap()["host"];
    assert_eq!(host, "127.0.0.1");
    assert!(hits[0].contains("user=\"juliet\""), "{}", hits[0]);
}

/// Scripts set passwords with --password or on standard input; without a terminal and
/// without either, the command says what it needs (it used to fail with "No such device
/// or address").
#[test]
fn passwords_from_the_command_line_or_standard_input() {
    let b = setup("");
    let o = run(
        &b,
        &["user", "add", "juliet@example.com", "--create"],
        Some("pw1\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&b, &["user", "add", "romeo@example.com"], None);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("a password is needed"),
        "{}",
        stderr(&o)
    );
    let o = run(
        &b,
        &["user", "passwd", "juliet@example.com", "--password", "pw2"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&b, &["user", "passwd", "juliet@example.com"], Some("pw3\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("password of juliet@example.com changed"));
}

/// Run from another directory (a relative data_dir that is not there), the user
/// commands refuse instead of creating an empty database and printing nothing.
#[test]
fn user_commands_refuse_a_missing_database() {
    let b = setup("");
    let data = b.dir.path().join("data");
    for args in [
        &["user", "list"][..],
        &["user", "del", "juliet@example.com"],
        &["user", "add", "juliet@example.com", "--password", "pw"],
    ] {
        let o = run(&b, args, None);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains("no database at"), "{}", stderr(&o));
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
}

/// `user del` on a logged-in account ends its sessions at once: the deleted account
/// cannot go on sending.
#[cfg(unix)]
#[test]
fn deleting_an_account_ends_its_sessions() {
    let b = plaintext_server_with_juliet();
    let (mut server, c2s, _log, _lines, reader) = serve_logged(&b);
    let mut s = juliet_bound(&c2s);
    let o = run(&b, &["user", "del", "juliet@example.com"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let rest = read_until(&mut s, "</stream:stream>");
    assert!(rest.contains("not-authorized"), "{rest}");
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    let _ = reader.join();
}

/// Whether a TLS handshake with the direct-TLS listener succeeds for a client that
/// trusts only `cert_pem`.
#[cfg(unix)]
fn handshake_trusting(addr: &str, cert_pem: &str) -> bool {
    use rustls::pki_types::pem::PemObject;
    use std::io::Read;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("example.com").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    if tls.write_all(HEADER).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    matches!(tls.read(&mut buf), Ok(n) if n > 0)
}

/// SIGHUP reloads the certificate (used from the next handshake, nobody dropped) and
/// names the settings that need a restart; it no longer kills the server.
#[cfg(unix)]
#[test]
fn sighup_reloads_the_certificate_and_names_what_needs_a_restart() {
    let b = setup("");
    let (c1, k1) = certificate(b.dir.path(), "one", &["example.com"], 90);
    let (_, _) = certificate(b.dir.path(), "two", &["example.com"], 90);
    let base = format!(
        "domain = \"example.com\"\ndata_dir = {:?}\nscram_iterations = 4096\n{EPHEMERAL_PORTS}\n\
         c2s_direct_tls_listen = \"127.0.0.1:0\"\ntls_certificate = {c1:?}\ntls_key = {k1:?}\n",
        b.dir.path().join("data").display().to_string()
    );
    std::fs::write(&b.config, &base).unwrap();
    let (mut server, _c2s, mut log, lines, reader) = serve_logged(&b);
    let direct = loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the direct TLS listener is logged");
        log.push(line.clone());
        if let Some(a) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("direct_tls_addr="))
        {
            break a.to_string();
        }
    };
    let two = std::fs::read_to_string(b.dir.path().join("two.crt")).unwrap();
    assert!(!handshake_trusting(&direct, &two), "serves certificate one");
    // The files are replaced (a renewal), and a setting that needs a restart changes.
    std::fs::copy(b.dir.path().join("two.crt"), b.dir.path().join("one.crt")).unwrap();
    std::fs::copy(b.dir.path().join("two.key"), b.dir.path().join("one.key")).unwrap();
    std::fs::write(
        &b.config,
        format!("{base}push_max_publish_options_size = 8192\n"),
    )
    .unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &server.id().to_string()])
        .status();
    let mut saw_restart_note = false;
    loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the reload is logged");
        saw_restart_note |=
            line.contains("next restart") && line.contains("push_max_publish_options_size");
        if line.contains("SIGHUP: certificate reloaded") {
            break;
        }
    }
    assert!(handshake_trusting(&direct, &two), "serves certificate two");
    let restart_note = lines
        .recv_timeout(std::time::Duration::from_secs(20))
        .unwrap_or_default();
    assert!(
        saw_restart_note || restart_note.contains("push_max_publish_options_size"),
        "{restart_note}"
    );
    assert!(server.try_wait().unwrap().is_none(), "still running");
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    assert!(server.wait().unwrap().success());
    let _ = reader.join();
}

// ------------------------------------------------------------------ push and status

const FORM: &str = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>the-secret</value></field></x>";

/// Writes registrations for `user` straight into the file (no server may hold it):
/// `(app server JID, node, client)`, enabled in this order.
fn seed_registrations(b: &Box, user: &str, regs: &[(&str, Option<&str>, &str)]) {
    use cloud_notify::store::{ErrorNote, RegistrationRecord, schema};
    let data = b.dir.path().join("data");
    let db = cloud_notify::store::open_database(&data, 1 << 20).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(schema::PUSH_REGISTRATIONS).unwrap();
        for (i, (jid, node, client)) in regs.iter().enumerate() {
            let record = RegistrationRecord {
                jid: jid.to_string(),
                node: node.map(str::to_string),
                publish_options: Some(FORM.into()),
                enabled_at_us: 1_700_000_000_000_000 + i as u64,
                client: client.to_string(),
                language: None,
                error_count: 2,
                last_success: Some(1_700_000_100),
                // An app server's text with a newline and a terminal escape.
                last_error: Some(ErrorNote {
                    at: 1_700_000_200,
                    error_type: "wait".into(),
                    condition: "resource-constraint".into(),
                    text: Some("slow\n\u{1b}[2Jdown".into()),
                }),
                last_timeout: None,
                extensions: None,
                last_s2s_failure: None,
            };
            let id = format!("{jid}<{}", node.unwrap_or(""));
            t.insert((user, id.as_str()), record.encode().unwrap().as_slice())
                .unwrap();
        }
    }
    txn.commit().unwrap();
}

fn add_juliet_with_registrations(b: &Box) {
    let o = run(
        b,
        &[
            "user",
            "add",
            "juliet@example.com",
            "--password",
            "pw",
            "--create",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    seed_registrations(
        b,
        "juliet",
        &[
            ("push.example.com", Some("n1"), "phone"),
            ("push.example.net", Some("n1"), "tablet"),
            ("push.example.com", None, "laptop"),
        ],
    );
}

/// What `push list` and `push remove` print, the same with and without a server.
fn list_and_remove(b: &Box) {
    let o = run(b, &["push", "list", "juliet@example.com"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("juliet@example.com: 3 push registrations (push_max_devices 5)\n"),
        "{out}"
    );
    assert!(out.contains("\npush.example.com node 'n1'\n"), "{out}");
    assert!(out.contains("\npush.example.com (no node)\n"), "{out}");
    assert!(
        out.contains("  enabled:          2023-11-14 22:13:20 UTC ("),
        "{out}"
    );
    assert!(out.contains(" by 'tablet'\n"), "{out}");
    assert!(
        out.contains("  last success:     2023-11-14 22:15:00 UTC ("),
        "{out}"
    );
    assert!(
        out.contains("  last error:       2023-11-14 22:16:40 UTC (",),
        "{out}"
    );
    assert!(
        out.contains("wait/resource-constraint 'slow\\n\\u{1b}[2Jdown'"),
        "peer text escaped: {out}"
    );
    assert!(
        !out.contains('\u{1b}'),
        "no raw escape reaches the terminal"
    );
    assert!(out.contains("  errors in a row:  2 (removed at push_max_errors, 16)"));
    assert!(out.contains("bytes (not shown)") && !out.contains("the-secret"));
    assert!(out.contains("removed in the last 30 days: none"), "{out}");
    // The node alone is ambiguous: refused, naming the app servers.
    let o = run(b, &["push", "remove", "juliet", "n1"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("(push.example.com, push.example.net): name one with --jid"),
        "{}",
        stderr(&o)
    );
    let o = run(
        b,
        &[
            "push",
            "remove",
            "juliet",
            "n1",
            "--jid",
            "push.example.net",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "removed push.example.net node 'n1' of juliet@example.com"
    );
    // "" names the registration without a node.
    let o = run(
        b,
        &["push", "remove", "juliet", "", "--jid", "push.example.com"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "removed push.example.com (no node) of juliet@example.com"
    );
    let o = run(b, &["push", "remove", "juliet", "gone"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no push registration matches"));
    let o = run(b, &["push", "list", "romeo@example.com"], None);
    assert!(stderr(&o).contains("no such user: romeo@example.com"));
    let o = run(b, &["push", "list", "juliet"], None);
    let out = stdout(&o);
    assert!(
        out.starts_with("juliet@example.com: 1 push registration "),
        "{out}"
    );
    assert!(
        out.contains("removed in the last 30 days: 2 (newest first)"),
        "{out}"
    );
    assert!(
        out.contains("push.example.com (no node)\n  why:              removed by the admin\n"),
        "{out}"
    );
    assert!(
        out.contains("push.example.net node 'n1'\n  why:              removed by the admin\n"),
        "{out}"
    );
    // The removal keeps the health it had.
    assert!(out.contains("  errors in a row:  2\n"), "{out}");
}

#[cfg(unix)]
#[test]
fn push_list_and_remove_without_a_server_and_what_needs_one() {
    let b = setup("");
    // Like the user commands: no database is created by a command run from elsewhere.
    for args in [
        &["push", "list", "juliet"][..],
        &["push", "remove", "juliet", "n1"],
    ] {
        let o = run(&b, args, None);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains("no database at"), "{}", stderr(&o));
        assert!(!b.dir.path().join("data").exists(), "{args:?}");
    }
    add_juliet_with_registrations(&b);
    list_and_remove(&b);
    let o = run(&b, &["push", "test", "juliet"], None);
    assert_eq!(o.status.code(), Some(3), "not running: exit 3");
    assert!(
        stdout(&o).starts_with("cloud-notify is not running"),
        "{}",
        stdout(&o)
    );
    let o = run(&b, &["status"], None);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stdout(&o).starts_with("cloud-notify is not running (no server answers on "),
        "{}",
        stdout(&o)
    );
    // D7: the removal log goes with the account.
    let o = run(&b, &["user", "del", "juliet"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&b, &["user", "add", "juliet", "--password", "pw"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&b, &["push", "list", "juliet"], None);
    let out = stdout(&o);
    assert!(out.contains(": 0 push registrations"), "{out}");
    assert!(out.contains("removed in the last 30 days: none"), "{out}");
}

/// Starts `serve` and waits until it serves (its admin socket is bound before it says
/// so).
#[cfg(unix)]
fn serve(b: &Box) -> std::process::Child {
    serve_logged(b).0
}

#[cfg(unix)]
#[test]
fn push_list_remove_and_status_while_the_server_runs() {
    let b = setup("c2s_listen = \"127.0.0.1:0\"\ncomponent_listen = \"127.0.0.1:0\"");
    add_juliet_with_registrations(&b);
    let mut server = serve(&b);
    list_and_remove(&b);
    let o = run(&b, &["status"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "cloud-notify {} is running (pid {})",
            env!("CARGO_PKG_VERSION"),
            server.id()
        )),
        "{out}"
    );
    assert!(lines[1].starts_with("started:        "), "{out}");
    assert_eq!(lines[2], "sessions:       0 connected, 0 hibernated");
    assert!(
        lines[3].starts_with("registrations:  1 (accounts: 1; users with push state in memory: "),
        "{out}"
    );
    assert_eq!(
        lines[4],
        "publishes, last hour: 0 success, 0 error, 0 timeout, 0 s2s failure"
    );
    assert!(
        lines[5].starts_with("memory:         ") && lines[5].contains(" MiB resident (VmRSS; "),
        "{out}"
    );
    // No session: nothing in sessions or queues; the user actors in memory count.
    assert!(
        lines[6].starts_with("memory by kind: users ")
            && lines[6].ends_with(", sessions 0.0 KiB, queues 0.0 KiB (estimates)"),
        "{out}"
    );
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    assert!(server.wait().unwrap().success());
    let o = run(&b, &["status"], None);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    // What the server removed is in the file for the next direct use.
    let o = run(&b, &["push", "list", "juliet"], None);
    assert!(
        stdout(&o).contains("removed in the last 30 days: 2 (newest first)"),
        "{}",
        stdout(&o)
    );
}

/// Waits for a log line containing `what`; returns it.
#[cfg(unix)]
fn wait_for_line(
    lines: &std::sync::mpsc::Receiver<String>,
    log: &mut Vec<String>,
    what: &str,
) -> String {
    loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no log line with {what:?}:\n{}", log.join("\n")));
        log.push(line.clone());
        if line.contains(what) {
            return line;
        }
    }
}

/// Whether the server speaks on a new connection (a refused one is closed at accept).
fn answers(c2s: &str) -> bool {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(c2s).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    if s.write_all(HEADER).is_err() {
        return false;
    }
    let mut buf = [0u8; 256];
    matches!(s.read(&mut buf), Ok(n) if n > 0)
}

/// SIGHUP applies a lowered c2s_max_connections at once: the connections open keep
/// going, the next one past the new limit is refused; each applied change is logged with
/// its old and new value, and a key that needs a restart is named as such.
#[cfg(unix)]
#[test]
fn sighup_applies_connection_limits_and_keeps_open_connections() {
    let b = plaintext_server_with_juliet();
    let base = std::fs::read_to_string(&b.config).unwrap();
    std::fs::write(&b.config, format!("{base}\nc2s_max_connections = 10\n")).unwrap();
    let (mut server, c2s, mut log, lines, reader) = serve_logged(&b);
    let mut first = juliet_bound(&c2s);
    let mut second = juliet_bound(&c2s);
    assert!(answers(&c2s), "a third connection is under 10");

    std::fs::write(
        &b.config,
        format!(
            "{base}\nc2s_max_connections = 2\npush_max_publish_options_size = 8192\noffline_max_messages = 5\n"
        ),
    )
    .unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &server.id().to_string()])
        .status();
    wait_for_line(
        &lines,
        &mut log,
        "SIGHUP: c2s_max_connections 10 -> 2 (applied)",
    );
    // The other limits are applied the same way (their effect: tests/host/reload.rs).
    wait_for_line(
        &lines,
        &mut log,
        "SIGHUP: offline_max_messages 1000 -> 5 (applied)",
    );
    let restart = wait_for_line(&lines, &mut log, "next restart");
    assert!(
        restart.contains("push_max_publish_options_size"),
        "{restart}"
    );
    assert!(
        !restart.contains("c2s_max_connections"),
        "an applied key is not also waiting for a restart: {restart}"
    );

    assert!(!answers(&c2s), "past the lowered limit: refused");
    let refused = wait_for_line(&lines, &mut log, "connection limit reached");
    assert!(refused.contains("c2s_max_connections"), "{refused}");
    // The two open before the reload are still served.
    for (s, id) in [(&mut first, "p1"), (&mut second, "p2")] {
        s.write_all(
            format!("<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>").as_bytes(),
        )
        .unwrap();
        read_until(s, &format!("id='{id}'"));
    }

    // Raised again: a new connection is served at once.
    std::fs::write(&b.config, format!("{base}\nc2s_max_connections = 3\n")).unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &server.id().to_string()])
        .status();
    wait_for_line(
        &lines,
        &mut log,
        "SIGHUP: c2s_max_connections 2 -> 3 (applied)",
    );
    assert!(answers(&c2s), "under the raised limit");

    let _ = Command::new("kill").arg(server.id().to_string()).status();
    assert!(server.wait().unwrap().success());
    let _ = reader.join();
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `check`'s network half, through the same resolver (`s2s_dns_server`, here a DNS
/// server of the test's) and `s2s_hosts` as the server: our domain's missing records,
/// an app server's domain reached over STARTTLS (a real server, whose self-signed
/// certificate is not valid for it: accepted without `s2s_secure_auth`), one with no
/// DNS record and one that refuses the connection; read from the file, then from the
/// running server; `--offline` skips all of it.
#[cfg(unix)]
#[test]
fn check_reaches_the_app_servers_domains_as_a_link_would() {
    use hickory_resolver::proto::rr::rdata::{A as ARecord, SRV};
    use hickory_resolver::proto::rr::{RData, RecordType};
    let app_port = closed_port();
    let app_dir = tempfile::tempdir().unwrap();
    let app = Box {
        config: app_dir.path().join("app.toml"),
        dir: app_dir,
    };
    std::fs::write(
        &app.config,
        format!(
            "domain = \"push.reach.test\"\ndata_dir = {:?}\n{EPHEMERAL_PORTS}\ns2s_listen = \"127.0.0.1:{app_port}\"\n",
            app.dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let mut app_server = serve(&app);
    let mut zone = dns::Zone::new();
    zone.insert(
        ("_xmpp-server._tcp.push.reach.test.".into(), RecordType::SRV),
        vec![RData::SRV(SRV::new(
            0,
            0,
            app_port,
            dns::name("xmpp.reach.test."),
        ))],
    );
    zone.insert(
        ("xmpp.reach.test.".into(), RecordType::A),
        vec![RData::A(ARecord::new(127, 0, 0, 1))],
    );
    let dns = dns::serve("127.0.0.8", zone);
    let refused = closed_port();
    let b = setup(&format!(
        "{EPHEMERAL_PORTS}\ns2s_timeout = 10\ns2s_dns_server = \"{dns}\"\ns2s_hosts = {{ \"refused.test\" = \"127.0.0.1:{refused}\" }}\n"
    ));
    let o = run(
        &b,
        &[
            "user",
            "add",
            "juliet@example.com",
            "--password",
            "pw",
            "--create",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    seed_registrations(
        &b,
        "juliet",
        &[
            ("push.reach.test", Some("n1"), "phone"),
            ("gone.test", Some("n2"), "tablet"),
            ("app@refused.test", None, "laptop"),
        ],
    );
    let expect = |o: &Output| {
        assert_eq!(o.status.code(), Some(1), "{}", stdout(o));
        let err = stderr(o);
        for line in [
            "2 problem(s) found",
            "# ok:   our domain example.com has no _xmpp-server._tcp or _xmpps-server._tcp SRV record and no A/AAAA record: other servers cannot connect to us",
            &format!(
                "# ok:   app server domain push.reach.test (1 registration): reached at 127.0.0.1:{app_port} (STARTTLS); its certificate is not valid for push.reach.test, which our links accept"
            ),
            "# FAIL: app server domain gone.test (1 registration): not reached: no DNS record",
            &format!(
                "# FAIL: app server domain refused.test (1 registration): not reached at 127.0.0.1:{refused} (STARTTLS): connection failed: "
            ),
        ] {
            assert!(err.contains(line), "{line}\nnot in:\n{err}");
        }
    };
    expect(&run(&b, &["check"], None));
    let o = run(&b, &["check", "--offline"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("app server domain"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("our domain"), "{}", stdout(&o));
    // Next to the running server, which holds the file: asked through its admin socket.
    let mut server = serve(&b);
    expect(&run(&b, &["check"], None));
    for s in [&mut server, &mut app_server] {
        let _ = Command::new("kill").arg(s.id().to_string()).status();
        assert!(s.wait().unwrap().success());
    }
}
