//! Operating a running server: `push test` through the real command line and
//! the admin socket, answered by the scripted app server; `push list` with what the
//! module holds in memory; the OpenMetrics endpoint scraped over HTTP.

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::Component;
use super::{APP, FORM, TestServer};

/// Runs the command line tool against this server (its data directory, so its admin
/// socket), off the actor thread; 30 s at most.
pub(super) async fn cli(t: &TestServer, args: &[&str]) -> Output {
    let config = t.cfg.data_dir.join("cli.toml");
    std::fs::write(
        &config,
        format!(
            "domain = {:?}\ndata_dir = {:?}\npush_response_timeout = {}\n",
            t.cfg.domain,
            t.cfg.data_dir.display().to_string(),
            t.cfg.push_response_timeout.as_secs_f64()
        ),
    )
    .unwrap();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let run = tokio::task::spawn_blocking(move || {
        let bin = env!("CARGO_BIN_EXE_cloud-notify");
        // cross/test.sh runs the binary under qemu through this variable.
        let mut c = match std::env::var("CLOUD_NOTIFY_TEST_RUNNER") {
            Ok(runner) if !runner.trim().is_empty() => {
                let mut parts = runner.split_whitespace();
                let mut c = Command::new(parts.next().unwrap_or_default());
                c.args(parts).arg(bin);
                c
            }
            _ => Command::new(bin),
        };
        c.arg("--config").arg(config).args(args).output().unwrap()
    });
    tokio::time::timeout(super::patience::wait(Duration::from_secs(30)), run)
        .await
        .expect("the command ends in time")
        .unwrap()
}

pub(super) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The node a publish is for.
fn node_of(publish: &xmpp_parsers::minidom::Element) -> String {
    publish
        .children()
        .flat_map(|p| p.children())
        .find(|c| c.name() == "publish")
        .and_then(|p| p.attr("node"))
        .unwrap_or_default()
        .to_string()
}

#[actix_rt::test]
async fn push_test_through_the_command_line_is_answered_by_the_app_server() {
    let t = TestServer::start(|c| c.push_response_timeout = Duration::from_secs(1)).await;
    let mut app = Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    for (id, node) in [("e1", "n1"), ("e2", "n2")] {
        let r = juliet
            .iq(&format!("<iq type='set' id='{id}'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='{node}'>{FORM}</enable></iq>"))
            .await;
        assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    }
    // Both registrations: the ping publish goes to each; one succeeds, one fails.
    let (run, (first, second)) = tokio::join!(cli(&t, &["push", "test", "juliet"]), async {
        let first = app.next().await;
        let second = app.next().await;
        for p in [&first, &second] {
            let xml = String::from(p);
            assert!(!xml.contains("New Message!"), "a ping has no body: {xml}");
            assert!(xml.contains("the-secret"), "publish-options as usual");
            if node_of(p) == "n1" {
                app.answer_result(p).await;
            } else {
                app.answer_error(p, "cancel", "item-not-found").await;
            }
        }
        (first, second)
    });
    let mut nodes = [node_of(&first), node_of(&second)];
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2"]);
    let out = text(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(1),
        "not every answer a success: {out}"
    );
    assert!(
        out.starts_with("test push to juliet@localhost: 2 registrations\n"),
        "{out}"
    );
    assert!(
        out.contains("push.localhost node 'n1' (enabled by 'phone'): success in "),
        "{out}"
    );
    assert!(
        out.contains(
            "push.localhost node 'n2' (enabled by 'phone'): error cancel/item-not-found in "
        ),
        "{out}"
    );
    assert!(out.contains(" ms\n"), "{out}");
    // One registration by its node; the app server stays silent.
    let (run, _) = tokio::join!(cli(&t, &["push", "test", "juliet", "n1"]), async {
        let p = app.next().await;
        assert_eq!(node_of(&p), "n1");
    });
    let out = text(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(
        out.contains("push.localhost node 'n1' (enabled by 'phone'): no answer within 1 s (push_response_timeout)"),
        "{out}"
    );
    let run = cli(&t, &["push", "test", "juliet", "n9"]).await;
    assert_eq!(run.status.code(), Some(1));
    assert!(text(&run.stderr).contains("no push registration matches"));
    // The ledger as the module holds it: the answers are there before any write, and
    // the session is linked to the registration it enabled last.
    let run = cli(&t, &["push", "list", "juliet"]).await;
    let out = text(&run.stdout);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let n1 = out
        .split("\npush.localhost node 'n1'\n")
        .nth(1)
        .and_then(|s| s.split("\n\n").next())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(n1.contains("  sessions linked:  0 (0 hibernated)"), "{out}");
    assert!(!n1.contains("last success:     never"), "{out}");
    assert!(!n1.contains("last timeout:     never"), "{out}");
    assert!(n1.contains("last error:       never"), "{out}");
    let n2 = out
        .split("\npush.localhost node 'n2'\n")
        .nth(1)
        .and_then(|s| s.split("\n\n").next())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(n2.contains("  sessions linked:  1 (0 hibernated)"), "{out}");
    assert!(n2.contains(": cancel/item-not-found\n"), "{out}");
    assert!(n2.contains("  errors in a row:  1 "), "{out}");
    // Removed by the admin: the session linked to it loses its link (D8).
    let run = cli(&t, &["push", "remove", "juliet", "n2"]).await;
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stats = t
        .server
        .as_ref()
        .unwrap()
        .router
        .send(cloud_notify::push::GetUserStats {
            user: "juliet".into(),
        })
        .await
        .unwrap()
        .expect("juliet's push state is in memory");
    assert_eq!((stats.registrations, stats.linked_sessions), (1, 0));
    let run = cli(&t, &["push", "list", "juliet"]).await;
    let out = text(&run.stdout);
    assert!(
        out.contains("push.localhost node 'n2'\n  why:              removed by the admin\n"),
        "{out}"
    );
    assert!(
        out.contains("cancel/item-not-found"),
        "the removal keeps its last error: {out}"
    );
    // A client's own disable is logged with its resource.
    let r = juliet
        .iq(&format!(
            "<iq type='set' id='d1'><disable xmlns='urn:xmpp:push:0' jid='{APP}' node='n1'/></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    let run = cli(&t, &["push", "list", "juliet"]).await;
    let out = text(&run.stdout);
    assert!(
        out.starts_with("juliet@localhost: 0 push registrations"),
        "{out}"
    );
    assert!(
        out.contains(
            "push.localhost node 'n1'\n  why:              disabled by the client (phone)\n"
        ),
        "{out}"
    );
    // D7: the removal log goes with the account, on a running server too.
    juliet.close().await;
    let run = cli(&t, &["user", "del", "juliet"]).await;
    assert!(run.status.success(), "{}", text(&run.stderr));
    let run = cli(&t, &["user", "add", "juliet", "--password", "pw"]).await;
    assert!(run.status.success(), "{}", text(&run.stderr));
    let run = cli(&t, &["push", "list", "juliet"]).await;
    let out = text(&run.stdout);
    assert!(out.contains("removed in the last 30 days: none"), "{out}");
}

/// One scrape: the status line and the body.
pub(super) async fn scrape(addr: std::net::SocketAddr, request: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(super::patience::deadline(), s.read_to_end(&mut got))
        .await
        .expect("an answer in time")
        .unwrap();
    let got = String::from_utf8(got).expect("UTF-8");
    let (head, body) = got.split_once("\r\n\r\n").expect("a head");
    (head.to_string(), body.to_string())
}

/// Parses OpenMetrics text: every sample line, `name{labels}` → value, checking the
/// syntax as it goes (each family declared with TYPE, `# EOF` last).
pub(super) fn parse_openmetrics(body: &str) -> HashMap<String, f64> {
    let mut families = Vec::new();
    let mut samples = HashMap::new();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "{body}");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut w = rest.splitn(3, ' ');
            let (kind, name) = (w.next().unwrap(), w.next().unwrap());
            assert!(matches!(kind, "TYPE" | "HELP" | "UNIT"), "{line}");
            if kind == "TYPE" {
                let t = w.next().unwrap();
                assert!(
                    ["counter", "gauge", "histogram", "info"].contains(&t),
                    "{line}"
                );
                families.push(name.to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(
            families.iter().any(|f| name.starts_with(f.as_str())),
            "sample without a TYPE: {line}"
        );
        if let Some(labels) = series.split_once('{').map(|(_, l)| l) {
            assert!(labels.ends_with('}'), "{line}");
        }
        samples.insert(series.to_string(), value);
    }
    samples
}

#[actix_rt::test]
async fn metrics_count_a_publish_by_outcome_and_app_server_and_name_no_user() {
    let t = TestServer::start(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = t.server.as_ref().unwrap().metrics_addr.expect("metrics on");
    let mut app = Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    let r = juliet
        .iq(&format!("<iq type='set' id='e1'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='n1'>{FORM}</enable></iq>"))
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    juliet.close().await;
    let mut romeo = t.login("romeo", "desk").await;
    let get =
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: application/openmetrics-text\r\n\r\n";
    let (head, body) = scrape(addr, get).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    let before = parse_openmetrics(&body);
    let success =
        "cloud_notify_push_publishes_total{outcome=\"success\",app_server=\"push.localhost\"}";
    assert_eq!(before.get(success), None, "no publish yet: {body}");
    romeo
        .send("<message type='chat' to='juliet@localhost' id='m1'><body>hi</body></message>")
        .await;
    let publish = app.next().await;
    app.answer_result(&publish).await;
    // The answer is counted as the push module handles it: scrape until it shows.
    let deadline = std::time::Instant::now() + super::patience::deadline();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (body, m) = loop {
        let (_, body) = scrape(addr, get).await;
        let m = parse_openmetrics(&body);
        if m.get(success) == Some(&1.0) {
            break (body, m);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the publish was not counted: {body}"
        );
        tick.tick().await;
    };
    for outcome in ["error", "timeout"] {
        assert_eq!(
            m.get(&format!("cloud_notify_push_publishes_total{{outcome=\"{outcome}\",app_server=\"push.localhost\"}}")),
            None,
            "{body}"
        );
    }
    assert_eq!(
        m.get("cloud_notify_push_publish_latency_seconds_count"),
        Some(&1.0)
    );
    assert_eq!(m.get("cloud_notify_push_publishes_pending"), Some(&0.0));
    assert_eq!(
        m.get("cloud_notify_sessions{state=\"connected\"}"),
        Some(&1.0),
        "romeo: {body}"
    );
    assert_eq!(
        m.get("cloud_notify_sessions{state=\"hibernated\"}"),
        Some(&0.0)
    );
    assert_eq!(m.get("cloud_notify_push_registrations"), Some(&1.0));
    assert_eq!(m.get("cloud_notify_accounts"), Some(&2.0));
    assert!(
        m.get("cloud_notify_store_commit_duration_seconds_count") >= Some(&2.0),
        "{body}"
    );
    assert!(
        m.get("cloud_notify_store_batch_size_count") >= Some(&2.0),
        "{body}"
    );
    assert!(
        m.get("cloud_notify_process_memory_bytes{kind=\"resident\"}") > Some(&0.0),
        "{body}"
    );
    assert!(m.contains_key("cloud_notify_uptime_seconds"), "{body}");
    assert_eq!(
        m.get(&format!(
            "cloud_notify_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        Some(&1.0),
        "{body}"
    );
    // No user anywhere: not in a label, not in a help text.
    for name in ["juliet", "romeo", "@localhost", "phone", "desk", "n1"] {
        assert!(!body.contains(name), "{name} in the metrics:\n{body}");
    }
    // The same publish in status, through the command line.
    let run = cli(&t, &["status"]).await;
    let out = text(&run.stdout);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        out.contains("\nsessions:       1 connected, 0 hibernated\n"),
        "{out}"
    );
    assert!(
        out.contains("\npublishes, last hour: 1 success, 0 error, 0 timeout, 0 s2s failure\n"),
        "{out}"
    );
    // Anything but GET /metrics.
    let (head, _) = scrape(addr, "GET / HTTP/1.1\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = scrape(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    let (head, _) = scrape(addr, "\u{7f}garbage\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
}

/// D7 with the account's actor running: the logged-in session ends, and the
/// registration it held in memory is gone for good (no later ledger flush writes it
/// back), also after the account is made again.
#[actix_rt::test]
async fn deleting_a_logged_in_account_drops_its_registrations_for_good() {
    let t = TestServer::start(|_| {}).await;
    let mut app = Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    let r = juliet
        .iq(&format!("<iq type='set' id='e1'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='n1'>{FORM}</enable></iq>"))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    // A publish answered with success changes the ledger held in memory.
    let (run, _) = tokio::join!(cli(&t, &["push", "test", "juliet"]), async {
        let p = app.next().await;
        app.answer_result(&p).await;
    });
    assert!(run.status.success(), "{}", text(&run.stdout));
    let run = cli(&t, &["user", "del", "juliet"]).await;
    assert!(run.status.success(), "{}", text(&run.stderr));
    let end = juliet.next_or_error().await;
    assert!(end.contains("not-authorized"), "{end}");
    let run = cli(&t, &["user", "add", "juliet", "--password", "pw"]).await;
    assert!(run.status.success(), "{}", text(&run.stderr));
    let run = cli(&t, &["push", "list", "juliet"]).await;
    let out = text(&run.stdout);
    assert!(
        out.starts_with("juliet@localhost: 0 push registrations"),
        "{out}"
    );
    assert!(out.contains("removed in the last 30 days: none"), "{out}");
}

/// `push_max_active_users` bounds the user actors in memory: past it, a stanza for
/// another user bounces with `resource-constraint` and that user's login is refused;
/// users already in memory go on.
#[actix_rt::test]
async fn past_push_max_active_users_other_users_are_refused_not_queued() {
    let t = TestServer::start(|c| c.push_max_active_users = 1).await;
    let mut juliet = t.login("juliet", "phone").await;
    juliet
        .send("<message to='romeo@localhost' id='m1' type='chat'><body>hi</body></message>")
        .await;
    let bounce = juliet.next().await;
    assert_eq!(
        bounce.attr("type"),
        Some("error"),
        "{}",
        String::from(&bounce)
    );
    assert!(
        String::from(&bounce).contains("resource-constraint"),
        "{}",
        String::from(&bounce)
    );
    let romeo = super::client::try_login(&t, "romeo", "romeo-pw", "desk").await;
    assert!(
        romeo.is_err_and(|e| e.contains("resource-constraint")),
        "romeo's bind is refused"
    );
    // juliet's own account is in memory: her stanzas still flow.
    let r = juliet
        .iq("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"));
}

/// D7: deleting an account on a running server deletes its message archive; the peer's
/// archive keeps its own side.
#[actix_rt::test]
async fn deleting_an_account_deletes_its_archive() {
    let t = TestServer::start(|_| {}).await;
    let mut juliet = t.login("juliet", "phone").await;
    juliet.send("<presence/>").await;
    juliet
        .iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>kept by romeo</body></message>")
        .await;
    juliet.until("message").await;
    let mam = "<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'/></iq>";
    juliet.send(mam).await;
    let (_, before) = juliet.until("iq").await;
    assert_eq!(before.len(), 1, "archived before the deletion");
    juliet.close().await;
    let run = cli(&t, &["user", "del", "juliet"]).await;
    assert!(run.status.success(), "{}", text(&run.stderr));
    let run = cli(&t, &["user", "add", "juliet", "--password", "juliet-pw"]).await;
    assert!(run.status.success(), "{}", text(&run.stderr));
    let mut juliet = t.login("juliet", "phone").await;
    juliet.send(mam).await;
    let (fin, before) = juliet.until("iq").await;
    assert_eq!(fin.attr("type"), Some("result"));
    assert!(
        before.is_empty(),
        "{:?}",
        before.iter().map(String::from).collect::<Vec<_>>()
    );
    romeo.send(mam).await;
    let (_, before) = romeo.until("iq").await;
    assert_eq!(before.len(), 1, "romeo's side stays");
}

/// Scrapes until `done` holds for the samples (10 s at most); returns them.
pub(super) async fn scrape_until(
    addr: std::net::SocketAddr,
    what: &str,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let get = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let deadline = std::time::Instant::now() + super::patience::deadline();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        let (_, body) = scrape(addr, get).await;
        let m = parse_openmetrics(&body);
        if done(&m) {
            return m;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {body}");
        tick.tick().await;
    }
}

const QUEUES: &str = "cloud_notify_memory_bytes{kind=\"queues\"}";
const SESSIONS: &str = "cloud_notify_memory_bytes{kind=\"sessions\"}";
const USERS: &str = "cloud_notify_memory_bytes{kind=\"users\"}";
const HIBERNATED: &str = "cloud_notify_sessions{state=\"hibernated\"}";

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(-1.0)
}

/// The memory by kind moves with what the server holds: messages queued for a
/// hibernated session grow "queues" by at least their size, and when the session ends
/// (its hibernation times out, the messages go to offline storage) "queues" and
/// "sessions" come back down. `status` shows the same figures.
#[actix_rt::test]
async fn memory_by_kind_follows_the_queued_stanzas_and_returns_when_the_session_ends() {
    let t = TestServer::start(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.smacks_hibernation_time = Duration::from_secs(3);
    })
    .await;
    let addr = t.server.as_ref().unwrap().metrics_addr.expect("metrics on");
    let empty = scrape_until(addr, "no user yet", |m| get(m, USERS) == 0.0).await;
    assert_eq!(get(&empty, SESSIONS), 0.0);
    assert_eq!(get(&empty, QUEUES), 0.0);
    let mut phone = t.login("juliet", "phone").await;
    super::enable_sm(&mut phone).await;
    let mut romeo = t.login("romeo", "desk").await;
    phone.drop_connection().await;
    let before = scrape_until(addr, "the phone's session hibernates", |m| {
        get(m, HIBERNATED) == 1.0
    })
    .await;
    assert!(get(&before, USERS) > 0.0, "two user actors: {before:?}");
    assert!(get(&before, SESSIONS) > 0.0, "two sessions: {before:?}");
    let body = "x".repeat(1000);
    for i in 0..20 {
        romeo
            .send(&format!(
                "<message type='chat' id='q{i}' to='juliet@localhost/phone'><body>{body}</body></message>"
            ))
            .await;
    }
    let queued = get(&before, QUEUES) + 20.0 * 1000.0;
    let during = scrape_until(addr, "the queued messages are counted", |m| {
        get(m, QUEUES) >= queued
    })
    .await;
    let run = cli(&t, &["status"]).await;
    let out = text(&run.stdout);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let line = out
        .lines()
        .find(|l| l.starts_with("memory by kind: users "))
        .unwrap_or_else(|| panic!("{out}"));
    let kib = |kind: &str| -> f64 {
        let rest = line.split(&format!("{kind} ")).nth(1).unwrap_or("");
        rest.split(' ').next().unwrap_or("").parse().unwrap_or(-1.0)
    };
    assert!(kib("queues") >= 20.0 * 1000.0 / 1024.0, "{line}");
    assert!(kib("sessions") > 0.0 && kib("users") > 0.0, "{line}");
    // The hibernation times out: the session and its queue leave memory.
    let after = scrape_until(addr, "the session ended and its queue left", |m| {
        get(m, HIBERNATED) == 0.0 && get(m, QUEUES) == 0.0
    })
    .await;
    assert!(
        get(&after, SESSIONS) < get(&during, SESSIONS),
        "one session fewer: {after:?}"
    );
    romeo.close().await;
}

/// A push registration's memory, its publish-options form included, counts under
/// "users" while it is enabled and leaves with the disable.
#[actix_rt::test]
async fn memory_by_kind_counts_a_registration_under_users_until_it_is_disabled() {
    let t = TestServer::start(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = t.server.as_ref().unwrap().metrics_addr.expect("metrics on");
    let mut juliet = t.login("juliet", "phone").await;
    let ping = "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>";
    juliet.iq(ping).await;
    let before = get(
        &scrape_until(addr, "juliet's actor", |m| get(m, USERS) > 0.0).await,
        USERS,
    );
    let r = juliet
        .iq(&format!("<iq type='set' id='e1'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='n1'>{FORM}</enable></iq>"))
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    let at_least = before + FORM.len() as f64;
    scrape_until(addr, "the registration counted with its form", |m| {
        get(m, USERS) >= at_least
    })
    .await;
    let r = juliet
        .iq(&format!(
            "<iq type='set' id='d1'><disable xmlns='urn:xmpp:push:0' jid='{APP}' node='n1'/></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    scrape_until(addr, "the registration's bytes gone with it", |m| {
        get(m, USERS) == before
    })
    .await;
}

/// A lowered `push_max_pending_publishes` (SIGHUP) applies at the next publish: with one
/// publish unanswered, the next gives it up, counted as a timeout.
#[actix_rt::test]
async fn a_reloaded_push_max_pending_publishes_gives_up_on_the_oldest_at_the_next_publish() {
    let t = TestServer::start(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = t.server.as_ref().unwrap().metrics_addr.expect("metrics on");
    let mut app = Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    let r = juliet
        .iq(&format!("<iq type='set' id='e1'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='n1'>{FORM}</enable></iq>"))
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    juliet.close().await;
    let mut lowered = t.cfg.clone();
    lowered.push_max_pending_publishes = 1;
    let done = t.server.as_ref().unwrap().reload(&lowered, true);
    assert!(
        done.applied
            .iter()
            .any(|a| a.key == "push_max_pending_publishes")
    );
    let mut romeo = t.login("romeo", "desk").await;
    for id in ["m1", "m2"] {
        romeo
            .send(&format!(
                "<message type='chat' to='juliet@localhost' id='{id}'><body>hi</body></message>"
            ))
            .await;
        // Left unanswered.
        app.next().await;
    }
    let timeout =
        "cloud_notify_push_publishes_total{outcome=\"timeout\",app_server=\"push.localhost\"}";
    scrape_until(addr, "the first publish given up", |m| {
        get(m, timeout) == 1.0
    })
    .await;
}
