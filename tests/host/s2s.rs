//! Federation over real sockets: two servers on their own loopback addresses, each told
//! where the other listens with `s2s_hosts`, both with self-signed certificates, so that
//! every link is STARTTLS plus dialback (XEP-0220) checked over a second connection.

use std::net::SocketAddr;
use std::time::Duration;

use xmpp_parsers::minidom::Element;

use super::client::{Client, Component, condition};
use super::{APP, FORM, TestServer, until_user_stats};

const A: &str = "a.localhost";
const B: &str = "b.localhost";

/// A port free on `ip` now (the servers must know each other's address before either
/// starts).
fn free_port(ip: &str) -> SocketAddr {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    l.local_addr().unwrap()
}

async fn server(
    domain: &str,
    listen: SocketAddr,
    hosts: &[(&str, SocketAddr)],
    timeout: Duration,
) -> TestServer {
    let hosts: Vec<(String, SocketAddr)> = hosts.iter().map(|(d, a)| (d.to_string(), *a)).collect();
    let domain = domain.to_string();
    TestServer::start(move |c| {
        c.domain = domain;
        c.s2s_listen = Some(listen);
        c.s2s_hosts = hosts.into_iter().collect();
        c.s2s_timeout = timeout;
    })
    .await
}

/// Two federated servers: a.localhost on 127.0.0.2, b.localhost on 127.0.0.3.
async fn pair() -> (TestServer, TestServer) {
    let (la, lb) = (free_port("127.0.0.2"), free_port("127.0.0.3"));
    let t = Duration::from_secs(10);
    let a = server(A, la, &[(B, lb)], t).await;
    let b = server(B, lb, &[(A, la)], t).await;
    (a, b)
}

/// Logs in and sends the initial presence; returns once the server has processed it.
pub(super) async fn online(t: &TestServer, user: &str, resource: &str) -> Client {
    let mut c = t.login(user, resource).await;
    c.send("<presence/>").await;
    c.iq("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    c
}

/// Enables push for `c` with the app server `app` (node n1, the test form), then logs
/// the session out, so that the next message for the user is published.
pub(super) async fn enable_push_and_leave(mut c: Client, app: &str) {
    let r = c
        .iq(&format!("<iq type='set' id='e1'><enable xmlns='urn:xmpp:push:0' jid='{app}' node='n1'>{FORM}</enable></iq>"))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    c.close().await;
}

/// juliet, online on `a`, sends a chat message to `to`: the error it bounces with.
async fn bounced(a: &TestServer, to: &str) -> Element {
    let mut juliet = online(a, "juliet", "phone").await;
    juliet
        .send(&format!(
            "<message type='chat' to='{to}' id='m1'><body>hello?</body></message>"
        ))
        .await;
    let (e, _) = juliet.until("message").await;
    assert_eq!(e.attr("type"), Some("error"), "{}", String::from(&e));
    assert_eq!(e.attr("id"), Some("m1"));
    e
}

/// `sender` sends a chat message with `text` to `to`; `receiver` gets it from `from`.
pub(super) async fn message_arrives(
    sender: &mut Client,
    receiver: &mut Client,
    to: &str,
    from: &str,
    text: &str,
) {
    sender
        .send(&format!(
            "<message type='chat' to='{to}' id='m1'><body>{text}</body></message>"
        ))
        .await;
    let (m, _) = receiver.until("message").await;
    assert_eq!(m.attr("from"), Some(from), "{}", String::from(&m));
    assert_eq!(body(&m).as_deref(), Some(text));
}

fn body(m: &Element) -> Option<String> {
    m.get_child("body", "jabber:client").map(|b| b.text())
}

#[actix_rt::test]
async fn s2s_chat_messages_go_both_ways_over_dialback() {
    let (a, b) = pair().await;
    let mut juliet = online(&a, "juliet", "phone").await;
    let mut romeo = online(&b, "romeo", "desk").await;
    message_arrives(
        &mut juliet,
        &mut romeo,
        "romeo@b.localhost",
        "juliet@a.localhost/phone",
        "from a",
    )
    .await;
    message_arrives(
        &mut romeo,
        &mut juliet,
        "juliet@a.localhost/phone",
        "romeo@b.localhost/desk",
        "from b",
    )
    .await;
}

#[actix_rt::test]
async fn s2s_iq_round_trip_to_a_remote_server() {
    let (a, _b) = pair().await;
    let mut juliet = online(&a, "juliet", "phone").await;
    let r = juliet
        .iq("<iq type='get' id='p1' to='b.localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    assert_eq!(r.attr("from"), Some(B));
    // A request the remote server does not serve comes back as its error.
    let r = juliet
        .iq("<iq type='get' id='p2' to='b.localhost'><query xmlns='urn:example:unknown'/></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("error"), "{}", String::from(&r));
    assert_eq!(condition(&r).as_deref(), Some("service-unavailable"));
}

#[actix_rt::test]
async fn s2s_unreachable_domain_bounces_remote_server_not_found() {
    // Nothing listens there: the connection is refused.
    let nobody = free_port("127.0.0.4");
    let a = server(
        A,
        free_port("127.0.0.2"),
        &[("c.localhost", nobody)],
        Duration::from_secs(10),
    )
    .await;
    let e = bounced(&a, "x@c.localhost").await;
    assert_eq!(condition(&e).as_deref(), Some("remote-server-not-found"));
}

#[actix_rt::test]
async fn s2s_silent_domain_bounces_remote_server_timeout() {
    // Accepts the connection (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.5:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let a = server(
        A,
        free_port("127.0.0.2"),
        &[("d.localhost", addr)],
        Duration::from_secs(2),
    )
    .await;
    let e = bounced(&a, "x@d.localhost").await;
    assert_eq!(condition(&e).as_deref(), Some("remote-server-timeout"));
    drop(silent);
}

/// Stanzas waiting for a link that is still connecting count in the memory figures
/// (`queues`) with their size, and their bytes leave when they bounce.
#[actix_rt::test]
async fn stanzas_waiting_for_a_link_count_in_queues_until_they_bounce() {
    let silent = std::net::TcpListener::bind("127.0.0.5:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let a = TestServer::start(move |c| {
        c.domain = A.into();
        c.s2s_hosts = [("d.localhost".to_string(), addr)].into_iter().collect();
        c.s2s_timeout = Duration::from_secs(3);
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = a.server.as_ref().unwrap().metrics_addr.expect("metrics on");
    let queues = "cloud_notify_memory_bytes{kind=\"queues\"}";
    let mut juliet = online(&a, "juliet", "phone").await;
    let before =
        super::operate::scrape_until(metrics, "a first scrape", |m| m.contains_key(queues)).await
            [queues];
    let body = "x".repeat(1000);
    for i in 0..10 {
        juliet
            .send(&format!(
                "<message type='chat' to='x@d.localhost' id='q{i}'><body>{body}</body></message>"
            ))
            .await;
    }
    super::operate::scrape_until(metrics, "the waiting stanzas counted", |m| {
        m[queues] >= before + 10.0 * 1000.0
    })
    .await;
    for _ in 0..10 {
        let (e, _) = juliet.until("message").await;
        assert_eq!(condition(&e).as_deref(), Some("remote-server-timeout"));
    }
    super::operate::scrape_until(metrics, "their bytes gone with the bounces", |m| {
        m[queues] == before
    })
    .await;
    drop(silent);
}

#[actix_rt::test]
async fn s2s_without_a_listener_a_remote_domain_still_bounces_at_once() {
    // s2s_listen unset: outbound links still exist.
    let a = TestServer::start(|c| c.domain = A.into()).await;
    let e = bounced(&a, "x@e.invalid").await;
    assert_eq!(condition(&e).as_deref(), Some("remote-server-not-found"));
}

/// a.localhost with no component of its own, told where b.localhost and its app server
/// component push.localhost are; b.localhost with the component configured.
async fn pair_with_remote_app_server() -> (TestServer, TestServer) {
    pair_with_remote_app_server_and(|_| {}).await
}

/// [`pair_with_remote_app_server`], with `tweak` applied to a.localhost's configuration.
async fn pair_with_remote_app_server_and(
    tweak: impl FnOnce(&mut cloud_notify::config::Config),
) -> (TestServer, TestServer) {
    let (la, lb) = (free_port("127.0.0.2"), free_port("127.0.0.3"));
    let t = Duration::from_secs(10);
    let hosts: Vec<(String, SocketAddr)> = vec![(B.into(), lb), (APP.into(), lb)];
    let a = TestServer::start(move |c| {
        c.domain = A.into();
        c.components.clear();
        c.s2s_listen = Some(la);
        c.s2s_hosts = hosts.into_iter().collect();
        c.s2s_timeout = t;
        tweak(c);
    })
    .await;
    let b = server(B, lb, &[(A, la)], t).await;
    (a, b)
}

#[actix_rt::test]
async fn s2s_publish_reaches_a_remote_app_server_and_its_answer_comes_back() {
    let (a, b) = pair_with_remote_app_server().await;
    let mut app = Component::connect(&b).await;
    enable_push_and_leave(a.login("juliet", "phone").await, APP).await;
    let mut romeo = a.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@a.localhost' id='m1'><body>secret words</body></message>")
        .await;
    // Over a.localhost → b.localhost (dialback as a.localhost), then b's component link.
    let publish = app.next().await;
    assert_eq!(
        publish.attr("type"),
        Some("set"),
        "{}",
        String::from(&publish)
    );
    assert_eq!(publish.attr("from"), Some(A));
    assert_eq!(publish.attr("to"), Some(APP));
    let xml = String::from(&publish);
    assert!(
        xml.contains("the-secret"),
        "publish-options passed through: {xml}"
    );
    assert!(!xml.contains("secret words"), "no body by default");
    until_user_stats(&a, "juliet", "the publish pending", |s| {
        s.pending_publishes == 1
    })
    .await;
    // The answer leaves b.localhost as push.localhost (its own dialback) and reaches the
    // push module on a.localhost, which matches it to the publish.
    app.answer_result(&publish).await;
    until_user_stats(&a, "juliet", "the answer matched", |s| {
        s.pending_publishes == 0 && s.registrations == 1
    })
    .await;
    until_publishes(&a, "the answer counted as a success", |h| h.success == 1).await;
}

/// The metrics name a remote app server by its domain when `metrics_app_servers` lists
/// it, and count it as `other` once a reload takes it off the list.
#[actix_rt::test]
async fn publishes_to_a_listed_remote_app_server_are_counted_under_its_domain() {
    let (a, b) = pair_with_remote_app_server_and(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.metrics_app_servers = vec![APP.into()];
    })
    .await;
    let addr = a.server.as_ref().unwrap().metrics_addr.expect("metrics on");
    let mut app = Component::connect(&b).await;
    enable_push_and_leave(a.login("juliet", "phone").await, APP).await;
    let mut romeo = a.login("romeo", "desk").await;
    let listed =
        format!("cloud_notify_push_publishes_total{{outcome=\"success\",app_server=\"{APP}\"}}");
    let other = "cloud_notify_push_publishes_total{outcome=\"success\",app_server=\"other\"}";
    let publish = |id: &'static str| {
        format!("<message type='chat' to='juliet@a.localhost' id='{id}'><body>hi</body></message>")
    };
    romeo.send(&publish("m1")).await;
    let p = app.next().await;
    app.answer_result(&p).await;
    let m = super::operate::scrape_until(addr, "counted under the app server's domain", |m| {
        m.get(&listed) == Some(&1.0)
    })
    .await;
    assert_eq!(m.get(other), None, "{m:?}");
    // Off the list: the next publish to the same remote app server is `other`.
    let mut unlisted = a.cfg.clone();
    unlisted.metrics_app_servers.clear();
    let done = a.server.as_ref().unwrap().reload(&unlisted, true);
    assert!(
        done.applied.iter().any(|x| x.key == "metrics_app_servers"),
        "{:?}",
        done.applied
    );
    romeo.send(&publish("m2")).await;
    let p = app.next().await;
    app.answer_result(&p).await;
    let m = super::operate::scrape_until(addr, "counted as other", |m| m.get(other) == Some(&1.0))
        .await;
    assert_eq!(m.get(&listed), Some(&1.0), "the earlier count stays: {m:?}");
}

/// D21: the app server's domain cannot be reached. Each publish fails in our own s2s
/// layer, which is no answer from the app server: with `push_max_errors = 1` the
/// registration still stays (Prosody counts `remote-server-not-found` and removes it).
#[actix_rt::test]
async fn d21_unreachable_app_server_domain_never_counts_as_an_error() {
    let nobody = free_port("127.0.0.4");
    let a = TestServer::start(move |c| {
        c.domain = A.into();
        c.components.clear();
        c.push_max_errors = 1;
        c.push_response_timeout = Duration::from_secs(1);
        c.s2s_hosts = [(APP.to_string(), nobody)].into_iter().collect();
    })
    .await;
    enable_push_and_leave(a.login("juliet", "phone").await, APP).await;
    let mut romeo = a.login("romeo", "desk").await;
    for i in 0..3 {
        romeo
            .send(&format!(
                "<message type='chat' to='juliet@a.localhost' id='m{i}'><body>hi</body></message>"
            ))
            .await;
        // Each publish goes out, fails in the s2s layer and ends as that failure, three
        // times past push_max_errors = 1.
        until_publishes(&a, "the publish ended as an s2s failure", |h| {
            h.s2s_failure > i
        })
        .await;
    }
    until_publishes(&a, "no error counted, nothing unanswered", |h| {
        h.error == 0 && h.success == 0 && h.timeout == 0
    })
    .await;
    until_user_stats(&a, "juliet", "the registration kept", |s| {
        s.registrations == 1
    })
    .await;
    // `push list` shows our failure with its reason, not the app server's error.
    let run = super::operate::cli(&a, &["push", "list", "juliet"]).await;
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        out.contains("ago): remote-server-not-found: connection failed: "),
        "{out}"
    );
    assert!(out.contains("  last error:       never\n"), "{out}");
    assert!(out.contains("  last timeout:     never\n"), "{out}");
    assert!(out.contains("  errors in a row:  0 "), "{out}");
    // Removed by the admin, the registration's last s2s failure goes into the log.
    let run = super::operate::cli(&a, &["push", "remove", "juliet", "n1"]).await;
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let run = super::operate::cli(&a, &["push", "list", "juliet"]).await;
    let out = String::from_utf8_lossy(&run.stdout);
    let removed = out
        .split("removed in the last 30 days: 1")
        .nth(1)
        .unwrap_or_else(|| panic!("one removal: {out}"));
    assert!(
        removed.contains("  why:              removed by the admin\n"),
        "{out}"
    );
    assert!(
        removed.contains("ago): remote-server-not-found: connection failed: "),
        "{out}"
    );
    // The messages themselves are stored for juliet, not bounced to romeo.
    let r = romeo
        .iq("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
}

/// Polls the publish outcomes of the last hour until `pred` holds, failing at a deadline.
pub(super) async fn until_publishes(
    t: &TestServer,
    what: &str,
    pred: impl Fn(&cloud_notify::metrics::HourCounts) -> bool,
) {
    let metrics = t.server.as_ref().expect("server running").metrics.clone();
    let deadline = std::time::Instant::now() + super::patience::deadline();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        let h = metrics.last_hour();
        if pred(&h) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {h:?}"
        );
        tick.tick().await;
    }
}

/// D21, the rest: publishes to an app server whose domain is down are held and sent
/// again with backoff; when the domain comes back within `push_response_timeout` they
/// reach the app server, the answer is matched, and the registration was never touched.
#[actix_rt::test]
async fn d21_publishes_flow_again_when_the_app_servers_domain_returns() {
    let (la, lb) = (free_port("127.0.0.2"), free_port("127.0.0.3"));
    let hosts: Vec<(String, SocketAddr)> = vec![(B.into(), lb), (APP.into(), lb)];
    let a = TestServer::start(move |c| {
        c.domain = A.into();
        c.components.clear();
        c.push_max_errors = 1;
        c.push_response_timeout = Duration::from_secs(30);
        c.s2s_listen = Some(la);
        c.s2s_hosts = hosts.into_iter().collect();
    })
    .await;
    enable_push_and_leave(a.login("juliet", "phone").await, APP).await;
    // The app server's domain is down: whatever answers there hangs up at once.
    let down = tokio::net::TcpListener::bind(lb).await.unwrap();
    let mut romeo = a.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@a.localhost' id='m1'><body>hi</body></message>")
        .await;
    let (hung_up, _) = tokio::time::timeout(super::patience::deadline(), down.accept())
        .await
        .expect("the link was tried")
        .unwrap();
    drop(hung_up);
    drop(down);
    // The domain returns, with the app server attached.
    let b = server(B, lb, &[(A, la)], Duration::from_secs(10)).await;
    let mut app = Component::connect(&b).await;
    let publish = app.next().await;
    assert_eq!(publish.attr("from"), Some(A), "{}", String::from(&publish));
    app.answer_result(&publish).await;
    until_publishes(&a, "the retried publish answered", |h| h.success == 1).await;
    until_user_stats(&a, "juliet", "the registration kept", |s| {
        s.registrations == 1 && s.pending_publishes == 0
    })
    .await;
    until_publishes(&a, "no error counted", |h| h.error == 0).await;
}

/// The error condition of the next error message `c` receives.
async fn next_bounce(c: &mut Client) -> (Option<String>, Option<String>) {
    loop {
        let (m, _) = c.until("message").await;
        if m.attr("type") == Some("error") {
            return (m.attr("id").map(str::to_string), condition(&m));
        }
    }
}

#[actix_rt::test]
async fn s2s_queue_past_s2s_queue_size_bounces_resource_constraint() {
    // The domain accepts and never speaks: its link stays in the connecting phase.
    let silent = std::net::TcpListener::bind("127.0.0.5:0").unwrap();
    let hosts = [("d.localhost".to_string(), silent.local_addr().unwrap())];
    let a = TestServer::start(move |c| {
        c.domain = A.into();
        c.s2s_queue_size = 1;
        c.s2s_hosts = hosts.into_iter().collect();
    })
    .await;
    let mut juliet = online(&a, "juliet", "phone").await;
    for i in 1..=2 {
        juliet
            .send(&format!(
                "<message type='chat' to='x@d.localhost' id='m{i}'><body>hi</body></message>"
            ))
            .await;
    }
    let (id, cond) = next_bounce(&mut juliet).await;
    assert_eq!(id.as_deref(), Some("m2"), "the one that did not fit");
    assert_eq!(cond.as_deref(), Some("resource-constraint"));
    drop(silent);
}

#[actix_rt::test]
async fn s2s_links_past_s2s_max_connections_bounce_resource_constraint() {
    let silent = std::net::TcpListener::bind("127.0.0.5:0").unwrap();
    let s = silent.local_addr().unwrap();
    let hosts = [
        ("d.localhost".to_string(), s),
        ("e.localhost".to_string(), s),
    ];
    let a = TestServer::start(move |c| {
        c.domain = A.into();
        c.s2s_max_connections = 1;
        c.s2s_hosts = hosts.into_iter().collect();
    })
    .await;
    let mut juliet = online(&a, "juliet", "phone").await;
    juliet
        .send("<message type='chat' to='x@d.localhost' id='m1'><body>hi</body></message>")
        .await;
    juliet
        .send("<message type='chat' to='x@e.localhost' id='m2'><body>hi</body></message>")
        .await;
    let (id, cond) = next_bounce(&mut juliet).await;
    assert_eq!(
        id.as_deref(),
        Some("m2"),
        "the second domain's link is refused"
    );
    assert_eq!(cond.as_deref(), Some("resource-constraint"));
    drop(silent);
}

/// The next presence `c` receives from `from` (bare or full) with this `type`.
async fn presence_from(c: &mut Client, from: &str, kind: Option<&str>) -> Element {
    loop {
        let (p, _) = c.until("presence").await;
        let sender = p.attr("from").unwrap_or_default();
        if (sender == from || sender.starts_with(&format!("{from}/"))) && p.attr("type") == kind {
            return p;
        }
    }
}

#[actix_rt::test]
async fn s2s_subscription_with_a_remote_contact_and_presence_both_ways() {
    let (a, b) = pair().await;
    let mut juliet = online(&a, "juliet", "phone").await;
    let mut romeo = online(&b, "romeo", "desk").await;
    juliet
        .send("<presence type='subscribe' to='romeo@b.localhost'/>")
        .await;
    presence_from(&mut romeo, "juliet@a.localhost", Some("subscribe")).await;
    romeo
        .send("<presence type='subscribed' to='juliet@a.localhost'/>")
        .await;
    // Approved: romeo's current presence reaches juliet at once (RFC 6121 §3.1.5: a
    // probe from her server answered by his), without romeo changing it.
    let p = presence_from(&mut juliet, "romeo@b.localhost/desk", None).await;
    assert!(
        p.get_child("show", "jabber:client").is_none(),
        "{}",
        String::from(&p)
    );
    // A change of romeo's presence is broadcast to his remote subscriber. His current
    // presence may come once more before it: his server also sends it unasked after
    // the approval, as Prosody does.
    romeo.send("<presence><show>away</show></presence>").await;
    let show = |p: &Element| p.get_child("show", "jabber:client").map(|s| s.text());
    let p = presence_from(&mut juliet, "romeo@b.localhost", None).await;
    let p = match show(&p) {
        None => presence_from(&mut juliet, "romeo@b.localhost", None).await,
        Some(_) => p,
    };
    assert_eq!(show(&p).as_deref(), Some("away"), "{}", String::from(&p));
    // Unavailable at logout.
    romeo.close().await;
    presence_from(&mut juliet, "romeo@b.localhost", Some("unavailable")).await;
}

/// What Conversations does before `<enable/>`: an ad-hoc command from the phone to the
/// app server on another server, through ours; the answer comes back to the session.
#[actix_rt::test]
async fn s2s_adhoc_command_from_a_phone_reaches_the_remote_app_server_and_is_answered() {
    let (a, b) = pair_with_remote_app_server().await;
    let mut app = Component::connect(&b).await;
    let mut juliet = a.login("juliet", "phone").await;
    juliet
        .send(&format!("<iq type='set' id='reg1' to='{APP}'><command xmlns='http://jabber.org/protocol/commands' node='register-push-fcm' action='execute'/></iq>"))
        .await;
    let command = app.next().await;
    assert_eq!(
        command.attr("from"),
        Some("juliet@a.localhost/phone"),
        "{}",
        String::from(&command)
    );
    assert!(command.has_child("command", "http://jabber.org/protocol/commands"));
    app.answer_result(&command).await;
    loop {
        let (r, _) = juliet.until("iq").await;
        if r.attr("id") == Some("reg1") {
            assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
            assert_eq!(r.attr("from"), Some(APP));
            break;
        }
    }
}

/// `s2s_secure_auth`: a peer with a self-signed certificate gets no link from us (its
/// certificate is not valid for its domain), unless `s2s_insecure_domains` names it.
#[actix_rt::test]
async fn s2s_secure_auth_refuses_a_self_signed_peer_unless_it_is_listed_insecure() {
    for insecure in [false, true] {
        let (la, lb) = (free_port("127.0.0.2"), free_port("127.0.0.3"));
        let hosts = [(B.to_string(), lb)];
        let a = TestServer::start(move |c| {
            c.domain = A.into();
            c.s2s_listen = Some(la);
            c.s2s_hosts = hosts.into_iter().collect();
            c.s2s_secure_auth = true;
            if insecure {
                c.s2s_insecure_domains = vec![B.into()];
            }
        })
        .await;
        let b = server(B, lb, &[(A, la)], Duration::from_secs(10)).await;
        let mut juliet = online(&a, "juliet", "phone").await;
        let mut romeo = online(&b, "romeo", "desk").await;
        juliet
            .send("<message type='chat' to='romeo@b.localhost' id='m1'><body>hi</body></message>")
            .await;
        if insecure {
            let (m, _) = romeo.until("message").await;
            assert_eq!(m.attr("from"), Some("juliet@a.localhost/phone"));
        } else {
            let (e, _) = juliet.until("message").await;
            assert_eq!(e.attr("type"), Some("error"), "{}", String::from(&e));
            assert_eq!(condition(&e).as_deref(), Some("remote-server-not-found"));
        }
    }
}
