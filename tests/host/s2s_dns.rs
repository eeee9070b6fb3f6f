//! SRV resolution against a DNS server the test runs on 127.0.0.8: the remote domain's
//! server listens on a port only its SRV record names, so a message only arrives if the
//! record was used.

use std::collections::HashMap;
use std::time::Duration;

use hickory_resolver::proto::rr::rdata::{A as ARecord, SRV};
use hickory_resolver::proto::rr::{RData, RecordType};

use super::TestServer;
use super::dns::{name, serve};
use super::s2s::online;

#[actix_rt::test]
async fn s2s_finds_the_remote_server_through_its_srv_record() {
    let (la, lb) = (
        std::net::TcpListener::bind("127.0.0.2:0")
            .unwrap()
            .local_addr()
            .unwrap(),
        std::net::TcpListener::bind("127.0.0.3:0")
            .unwrap()
            .local_addr()
            .unwrap(),
    );
    let mut zone = HashMap::new();
    zone.insert(
        ("_xmpp-server._tcp.b.test.".to_string(), RecordType::SRV),
        vec![
            // The lower priority comes first; the other target does not exist.
            RData::SRV(SRV::new(20, 0, 1, name("gone.b.test."))),
            RData::SRV(SRV::new(10, 5, lb.port(), name("xmpp.b.test."))),
        ],
    );
    zone.insert(
        ("xmpp.b.test.".to_string(), RecordType::A),
        vec![RData::A(ARecord::new(127, 0, 0, 3))],
    );
    // c.test has no server-to-server service at all.
    zone.insert(
        ("_xmpp-server._tcp.c.test.".to_string(), RecordType::SRV),
        vec![RData::SRV(SRV::new(0, 0, 0, name(".")))],
    );
    let dns = serve("127.0.0.8", zone);
    let a = TestServer::start(move |c| {
        c.domain = "a.localhost".into();
        c.s2s_listen = Some(la);
        c.s2s_dns_server = Some(dns);
        c.s2s_timeout = Duration::from_secs(10);
    })
    .await;
    let b = TestServer::start(move |c| {
        c.domain = "b.test".into();
        c.s2s_listen = Some(lb);
        c.s2s_hosts = [("a.localhost".to_string(), la)].into_iter().collect();
    })
    .await;
    let mut juliet = online(&a, "juliet", "phone").await;
    let mut romeo = online(&b, "romeo", "desk").await;
    super::s2s::message_arrives(
        &mut juliet,
        &mut romeo,
        "romeo@b.test",
        "juliet@a.localhost/phone",
        "found you",
    )
    .await;
    juliet
        .send("<message type='chat' to='x@c.test' id='m2'><body>anyone?</body></message>")
        .await;
    let (e, _) = juliet.until("message").await;
    assert_eq!(e.attr("id"), Some("m2"), "{}", String::from(&e));
    assert!(
        String::from(&e).contains("remote-server-not-found"),
        "{}",
        String::from(&e)
    );
}

#[actix_rt::test]
async fn s2s_uses_an_xmpps_server_record_for_direct_tls() {
    let (la, lb) = (
        std::net::TcpListener::bind("127.0.0.2:0")
            .unwrap()
            .local_addr()
            .unwrap(),
        std::net::TcpListener::bind("127.0.0.3:0")
            .unwrap()
            .local_addr()
            .unwrap(),
    );
    let mut zone = HashMap::new();
    // Only a direct-TLS record: b.test has no STARTTLS listener at all.
    zone.insert(
        ("_xmpps-server._tcp.b.test.".to_string(), RecordType::SRV),
        vec![RData::SRV(SRV::new(0, 0, lb.port(), name("xmpp.b.test.")))],
    );
    zone.insert(
        ("xmpp.b.test.".to_string(), RecordType::A),
        vec![RData::A(ARecord::new(127, 0, 0, 3))],
    );
    let dns = serve("127.0.0.8", zone);
    let a = TestServer::start(move |c| {
        c.domain = "a.localhost".into();
        c.s2s_listen = Some(la);
        c.s2s_dns_server = Some(dns);
        c.s2s_timeout = Duration::from_secs(10);
    })
    .await;
    let b = TestServer::start(move |c| {
        c.domain = "b.test".into();
        c.s2s_direct_tls_listen = Some(lb);
        c.s2s_hosts = [("a.localhost".to_string(), la)].into_iter().collect();
    })
    .await;
    let mut juliet = online(&a, "juliet", "phone").await;
    let mut romeo = online(&b, "romeo", "desk").await;
    juliet
        .send(
            "<message type='chat' to='romeo@b.test' id='m1'><body>over direct TLS</body></message>",
        )
        .await;
    let (m, _) = romeo.until("message").await;
    assert_eq!(
        m.attr("from"),
        Some("juliet@a.localhost/phone"),
        "{}",
        String::from(&m)
    );
}

/// D21 with the reason DNS gives: an app server's domain with no record at all. Each
/// publish ends as an s2s failure, the registration outlives `push_max_errors`, and
/// `push list` says why.
#[actix_rt::test]
async fn d21_a_domain_without_dns_records_shows_in_push_list() {
    let dns = serve("127.0.0.8", HashMap::new());
    let a = TestServer::start(move |c| {
        c.domain = "a.localhost".into();
        c.components.clear();
        c.push_max_errors = 1;
        c.push_response_timeout = Duration::from_secs(1);
        c.s2s_dns_server = Some(dns);
    })
    .await;
    super::s2s::enable_push_and_leave(a.login("juliet", "phone").await, "push.nowhere.test").await;
    let mut romeo = a.login("romeo", "desk").await;
    for i in 0..2 {
        romeo
            .send(&format!(
                "<message type='chat' to='juliet@a.localhost' id='m{i}'><body>hi</body></message>"
            ))
            .await;
        super::s2s::until_publishes(&a, "the publish ended as an s2s failure", |h| {
            h.s2s_failure > i && h.error == 0 && h.timeout == 0
        })
        .await;
    }
    let run = super::operate::cli(&a, &["push", "list", "juliet"]).await;
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.contains("\npush.nowhere.test"), "{out}");
    assert!(
        out.contains("ago): remote-server-not-found: no DNS record: "),
        "{out}"
    );
    assert!(out.contains("  errors in a row:  0 "), "{out}");
}
