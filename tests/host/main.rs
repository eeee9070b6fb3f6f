//! The server over real sockets: a scripted client (tokio-xmpp's initiator side parses
//! what the server sends) and a scripted component app server.

mod carbons;
mod checklist;
mod client;
mod client_bugs;
mod csi;
mod d23;
#[path = "../support/dns.rs"]
mod dns;
mod fates;
mod hostile;
mod mam;
mod operate;
mod patience;
mod prosody;
mod raw;
mod reload;
mod s2s;
mod s2s_broken;
mod s2s_dns;
mod s2s_external;
mod s2s_hostile;
mod s2s_prosody;
mod s2s_prosody_tls;
mod storage;
mod subscriptions;
mod tigase;

use std::time::Duration;

use client::{Client, Component, connect_client, plain_client};
use cloud_notify::config::{ComponentConfig, Config};
use cloud_notify::push::{GetUserStats, UserStats};
use cloud_notify::store::{admin, open_database};
use cloud_notify::xmpp::server::Server;
use xmpp_parsers::minidom::Element;

pub const DOMAIN: &str = "localhost";
pub const APP: &str = "push.localhost";
pub const APP_SECRET: &str = "s3cr3t";

pub struct TestServer {
    pub server: Option<Server>,
    pub cfg: Config,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
        // RUST_LOG=cloud_notify=debug shows the server's log for a failing test.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            domain: DOMAIN.into(),
            data_dir: dir.path().to_path_buf(),
            c2s_listen: "127.0.0.1:0".parse().unwrap(),
            component_listen: "127.0.0.1:0".parse().unwrap(),
            scram_iterations: 4096,
            // The server's own limit on a login, stretched like the tests' waits under
            // emulation: a login behind a burst can take longer there.
            c2s_auth_timeout: patience::wait(Config::default().c2s_auth_timeout),
            components: vec![ComponentConfig {
                jid: APP.into(),
                secret: APP_SECRET.into(),
            }],
            ..Config::default()
        };
        tweak(&mut cfg);
        {
            let db = open_database(&cfg.data_dir, cfg.store_cache_size).unwrap();
            for u in ["juliet", "romeo"] {
                admin::add_user(&db, u, &format!("{u}-pw"), 4096).unwrap();
            }
        }
        let server = Server::start(cfg.clone()).await.expect("server starts");
        TestServer {
            server: Some(server),
            cfg,
            _dir: dir,
        }
    }

    pub fn c2s(&self) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().c2s_addr
    }

    pub fn component(&self) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().component_addr
    }

    pub async fn login(&self, user: &str, resource: &str) -> Client {
        connect_client(self, user, resource).await
    }
}

fn ns_push() -> &'static str {
    "urn:xmpp:push:0"
}

const FORM: &str = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>the-secret</value></field></x>";

#[actix_rt::test]
async fn offline_message_reaches_the_app_server_as_prosodys_publish() {
    let t = TestServer::start(|_| {}).await;
    let mut app = Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    let r = juliet
        .iq(&format!("<iq type='set' id='e1'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='n1'>{FORM}</enable></iq>"))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    juliet.close().await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost' id='m1'><body>secret words</body></message>")
        .await;
    let publish = app.next().await;
    assert_eq!(publish.attr("type"), Some("set"));
    assert_eq!(publish.attr("from"), Some(DOMAIN));
    assert_eq!(publish.attr("to"), Some(APP));
    assert!(
        publish.has_ns("jabber:component:accept"),
        "component namespace on the wire"
    );
    let xml = String::from(&publish);
    assert!(
        xml.contains("node=\"n1\"") || xml.contains("node='n1'"),
        "{xml}"
    );
    assert!(xml.contains("the-secret"), "publish-options passed through");
    assert!(xml.contains("New Message!"));
    assert!(!xml.contains("secret words"), "no body by default");
    // The app server answers; nothing comes back to anyone.
    app.answer_result(&publish).await;
}

#[actix_rt::test]
async fn b01_b02_push_feature_on_the_account_not_the_server() {
    let t = TestServer::start(|_| {}).await;
    let mut juliet = t.login("juliet", "phone").await;
    let own = juliet
        .iq("<iq type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    assert!(has_feature(&own, ns_push()), "{}", String::from(&own));
    let server = juliet
        .iq("<iq type='get' id='d2' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    assert_eq!(server.attr("type"), Some("result"));
    assert!(!has_feature(&server, ns_push()));
}

fn has_feature(iq: &Element, var: &str) -> bool {
    iq.children()
        .flat_map(|q| q.children())
        .any(|f| f.name() == "feature" && f.attr("var") == Some(var))
}

#[actix_rt::test]
async fn b07_b08_enable_to_domain_or_get_is_service_unavailable() {
    let t = TestServer::start(|_| {}).await;
    let mut juliet = t.login("juliet", "phone").await;
    let r = juliet
        .iq(&format!("<iq type='set' id='a' to='localhost'><enable xmlns='urn:xmpp:push:0' jid='{APP}'/></iq>"))
        .await;
    assert!(
        String::from(&r).contains("service-unavailable"),
        "{}",
        String::from(&r)
    );
    let r = juliet
        .iq(&format!(
            "<iq type='get' id='b'><enable xmlns='urn:xmpp:push:0' jid='{APP}'/></iq>"
        ))
        .await;
    assert!(String::from(&r).contains("service-unavailable"));
}

#[actix_rt::test]
async fn messages_between_online_users_are_delivered() {
    let t = TestServer::start(|_| {}).await;
    let mut juliet = t.login("juliet", "phone").await;
    juliet.send("<presence/>").await;
    let mut romeo = t.login("romeo", "desk").await;
    // Presence is processed before the message: a ping round trip orders them.
    juliet
        .iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    romeo
        .send("<message type='chat' to='juliet@localhost' id='m1'><body>hi</body></message>")
        .await;
    let m = juliet.next().await;
    assert_eq!(m.name(), "message");
    assert_eq!(m.attr("from"), Some("romeo@localhost/desk"));
    assert_eq!(
        m.get_child("body", "jabber:client")
            .map(|b| b.text())
            .as_deref(),
        Some("hi")
    );
}

#[actix_rt::test]
async fn wrong_host_gets_host_unknown() {
    let t = TestServer::start(|_| {}).await;
    let err = plain_client(&t, "example.org").await.expect_err("refused");
    assert!(err.contains("HostUnknown"), "{err}");
}

#[actix_rt::test]
async fn authentication_requires_tls_by_default() {
    let t = TestServer::start(|_| {}).await;
    let mut c = plain_client(&t, DOMAIN).await.expect("stream opens");
    assert!(c.features_xml.contains("starttls"), "{}", c.features_xml);
    assert!(!c.features_xml.contains("PLAIN"), "{}", c.features_xml);
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldABqdWxpZXQtcHc=</auth>")
        .await;
    let e = c.next_or_error().await;
    assert!(e.contains("policy-violation"), "{e}");
}

#[actix_rt::test]
async fn wrong_password_is_not_authorized() {
    let t = TestServer::start(|_| {}).await;
    let r = client::try_login(&t, "juliet", "wrong", "phone").await;
    assert!(r.is_err_and(|e| e.contains("not-authorized")));
    let r = client::try_login(&t, "nobody", "x", "phone").await;
    assert!(r.is_err_and(|e| e.contains("not-authorized")));
}

#[actix_rt::test]
async fn oversized_stanza_is_a_policy_violation_and_others_are_untouched() {
    let t = TestServer::start(|c| c.c2s_stanza_size_limit = 16 * 1024).await;
    let mut juliet = t.login("juliet", "phone").await;
    let mut romeo = t.login("romeo", "desk").await;
    let big = "x".repeat(40 * 1024);
    romeo
        .send(&format!(
            "<message to='juliet@localhost'><body>{big}</body></message>"
        ))
        .await;
    let e = romeo.next_or_error().await;
    assert!(e.contains("policy-violation"), "{e}");
    let pong = juliet
        .iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(pong.attr("type"), Some("result"));
}

#[actix_rt::test]
async fn component_with_wrong_secret_is_refused() {
    let t = TestServer::start(|_| {}).await;
    let e = Component::try_connect(&t, APP, "wrong")
        .await
        .expect_err("refused");
    assert!(e.contains("not-authorized"), "{e}");
    let e = Component::try_connect(&t, "other.localhost", APP_SECRET)
        .await
        .expect_err("refused");
    assert!(e.contains("host-unknown"), "{e}");
}

#[actix_rt::test]
async fn data_survives_a_restart() {
    let mut t = TestServer::start(|_| {}).await;
    {
        let mut juliet = t.login("juliet", "phone").await;
        let r = juliet
            .iq(&format!("<iq type='set' id='e1'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='n9'/></iq>"))
            .await;
        assert_eq!(r.attr("type"), Some("result"));
        juliet.close().await;
    }
    t.server.take().unwrap().shutdown().await;
    tokio::time::timeout(patience::wait(Duration::from_secs(5)), async {
        t.server = Some(Server::start(t.cfg.clone()).await.expect("restart"));
    })
    .await
    .expect("restart in time");
    let mut app = Component::connect(&t).await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>after restart</body></message>")
        .await;
    let p = app.next().await;
    assert!(String::from(&p).contains("n9"));
}

#[actix_rt::test]
async fn offline_messages_are_kept_and_delivered_with_a_delay_stamp() {
    let t = TestServer::start(|_| {}).await;
    // A registration makes each stored message observable: the offline path publishes
    // only once the message is durable (B31), so juliet logs in after both are stored
    // rather than racing romeo's second message.
    let mut app = Component::connect(&t).await;
    let mut tablet = t.login("juliet", "tablet").await;
    enable_push(&mut tablet, "n1").await;
    tablet.close().await;
    let mut romeo = t.login("romeo", "desk").await;
    for b in ["one", "two"] {
        romeo
            .send(&format!(
                "<message type='chat' to='juliet@localhost'><body>{b}</body></message>"
            ))
            .await;
    }
    for _ in 0..2 {
        let p = app.next().await;
        app.answer_result(&p).await;
    }
    let mut juliet = t.login("juliet", "phone").await;
    juliet.send("<presence/>").await;
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let m = juliet.next().await;
        assert_eq!(m.name(), "message", "{}", String::from(&m));
        let delay = m.get_child("delay", "urn:xmpp:delay").expect("delay stamp");
        assert_eq!(delay.attr("from"), Some(DOMAIN));
        assert!(delay.attr("stamp").is_some_and(|s| s.ends_with('Z')));
        bodies.push(m.get_child("body", "jabber:client").unwrap().text());
    }
    assert_eq!(bodies, ["one", "two"]);
    juliet.close().await;
    // Delivered once: the next login finds nothing waiting.
    let mut again = t.login("juliet", "tablet").await;
    again.send("<presence/>").await;
    let pong = again
        .iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(
        pong.attr("type"),
        Some("result"),
        "no message came before the pong"
    );
}

#[actix_rt::test]
async fn full_offline_storage_bounces_resource_constraint() {
    let t = TestServer::start(|c| c.offline_max_messages = 2).await;
    let mut romeo = t.login("romeo", "desk").await;
    for i in 0..3 {
        romeo
            .send(&format!(
                "<message type='chat' id='m{i}' to='juliet@localhost'><body>{i}</body></message>"
            ))
            .await;
    }
    let bounce = romeo.next().await;
    assert_eq!(bounce.attr("type"), Some("error"));
    assert_eq!(bounce.attr("id"), Some("m2"));
    assert!(String::from(&bounce).contains("resource-constraint"));
}

#[actix_rt::test]
async fn message_to_an_unknown_user_bounces() {
    let t = TestServer::start(|_| {}).await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' id='x' to='nobody@localhost'><body>hi</body></message>")
        .await;
    let bounce = romeo.next().await;
    assert_eq!(bounce.attr("type"), Some("error"));
    assert!(String::from(&bounce).contains("service-unavailable"));
}

// ------------------------------------------------------------------ stream management

async fn enable_sm(c: &mut Client) -> String {
    c.send_nonza("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let (enabled, _) = c.until("enabled").await;
    assert_eq!(enabled.attr("resume"), Some("true"));
    enabled.attr("id").expect("resumption id").to_string()
}

async fn enable_push(c: &mut Client, node: &str) {
    let r = c
        .iq(&format!("<iq type='set' id='e-{node}'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='{node}'>{FORM}</enable></iq>"))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
}

fn quick(c: &mut Config) {
    c.push_batch_window = Duration::from_millis(100);
    c.smacks_hibernation_time = Duration::from_secs(2);
    c.push_max_hibernation_timeout = Duration::from_secs(4);
}

#[actix_rt::test]
async fn sm_answers_r_with_the_count_of_handled_stanzas() {
    let t = TestServer::start(|_| {}).await;
    let mut juliet = t.login("juliet", "phone").await;
    enable_sm(&mut juliet).await;
    juliet
        .iq("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    juliet.send("<presence/>").await;
    juliet.send_nonza("<r xmlns='urn:xmpp:sm:3'/>").await;
    let (a, _) = juliet.until("a").await;
    assert_eq!(a.attr("h"), Some("2"));
}

/// The heart of it: a phone with push and stream management loses its connection; a
/// message arrives; the app server gets exactly one publish in Prosody's shape with the
/// secret; the phone resumes and gets the message.
#[actix_rt::test]
async fn hibernated_phone_is_pushed_and_resumes_with_the_message() {
    let t = TestServer::start(quick).await;
    let mut app = Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    let previd = enable_sm(&mut juliet).await;
    enable_push(&mut juliet, "n1").await;
    juliet.send("<presence/>").await;
    juliet.until("presence").await; // the server echoes the initial presence
    // The client acknowledges both stanzas it got (the enable's result and the echo), so
    // nothing is unacked when the connection dies.
    juliet.send_nonza("<a xmlns='urn:xmpp:sm:3' h='2'/>").await;
    juliet.send_nonza("<r xmlns='urn:xmpp:sm:3'/>").await;
    juliet.until("a").await;
    // The socket is shut down (TLS close_notify, FIN); the stream is not closed.
    juliet.drop_connection().await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost' id='wake'><body>wake up</body></message>")
        .await;
    let publish = app.next().await;
    let xml = String::from(&publish);
    assert!(
        xml.contains("the-secret") && xml.contains("New Message!") && xml.contains("n1"),
        "{xml}"
    );
    app.answer_result(&publish).await;

    let mut phone = client::authenticate(&t, "juliet", "juliet-pw")
        .await
        .unwrap();
    phone
        .send_nonza(&format!(
            "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='2'/>"
        ))
        .await;
    let (resumed, _) = phone.until("resumed").await;
    assert_eq!(resumed.attr("previd"), Some(previd.as_str()));
    let (m, _) = phone.until("message").await;
    assert_eq!(m.attr("id"), Some("wake"));
    assert_eq!(
        m.get_child("body", "jabber:client").unwrap().text(),
        "wake up"
    );
    // Resumption cancelled the held timer and the batch: nothing more reached the app
    // server by the time it hears the server's answer to its own ping.
    phone
        .iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    app.expect_nothing_before_ping(&t).await;
}

#[actix_rt::test]
async fn session_without_push_expires_and_its_messages_go_offline() {
    let t = TestServer::start(quick).await;
    let mut juliet = t.login("juliet", "phone").await;
    let previd = enable_sm(&mut juliet).await;
    juliet.send("<presence/>").await;
    juliet
        .iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    drop(juliet);
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost' id='kept'><body>kept</body></message>")
        .await;
    // After smacks_hibernation_time (2 s) the session is gone: resuming fails with its h.
    let deadline = std::time::Instant::now() + patience::deadline();
    let failed = loop {
        let mut phone = client::authenticate(&t, "juliet", "juliet-pw")
            .await
            .unwrap();
        phone
            .send_nonza(&format!(
                "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>"
            ))
            .await;
        let r = phone.next().await;
        if r.name() == "failed" {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "session never expired"
        );
        phone.close().await;
    };
    assert!(String::from(&failed).contains("item-not-found"));
    assert_eq!(
        failed.attr("h"),
        Some("2"),
        "the handled count of the ended session"
    );
    // The unacked message went to offline storage and comes at the next login.
    let mut juliet = t.login("juliet", "laptop").await;
    juliet.send("<presence/>").await;
    let (m, _) = juliet.until("message").await;
    assert_eq!(m.attr("id"), Some("kept"));
    assert!(m.get_child("delay", "urn:xmpp:delay").is_some());
}

// ------------------------------------------------------------------ bad input

async fn raw(t: &TestServer, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(t.c2s()).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(patience::deadline(), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[actix_rt::test]
async fn malformed_xml_is_not_well_formed_and_others_are_untouched() {
    let t = TestServer::start(|c| c.c2s_require_encryption = false).await;
    let mut juliet = t.login("juliet", "phone").await;
    let reply = raw(
        &t,
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'><message><body>x</message>",
    )
    .await;
    assert!(reply.contains("not-well-formed"), "{reply}");
    let pong = juliet
        .iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(pong.attr("type"), Some("result"));
}

#[actix_rt::test]
async fn stanzas_before_authentication_are_refused() {
    let t = TestServer::start(|c| c.c2s_require_encryption = false).await;
    let reply = raw(
        &t,
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'><message to='romeo@localhost'><body>x</body></message>",
    )
    .await;
    assert!(reply.contains("not-authorized"), "{reply}");
}

#[actix_rt::test]
async fn silent_clients_are_disconnected_after_the_auth_timeout() {
    let t = TestServer::start(|c| c.c2s_auth_timeout = Duration::from_secs(1)).await;
    let started = std::time::Instant::now();
    // A stream header and then nothing: the server must not wait forever.
    let reply = raw(
        &t,
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
    )
    .await;
    assert!(reply.contains("connection-timeout"), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed by the server, not the test deadline"
    );
}

#[actix_rt::test]
async fn connections_past_the_limit_are_closed() {
    let t = TestServer::start(|c| c.c2s_max_connections = 1).await;
    let _juliet = t.login("juliet", "phone").await;
    let reply = raw(
        &t,
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
    )
    .await;
    assert!(reply.is_empty(), "closed without a stream: {reply}");
}

#[actix_rt::test]
async fn plain_auth_without_tls_when_allowed() {
    let t = TestServer::start(|c| {
        c.c2s_require_encryption = false;
        c.allow_unencrypted_plain_auth = true;
    })
    .await;
    let mut c = client::plain_client(&t, DOMAIN).await.unwrap();
    assert!(c.features_xml.contains("PLAIN"), "{}", c.features_xml);
    // \0juliet\0juliet-pw
    c.send_nonza("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldABqdWxpZXQtcHc=</auth>")
        .await;
    assert_eq!(c.next().await.name(), "success");
}

#[actix_rt::test]
async fn wrong_stream_namespace_is_refused() {
    let t = TestServer::start(|c| c.c2s_require_encryption = false).await;
    let reply = raw(
        &t,
        b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'><message to='romeo@localhost'><body>x</body></message>",
    )
    .await;
    assert!(reply.contains("invalid-namespace"), "{reply}");
}

#[actix_rt::test]
async fn direct_tls_listener_offers_sasl_without_starttls() {
    let t =
        TestServer::start(|c| c.c2s_direct_tls_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = t
        .server
        .as_ref()
        .unwrap()
        .direct_tls_addr
        .expect("direct TLS listener");
    let features = client::direct_tls_features(&t, addr).await;
    assert!(
        features.contains("SCRAM-SHA-256") && features.contains("PLAIN"),
        "{features}"
    );
    assert!(!features.contains("starttls"), "{features}");
}

// ------------------------------------------------------------------ roster and presence

#[actix_rt::test]
async fn roster_set_get_and_push() {
    let t = TestServer::start(|_| {}).await;
    let mut phone = t.login("juliet", "phone").await;
    let mut desk = t.login("juliet", "desk").await;
    let r = phone
        .iq("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='romeo@localhost' name='Romeo'><group>Friends</group></item></query></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    // Every session gets the push.
    let (push, _) = desk.until("iq").await;
    assert_eq!(push.attr("type"), Some("set"));
    assert!(String::from(&push).contains("romeo@localhost"));
    let roster = desk
        .iq("<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let xml = String::from(&roster);
    assert!(
        xml.contains("Romeo") && xml.contains("Friends") && xml.contains("subscription='none'"),
        "{xml}"
    );
    let r = phone
        .iq("<iq type='set' id='r3'><query xmlns='jabber:iq:roster'><item jid='romeo@localhost' subscription='remove'/></query></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    let roster = phone
        .iq("<iq type='get' id='r4'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    assert!(!String::from(&roster).contains("romeo@localhost"));
}

#[actix_rt::test]
async fn subscription_then_presence_flows() {
    let t = TestServer::start(|_| {}).await;
    let mut juliet = t.login("juliet", "phone").await;
    juliet.send("<presence/>").await;
    // Romeo is offline when Juliet asks: the request waits for his next login.
    juliet
        .send("<presence type='subscribe' to='romeo@localhost'/>")
        .await;
    juliet
        .iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo.send("<presence/>").await;
    let (request, _) = romeo.until("presence").await;
    assert_eq!(
        request.attr("type"),
        Some("subscribe"),
        "{}",
        String::from(&request)
    );
    assert_eq!(request.attr("from"), Some("juliet@localhost"));
    romeo
        .send("<presence type='subscribed' to='juliet@localhost'/>")
        .await;
    // Juliet now sees Romeo: the approval, then at once his current presence (RFC 6121
    // §3.1.5), not only at his next broadcast.
    let (answer, _) = juliet.until("presence").await;
    assert_eq!(answer.attr("type"), Some("subscribed"));
    let (current, _) = juliet.until("presence").await;
    assert_eq!(current.attr("from"), Some("romeo@localhost/desk"));
    assert!(current.attr("type").is_none(), "{}", String::from(&current));
    let roster = juliet
        .iq("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    assert!(
        String::from(&roster).contains("subscription='to'"),
        "{}",
        String::from(&roster)
    );
    romeo.send("<presence><show>away</show></presence>").await;
    let (p, _) = juliet.until("presence").await;
    assert_eq!(p.attr("from"), Some("romeo@localhost/desk"));
    assert!(p.attr("type").is_none());
}

/// RFC 6121 §4.2.2: a resource that becomes available learns the presence of the user's
/// other available resources, and they learn its own.
#[actix_rt::test]
async fn a_new_resource_learns_the_presence_of_the_others() {
    let t = TestServer::start(|_| {}).await;
    let mut desk = t.login("juliet", "desk").await;
    desk.send("<presence><show>dnd</show></presence>").await;
    // Its own broadcast comes back to it: once seen, it is in force.
    let (own, _) = desk.until("presence").await;
    assert_eq!(own.attr("from"), Some("juliet@localhost/desk"));
    let mut phone = t.login("juliet", "phone").await;
    phone.send("<presence/>").await;
    let mut froms = Vec::new();
    for _ in 0..2 {
        let (p, _) = phone.until("presence").await;
        froms.push(p.attr("from").unwrap_or_default().to_string());
        if p.attr("from") == Some("juliet@localhost/desk") {
            assert!(String::from(&p).contains("dnd"), "{}", String::from(&p));
        }
    }
    froms.sort();
    assert_eq!(froms, ["juliet@localhost/desk", "juliet@localhost/phone"]);
    let (p, _) = desk.until("presence").await;
    assert_eq!(p.attr("from"), Some("juliet@localhost/phone"));
}

// ------------------------------------------------------------------ the checklist on the wire

/// The last-message-body value of a publish, if any.
fn body_of(publish: &Element) -> Option<String> {
    let form = publish
        .get_child("pubsub", "http://jabber.org/protocol/pubsub")?
        .get_child("publish", "http://jabber.org/protocol/pubsub")?
        .get_child("item", "http://jabber.org/protocol/pubsub")?
        .get_child("notification", "urn:xmpp:push:0")?
        .get_child("x", "jabber:x:data")?;
    form.children()
        .find(|f| f.attr("var") == Some("last-message-body"))
        .and_then(|f| f.get_child("value", "jabber:x:data").map(|v| v.text()))
}

fn node_of(publish: &Element) -> Option<String> {
    publish
        .get_child("pubsub", "http://jabber.org/protocol/pubsub")?
        .get_child("publish", "http://jabber.org/protocol/pubsub")?
        .attr("node")
        .map(str::to_string)
}

/// Juliet registered `nodes` from a phone that then logged out; Romeo is online; the app
/// server is attached. With push_notification_with_body every publish names its message.
async fn offline_setup(
    nodes: &[&str],
    tweak: impl FnOnce(&mut Config),
) -> (TestServer, Component, Client) {
    let t = TestServer::start(|c| {
        c.push_notification_with_body = true;
        tweak(c);
    })
    .await;
    let app = Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    for n in nodes {
        enable_push(&mut juliet, n).await;
    }
    juliet.close().await;
    let romeo = t.login("romeo", "desk").await;
    (t, app, romeo)
}

async fn marker(romeo: &mut Client, app: &mut Component, body: &str) {
    romeo
        .send(&format!(
            "<message type='chat' to='juliet@localhost'><body>{body}</body></message>"
        ))
        .await;
    let p = app.next().await;
    assert_eq!(
        body_of(&p).as_deref(),
        Some(body),
        "the marker is the next publish: {}",
        String::from(&p)
    );
}

#[actix_rt::test]
async fn b31_wire_three_offline_messages_three_publishes() {
    let (_t, mut app, mut romeo) = offline_setup(&["n1"], |_| {}).await;
    for b in ["m1", "m2", "m3"] {
        romeo
            .send(&format!(
                "<message type='chat' to='juliet@localhost'><body>{b}</body></message>"
            ))
            .await;
    }
    let mut bodies = Vec::new();
    for _ in 0..3 {
        bodies.push(body_of(&app.next().await).unwrap_or_default());
    }
    assert_eq!(bodies, ["m1", "m2", "m3"]);
}

#[actix_rt::test]
async fn b32_wire_chat_state_publishes_without_body() {
    let (_t, mut app, mut romeo) =
        offline_setup(&["n1"], |c| c.push_notification_with_body = false).await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
        .await;
    assert_eq!(body_of(&app.next().await), None);
}

#[actix_rt::test]
async fn b33_b34_b35_wire_headline_error_and_subscribe_do_not_publish() {
    let (_t, mut app, mut romeo) = offline_setup(&["n1"], |_| {}).await;
    romeo
        .send("<message type='headline' to='juliet@localhost'><body>news</body></message>")
        .await;
    romeo
        .send("<message type='error' to='juliet@localhost'><body>bounce</body></message>")
        .await;
    romeo
        .send("<presence type='subscribe' to='juliet@localhost'/>")
        .await;
    marker(&mut romeo, &mut app, "after").await;
}

#[actix_rt::test]
async fn b36_wire_groupchat_to_an_absent_resource_publishes_to_every_registration() {
    let (_t, mut app, mut romeo) = offline_setup(&["n1", "n2"], |_| {}).await;
    romeo
        .send("<message type='groupchat' to='juliet@localhost/gone'><body>room</body></message>")
        .await;
    let mut nodes = vec![node_of(&app.next().await), node_of(&app.next().await)];
    nodes.sort();
    assert_eq!(nodes, [Some("n1".to_string()), Some("n2".to_string())]);
}

#[actix_rt::test]
async fn b44_wire_session_without_push_hibernates_without_publishing() {
    // The first message reaches the phone while it is online: kept out of the archive
    // (XEP-0334), so that the archive path (B40: the absent tablet pushed at once) stays
    // out of this test of the hibernation path.
    let t = TestServer::start(|c| {
        c.push_notification_with_body = true;
        c.smacks_hibernation_time = Duration::from_secs(1);
    })
    .await;
    let mut app = Component::connect(&t).await;
    // A registration of another, absent device: any wrong publish would go there.
    let mut tablet = t.login("juliet", "tablet").await;
    enable_push(&mut tablet, "n2").await;
    tablet.close().await;
    let mut phone = t.login("juliet", "phone").await;
    enable_sm(&mut phone).await;
    phone.send("<presence/>").await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>unacked</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>")
        .await;
    phone.until("message").await;
    phone.drop_connection().await;
    let dropped = std::time::Instant::now();
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>queued</body></message>")
        .await;
    // Nothing is published while the phone's session hibernates; when it expires its
    // unacked messages go offline and only then reach the tablet's registration.
    let first = app.next().await;
    assert!(
        dropped.elapsed() >= Duration::from_secs(1),
        "published during hibernation"
    );
    let second = app.next().await;
    let mut bodies = vec![body_of(&first), body_of(&second)];
    bodies.sort();
    assert_eq!(
        bodies,
        [Some("queued".to_string()), Some("unacked".to_string())]
    );
}

#[actix_rt::test]
async fn b62_b63_wire_errors_remove_the_registration() {
    let (t, mut app, mut romeo) = offline_setup(&["n1"], |c| c.push_max_errors = 2).await;
    for b in ["e1", "e2"] {
        romeo
            .send(&format!(
                "<message type='chat' to='juliet@localhost'><body>{b}</body></message>"
            ))
            .await;
        let p = app.next().await;
        app.answer_error(&p, "cancel", "item-not-found").await;
    }
    // n1 is gone; a fresh registration shows that the next message publishes only there.
    let mut juliet = t.login("juliet", "laptop").await;
    enable_push(&mut juliet, "n2").await;
    juliet.close().await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>after</body></message>")
        .await;
    let p = app.next().await;
    assert_eq!(node_of(&p).as_deref(), Some("n2"));
    assert_eq!(body_of(&p).as_deref(), Some("after"));
    app.expect_nothing_before_ping(&t).await;
}

#[actix_rt::test]
async fn b64_wire_wait_errors_keep_the_registration() {
    let (t, mut app, mut romeo) = offline_setup(&["n1"], |c| c.push_max_errors = 1).await;
    for b in ["w1", "w2", "w3"] {
        romeo
            .send(&format!(
                "<message type='chat' to='juliet@localhost'><body>{b}</body></message>"
            ))
            .await;
        let p = app.next().await;
        assert_eq!(body_of(&p).as_deref(), Some(b));
        app.answer_error(&p, "wait", "resource-constraint").await;
    }
    let _ = t;
}

fn is_stanza(el: &Element) -> bool {
    matches!(el.name(), "message" | "presence" | "iq")
}

/// A phone with stream management and push that has acknowledged everything and then
/// lost its connection. Returns its resumption id.
async fn sleeping_phone(t: &TestServer, node: &str) -> String {
    let mut phone = t.login("juliet", "phone").await;
    let previd = enable_sm(&mut phone).await;
    enable_push(&mut phone, node).await;
    phone.send("<presence/>").await;
    // Its own presence comes back after those of the user's other available resources
    // (RFC 6121 §4.2.2); everything up to it is acknowledged.
    let mut received = 1; // the enable's result
    loop {
        let (p, skipped) = phone.until("presence").await;
        received += 1 + skipped.iter().filter(|s| is_stanza(s)).count();
        if p.attr("from") == Some("juliet@localhost/phone") {
            break;
        }
    }
    phone
        .send_nonza(&format!("<a xmlns='urn:xmpp:sm:3' h='{received}'/>"))
        .await;
    phone.send_nonza("<r xmlns='urn:xmpp:sm:3'/>").await;
    phone.until("a").await;
    phone.drop_connection().await;
    previd
}

/// B42, B45 and B46 as amended by D20: the first message publishes at once (the window is
/// far longer than the client's deadline), the rest of the burst not at all, and only to
/// the sleeping phone's registration.
#[actix_rt::test]
async fn b42_b46_d20_wire_burst_to_a_hibernated_phone_gives_one_immediate_publish() {
    let t = TestServer::start(|c| {
        c.push_notification_with_body = true;
        c.push_batch_window = Duration::from_secs(60);
    })
    .await;
    let mut app = Component::connect(&t).await;
    // The tablet stays online with its own registration: it must not be pushed.
    let mut tablet = t.login("juliet", "tablet").await;
    enable_push(&mut tablet, "n2").await;
    tablet.send("<presence/>").await;
    // In force before the phone comes: the phone learns of it before its own presence.
    tablet.until("presence").await;
    sleeping_phone(&t, "n1").await;
    let mut romeo = t.login("romeo", "desk").await;
    for b in ["m1", "m2", "m3", "m4", "m5"] {
        romeo
            .send(&format!(
                "<message type='chat' to='juliet@localhost'><body>{b}</body></message>"
            ))
            .await;
    }
    let p = app.next().await;
    assert_eq!(node_of(&p).as_deref(), Some("n1"));
    assert_eq!(body_of(&p).as_deref(), Some("m1"));
    app.expect_nothing_before_ping(&t).await;
}

/// B47: a message after the first one's window opens a new window and publishes at once.
#[actix_rt::test]
async fn b47_wire_messages_in_separate_windows_give_two_publishes() {
    let window = Duration::from_millis(100);
    let t = TestServer::start(|c| {
        c.push_notification_with_body = true;
        c.push_batch_window = window;
    })
    .await;
    let mut app = Component::connect(&t).await;
    sleeping_phone(&t, "n1").await;
    let mut romeo = t.login("romeo", "desk").await;
    for b in ["first", "second"] {
        romeo
            .send(&format!(
                "<message type='chat' to='juliet@localhost'><body>{b}</body></message>"
            ))
            .await;
        assert_eq!(body_of(&app.next().await).as_deref(), Some(b));
        until_user_stats(&t, "juliet", "the batch window to close", |s| {
            s.open_batch_windows == 0
        })
        .await;
    }
}

/// B58 (and D14) on the wire: the first important push cuts the held hibernation back to
/// the normal timeout; when that runs out the session is destroyed, and its unacked
/// message goes to offline storage: pushed then to the other registration only, since
/// the phone's own registration already had it (D13).
#[actix_rt::test]
async fn b58_d14_wire_cut_back_then_expiry_hands_the_message_to_offline() {
    let t = TestServer::start(|c| {
        c.push_notification_with_body = true;
        c.push_batch_window = Duration::from_millis(100);
        c.smacks_hibernation_time = Duration::from_secs(1);
        c.push_max_hibernation_timeout = Duration::from_secs(30);
    })
    .await;
    let mut app = Component::connect(&t).await;
    let mut tablet = t.login("juliet", "tablet").await;
    enable_push(&mut tablet, "n2").await;
    tablet.close().await;
    let started = std::time::Instant::now();
    sleeping_phone(&t, "n1").await;
    let mut romeo = t.login("romeo", "desk").await;
    // The push, and the normal timeout it starts, follow this send: a lower bound that a
    // late arrival of the publish at the test cannot move.
    let pushed = std::time::Instant::now();
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>wake</body></message>")
        .await;
    let first = app.next().await;
    assert_eq!(node_of(&first).as_deref(), Some("n1"));
    app.answer_result(&first).await;
    let second = app.next().await;
    assert_eq!(
        node_of(&second).as_deref(),
        Some("n2"),
        "n1 is not pushed twice"
    );
    assert_eq!(body_of(&second).as_deref(), Some("wake"));
    assert!(
        pushed.elapsed() >= Duration::from_secs(1),
        "the normal timeout from the push"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "not the extended timeout"
    );
    app.answer_result(&second).await;
    // The message itself waits in offline storage for the next login.
    let mut juliet = t.login("juliet", "laptop").await;
    juliet.send("<presence/>").await;
    let (m, _) = juliet.until("message").await;
    assert_eq!(
        m.get_child("body", "jabber:client")
            .map(|b| b.text())
            .as_deref(),
        Some("wake")
    );
}

/// `component_queue_size` reached: a component that stops reading has at most that many
/// stanzas waiting; later publishes are dropped (and logged), the router goes on, and
/// publishes flow again once the component reads. The queue here is the test's own,
/// standing in for the one a component connection creates with the configured size.
#[actix_rt::test]
async fn publishes_past_a_full_component_queue_are_dropped_and_later_ones_flow() {
    use cloud_notify::push::RoutePublish;
    use cloud_notify::xmpp::router::{AttachComponent, ToComponent};
    let t = TestServer::start(|_| {}).await;
    let router = t.server.as_ref().unwrap().router.clone();
    let (tx, rx) = flume::bounded(2);
    let attach = |jid: &str, tx| AttachComponent {
        jid: jid.into(),
        tx,
    };
    assert!(router.send(attach("slow.localhost", tx)).await.unwrap());
    let publish = |i: usize| RoutePublish {
        to: "slow.localhost".parse().unwrap(),
        id: format!("p{i}"),
        xml: format!("<iq type='set' id='p{i}'/>"),
    };
    for i in 0..5 {
        router.do_send(publish(i));
    }
    // A reply from the router means it handled everything sent to it before.
    let (other, _keep) = flume::bounded(1);
    assert!(router.send(attach("other.localhost", other)).await.unwrap());
    // The two waiting count in the memory figures (`queues`) with their bytes, the
    // dropped ones do not, and taking them from the queue gives the bytes back.
    let held = &t.server.as_ref().unwrap().metrics.held;
    assert_eq!(held.get(), 2 * publish(0).xml.len() as u64);
    let mut got = Vec::new();
    while let Ok(ToComponent::Publish(xml, _)) = rx.try_recv() {
        got.push(xml);
    }
    assert_eq!(
        got,
        ["<iq type='set' id='p0'/>", "<iq type='set' id='p1'/>"]
    );
    assert_eq!(held.get(), 0);
    router.do_send(publish(5));
    match tokio::time::timeout(patience::deadline(), rx.recv_async()).await {
        Ok(Ok(ToComponent::Publish(xml, _))) => assert_eq!(xml, "<iq type='set' id='p5'/>"),
        _ => panic!("no publish after the queue drained"),
    }
}

/// `c2s_max_connections` counts sockets, not sessions: a hibernated session (its socket
/// gone) leaves its place to a new connection, and the socket that resumes it takes a
/// place of its own.
#[actix_rt::test]
async fn a_hibernated_session_holds_no_connection_place() {
    let t = TestServer::start(|c| c.c2s_max_connections = 2).await;
    let mut app = Component::connect(&t).await;
    let previd = sleeping_phone(&t, "n1").await;
    until_user_stats(&t, "juliet", "juliet's session to hibernate", |s| {
        s.hibernations_held == 1
    })
    .await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost' id='w'><body>wake</body></message>")
        .await;
    let p = app.next().await;
    assert_eq!(
        node_of(&p).as_deref(),
        Some("n1"),
        "juliet's session lives on"
    );
    app.answer_result(&p).await;
    // The second place: the hibernated session left it free for the resuming socket.
    let mut phone = client::authenticate(&t, "juliet", "juliet-pw")
        .await
        .expect("a place for the resuming phone");
    phone
        .send_nonza(&format!(
            "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='2'/>"
        ))
        .await;
    phone.until("resumed").await;
    let (m, _) = phone.until("message").await;
    assert_eq!(m.attr("id"), Some("w"));
    // Both places are taken by live sockets, the resumed one included.
    let reply = raw(
        &t,
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
    )
    .await;
    assert!(reply.is_empty(), "closed without a stream: {reply}");
    drop(romeo);
}

/// Polls the push module's view of a user until `pred` holds, failing at the deadline:
/// for state that only a timer or a lost socket changes, which nothing reports.
async fn until_user_stats(
    t: &TestServer,
    user: &str,
    what: &str,
    pred: impl Fn(&UserStats) -> bool,
) {
    let router = t.server.as_ref().expect("server running").router.clone();
    let deadline = std::time::Instant::now() + patience::deadline();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        let stats = router
            .send(GetUserStats { user: user.into() })
            .await
            .expect("push module answers");
        if stats.as_ref().is_some_and(&pred) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {stats:?}"
        );
        tick.tick().await;
    }
}
