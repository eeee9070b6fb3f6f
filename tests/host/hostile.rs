//! Hostile peers (issue "under attack"): each test replays an attack that once hurt the
//! server and checks that only the attacker's stream ends, with the right error, while
//! an honest user goes on.

use super::raw::{Raw, plaintext};
use super::{TestServer, client};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

const COMPONENT_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='push.localhost'>";

fn nested(levels: usize) -> String {
    let mut s = String::with_capacity(levels * 7);
    for _ in 0..levels {
        s.push_str("<a>");
    }
    for _ in 0..levels {
        s.push_str("</a>");
    }
    s
}

async fn still_serves(t: &TestServer, user: &str) {
    let mut c = t.login(user, "check").await;
    let pong = c
        .iq("<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(pong.attr("type"), Some("result"));
}

/// 20,000 nested elements in one packet before authentication used to overflow the
/// stack and abort the process. Now the stream ends at `xml_max_depth`.
#[actix_rt::test]
async fn deep_nesting_before_auth_ends_that_stream_only() {
    let t = TestServer::start(|c| c.c2s_require_encryption = false).await;
    let mut juliet = t.login("juliet", "phone").await;
    let mut attacker = Raw::connect(t.c2s()).await;
    attacker.write(HEADER.as_bytes()).await;
    attacker.until("</stream:features>").await;
    attacker.write(nested(20_000).as_bytes()).await;
    let reply = attacker.rest_until_closed().await;
    assert!(reply.contains("policy-violation"), "{reply}");
    let pong = juliet
        .iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(pong.attr("type"), Some("result"));
    still_serves(&t, "romeo").await;
}

/// The same on the component port, before the handshake.
#[actix_rt::test]
async fn deep_nesting_on_the_component_port_ends_that_stream_only() {
    let t = TestServer::start(|_| {}).await;
    let mut attacker = Raw::connect(t.component()).await;
    attacker.write(COMPONENT_HEADER.as_bytes()).await;
    attacker.until("id=").await;
    attacker.write(nested(20_000).as_bytes()).await;
    let reply = attacker.rest_until_closed().await;
    assert!(reply.contains("policy-violation"), "{reply}");
    let mut app = client::Component::connect(&t).await;
    still_serves(&t, "juliet").await;
    app.expect_nothing_before_ping(&t).await;
}

/// An authenticated user's stanza one level past the limit ends its stream with
/// `policy-violation`; at the limit it is routed.
#[actix_rt::test]
async fn depth_limit_applies_after_auth_and_the_limit_itself_passes() {
    let t = TestServer::start(|c| c.xml_max_depth = 8).await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo.send("<presence/>").await;
    let mut juliet = t.login("juliet", "phone").await;
    // message (1) > body-less payload levels 2..=8.
    let at_limit = format!(
        "<message to='romeo@localhost' id='ok'><x xmlns='urn:example'>{}</x></message>",
        nested(6)
    );
    juliet.send(&at_limit).await;
    let (m, _) = romeo.until("message").await;
    assert_eq!(m.attr("id"), Some("ok"));
    let past = format!(
        "<message to='romeo@localhost' id='deep'><x xmlns='urn:example'>{}</x></message>",
        nested(7)
    );
    juliet.send(&past).await;
    let err = juliet.next_or_error().await;
    assert!(err.contains("policy-violation"), "{err}");
    let pong = romeo
        .iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(pong.attr("type"), Some("result"));
}

/// An element in the reserved xml namespace (`<xml:x/>`) parses but cannot be written
/// and read back, so the XEP-0198 queue once lost such a stanza (found by fuzzing). The
/// stream ends with `invalid-namespace` and the stanza goes nowhere.
#[actix_rt::test]
async fn an_element_in_the_xml_namespace_ends_the_stream_and_is_not_routed() {
    let t = TestServer::start(plaintext).await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo.send("<presence/>").await;
    // Raw bytes: the test client's own parser refuses the element, like ours now does.
    let mut juliet = Raw::login(t.c2s(), "juliet", "phone").await;
    juliet
        .write(b"<message to='romeo@localhost' id='bad'><body>x</body><xml:x xmlns='urn:example'/></message>")
        .await;
    let reply = juliet.rest_until_closed().await;
    assert!(reply.contains("invalid-namespace"), "{reply}");
    let mut juliet = t.login("juliet", "phone2").await;
    juliet
        .send("<message to='romeo@localhost' id='after'><body>y</body></message>")
        .await;
    let (m, _) = romeo.until("message").await;
    assert_eq!(m.attr("id"), Some("after"));
}

/// A JID whose printed form reads back as another JID (U+1D40 prints as `T`, which
/// the next parse lowercases) is malformed: such a `to` would be routed to one domain
/// and stored under another. Found by fuzzing.
#[actix_rt::test]
async fn a_jid_that_reads_back_as_another_is_jid_malformed() {
    let t = TestServer::start(|_| {}).await;
    let mut juliet = t.login("juliet", "phone").await;
    juliet
        .send("<message to='romeo@localhos\u{1D40}' id='m1'><body>x</body></message>")
        .await;
    let (err, _) = juliet.until("message").await;
    assert_eq!(err.attr("type"), Some("error"));
    assert_eq!(client::condition(&err).as_deref(), Some("jid-malformed"));
    let set = juliet
        .iq("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='romeo@localhos\u{1D40}'/></query></iq>")
        .await;
    assert_eq!(set.attr("type"), Some("error"));
    assert_eq!(client::condition(&set).as_deref(), Some("jid-malformed"));
    still_serves(&t, "romeo").await;
}

/// Too many attributes, or one too long, end the stream before the element is built.
#[actix_rt::test]
async fn attribute_floods_end_the_stream() {
    let t = TestServer::start(|c| c.c2s_require_encryption = false).await;
    let many: String = (0..1000).map(|i| format!(" a{i}='x'")).collect();
    let mut attacker = Raw::connect(t.c2s()).await;
    attacker
        .write(format!("{HEADER}<message{many}/>").as_bytes())
        .await;
    let reply = attacker.rest_until_closed().await;
    assert!(reply.contains("policy-violation"), "{reply}");
    let mut attacker = Raw::connect(t.c2s()).await;
    let long = "x".repeat(9000);
    attacker
        .write(format!("{HEADER}<message id='{long}'/>").as_bytes())
        .await;
    let reply = attacker.rest_until_closed().await;
    assert!(reply.contains("policy-violation"), "{reply}");
    still_serves(&t, "juliet").await;
}

async fn connect_from(t: &TestServer, local: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(t.c2s()).await.unwrap()
}

/// Idle connections from one address used to fill `c2s_max_connections` and lock every
/// real login out. Now that address has its quota, and others get in.
#[actix_rt::test]
async fn one_address_cannot_take_every_connection() {
    let t = TestServer::start(|c| {
        c.c2s_require_encryption = false;
        c.c2s_max_connections_per_ip = 3;
    })
    .await;
    let mut flood = Vec::new();
    for _ in 0..3 {
        let mut c = Raw::connect(t.c2s()).await;
        c.write(HEADER.as_bytes()).await;
        c.until("</stream:features>").await;
        flood.push(c);
    }
    let mut refused = Raw::connect(t.c2s()).await;
    assert_eq!(refused.rest_until_closed().await, "", "closed at accept");
    // Another address is served while the first is at its quota.
    let mut other = Raw::over(connect_from(&t, "127.0.0.2").await);
    other.write(HEADER.as_bytes()).await;
    let features = other.until("</stream:features>").await;
    assert!(features.contains("mechanism"), "{features}");
    // A place comes back when its socket goes.
    if let Some(c) = flood.pop() {
        c.close().await;
    }
    still_serves(&t, "juliet").await;
}

/// Connections still negotiating have a quota of their own: bound sessions keep
/// working and a new login gets in once one of them goes.
#[actix_rt::test]
async fn unauthenticated_connections_have_their_own_quota() {
    let t = TestServer::start(|c| {
        c.c2s_require_encryption = false;
        c.c2s_max_unauthenticated = 2;
    })
    .await;
    let mut juliet = t.login("juliet", "phone").await;
    let mut idle = Vec::new();
    for n in 2..4 {
        let mut c = Raw::over(connect_from(&t, &format!("127.0.0.{n}")).await);
        c.write(HEADER.as_bytes()).await;
        c.until("</stream:features>").await;
        idle.push(c);
    }
    let mut refused = Raw::over(connect_from(&t, "127.0.0.4").await);
    assert_eq!(refused.rest_until_closed().await, "", "closed at accept");
    let pong = juliet
        .iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(pong.attr("type"), Some("result"));
    if let Some(c) = idle.pop() {
        c.close().await;
    }
    still_serves(&t, "romeo").await;
}
