//! Federation over real sockets: two servers on their own loopback addresses, each told
//! where the other listens with `s2s_hosts`, both with self-signed certificates, so that
//! every link is STARTTLS plus dialback (XEP-0220) checked over a second connection.

use std::net::SocketAddr;
use std::time::Duration;

use xmpp_parsers::minidom::Element;

use super::TestServer;
use super::client::Client;

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
async fn online(t: &TestServer, user: &str, resource: &str) -> Client {
    let mut c = t.login(user, resource).await;
    c.send("<presence/>").await;
    c.iq("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    c
}

fn body(m: &Element) -> Option<String> {
    m.get_child("body", "jabber:client").map(|b| b.text())
}

fn condition(e: &Element) -> Option<String> {
    e.get_child("error", "jabber:client")
        .and_then(|err| err.children().next())
        .map(|c| c.name().to_string())
}

#[actix_rt::test]
async fn s2s_chat_messages_go_both_ways_over_dialback() {
    let (a, b) = pair().await;
    let mut juliet = online(&a, "juliet", "phone").await;
    let mut romeo = online(&b, "romeo", "desk").await;
    juliet
        .send("<message type='chat' to='romeo@b.localhost' id='m1'><body>from a</body></message>")
        .await;
    let (m, _) = romeo.until("message").await;
    assert_eq!(
        m.attr("from"),
        Some("juliet@a.localhost/phone"),
        "{}",
        String::from(&m)
    );
    assert_eq!(body(&m).as_deref(), Some("from a"));
    romeo
        .send("<message type='chat' to='juliet@a.localhost/phone' id='m2'><body>from b</body></message>")
        .await;
    let (m, _) = juliet.until("message").await;
    assert_eq!(
        m.attr("from"),
        Some("romeo@b.localhost/desk"),
        "{}",
        String::from(&m)
    );
    assert_eq!(body(&m).as_deref(), Some("from b"));
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
    let mut juliet = online(&a, "juliet", "phone").await;
    juliet
        .send("<message type='chat' to='x@c.localhost' id='m1'><body>hello?</body></message>")
        .await;
    let (e, _) = juliet.until("message").await;
    assert_eq!(e.attr("type"), Some("error"), "{}", String::from(&e));
    assert_eq!(e.attr("id"), Some("m1"));
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
    let mut juliet = online(&a, "juliet", "phone").await;
    juliet
        .send("<message type='chat' to='x@d.localhost' id='m1'><body>hello?</body></message>")
        .await;
    let (e, _) = juliet.until("message").await;
    assert_eq!(e.attr("type"), Some("error"), "{}", String::from(&e));
    assert_eq!(condition(&e).as_deref(), Some("remote-server-timeout"));
    drop(silent);
}

#[actix_rt::test]
async fn s2s_without_a_listener_a_remote_domain_still_bounces_at_once() {
    // s2s_listen unset: outbound links still exist.
    let a = TestServer::start(|c| c.domain = A.into()).await;
    let mut juliet = online(&a, "juliet", "phone").await;
    juliet
        .send("<message type='chat' to='x@e.invalid' id='m1'><body>hello?</body></message>")
        .await;
    let (e, _) = juliet.until("message").await;
    assert_eq!(condition(&e).as_deref(), Some("remote-server-not-found"));
}
