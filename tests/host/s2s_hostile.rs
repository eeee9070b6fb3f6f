//! Inbound server-to-server streams against a peer that writes raw bytes: the limits of
//! `s2s_listen` (unauthenticated lifetime, connections per address, stanza size) and the
//! rules for stanzas (nothing before dialback, `from` authenticated, `to` ours).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use super::TestServer;
use super::raw::Raw;

const A: &str = "a.localhost";

fn header(from: &str, to: &str) -> Vec<u8> {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
         xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
         from='{from}' to='{to}' version='1.0'>"
    )
    .into_bytes()
}

/// a.localhost listening for servers on 127.0.0.2, plaintext allowed (the raw peer
/// speaks no TLS), with `tweak` applied.
async fn listening(
    tweak: impl FnOnce(&mut cloud_notify::config::Config),
) -> (TestServer, SocketAddr) {
    let t = TestServer::start(|c| {
        c.domain = A.into();
        c.s2s_listen = Some("127.0.0.2:0".parse().unwrap());
        c.s2s_require_encryption = false;
        tweak(c);
    })
    .await;
    let addr = t.server.as_ref().unwrap().s2s_addr.expect("s2s listener");
    (t, addr)
}

/// Dialback offered in a peer's stream features.
pub(super) const DIALBACK: &str = "<dialback xmlns='urn:xmpp:features:dialback'/>";

/// Answers the opening of our link as the server of plain.localhost would, without
/// TLS: reads our stream header, sends its own with `features`.
pub(super) async fn answer_link_as_plain(p: &mut Raw, features: &str) {
    p.until("<stream:stream").await;
    p.until(">").await;
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
         xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
         from='plain.localhost' id='p1' version='1.0'><stream:features>{features}\
         </stream:features>"
    );
    p.write(header.as_bytes()).await;
}

async fn opened(addr: SocketAddr, from: &str, to: &str) -> Raw {
    let mut peer = Raw::connect(addr).await;
    peer.write(&header(from, to)).await;
    peer
}

#[actix_rt::test]
async fn s2s_stream_that_does_not_authenticate_ends_at_s2s_timeout() {
    let (_t, addr) = listening(|c| c.s2s_timeout = Duration::from_secs(1)).await;
    let mut peer = opened(addr, "evil.localhost", A).await;
    peer.until("</stream:features>").await;
    let rest = peer.rest_until_closed().await;
    assert!(rest.contains("connection-timeout"), "{rest}");
}

#[actix_rt::test]
async fn s2s_connections_past_the_per_address_limit_are_closed_at_accept() {
    let (_t, addr) = listening(|c| c.s2s_max_connections_per_ip = 1).await;
    let mut first = opened(addr, "evil.localhost", A).await;
    first.until("</stream:features>").await;
    let mut second = Raw::connect(addr).await;
    assert_eq!(
        second.rest_until_closed().await,
        "",
        "closed without a word"
    );
    first.close().await;
}

/// What SIGHUP does (`Server::reload`): a lowered per-address quota refuses the next
/// stream; raised again, it admits at once. (That a lowered quota closes no open
/// connection is tested on the client quotas, through the binary, in tests/cli.rs.)
#[actix_rt::test]
async fn a_reload_changes_the_s2s_per_address_quota_for_new_connections() {
    let (t, addr) = listening(|c| c.s2s_max_connections_per_ip = 2).await;
    let mut first = opened(addr, "evil.localhost", A).await;
    first.until("</stream:features>").await;
    let server = t.server.as_ref().expect("running");
    let mut lowered = t.cfg.clone();
    lowered.s2s_max_connections_per_ip = 1;
    let reloaded = server.reload(&lowered, true);
    assert!(
        reloaded
            .applied
            .iter()
            .any(|a| a.key == "s2s_max_connections_per_ip" && a.old == "2" && a.new == "1"),
        "{:?}",
        reloaded.applied
    );
    let mut second = Raw::connect(addr).await;
    assert_eq!(second.rest_until_closed().await, "", "refused at accept");
    let mut raised = t.cfg.clone();
    raised.s2s_max_connections_per_ip = 2;
    server.reload(&raised, true);
    let mut third = opened(addr, "evil.localhost", A).await;
    third.until("</stream:features>").await;
    first.close().await;
    third.close().await;
}

#[actix_rt::test]
async fn a_reload_changes_the_s2s_connection_total_for_new_connections() {
    let (t, addr) = listening(|c| c.s2s_max_connections = 2).await;
    let mut first = opened(addr, "evil.localhost", A).await;
    first.until("</stream:features>").await;
    let server = t.server.as_ref().expect("running");
    let mut lowered = t.cfg.clone();
    lowered.s2s_max_connections = 1;
    let reloaded = server.reload(&lowered, true);
    assert!(
        reloaded
            .applied
            .iter()
            .any(|a| a.key == "s2s_max_connections" && a.old == "2" && a.new == "1"),
        "{:?}",
        reloaded.applied
    );
    let mut second = Raw::connect(addr).await;
    assert_eq!(second.rest_until_closed().await, "", "refused at accept");
    first.close().await;
}

#[actix_rt::test]
async fn s2s_stanza_past_the_size_limit_ends_the_stream() {
    let (_t, addr) = listening(|c| c.s2s_stanza_size_limit = 10 * 1024).await;
    let mut peer = opened(addr, "evil.localhost", A).await;
    peer.until("</stream:features>").await;
    let body = "x".repeat(20 * 1024);
    peer.write(format!("<message><body>{body}</body></message>").as_bytes())
        .await;
    let rest = peer.rest_until_closed().await;
    assert!(rest.contains("policy-violation"), "{rest}");
}

#[actix_rt::test]
async fn s2s_stream_for_a_domain_we_do_not_serve_is_host_unknown() {
    let (_t, addr) = listening(|_| {}).await;
    let mut peer = opened(addr, "evil.localhost", "elsewhere.localhost").await;
    let rest = peer.rest_until_closed().await;
    assert!(rest.contains("host-unknown"), "{rest}");
}

#[actix_rt::test]
async fn s2s_stanza_before_dialback_is_not_authorized() {
    let (_t, addr) = listening(|_| {}).await;
    let mut peer = opened(addr, "evil.localhost", A).await;
    peer.until("</stream:features>").await;
    peer.write(
        b"<message from='x@evil.localhost' to='juliet@a.localhost'><body>hi</body></message>",
    )
    .await;
    let rest = peer.rest_until_closed().await;
    assert!(rest.contains("not-authorized"), "{rest}");
}

/// The peer's authoritative server, on 127.0.0.6: answers one `<db:verify/>` with
/// `valid`, as the real evil.localhost would for its own key.
async fn authoritative(listener: TcpListener) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut a = Raw::over(tcp);
    a.until("<stream:stream").await;
    a.until(">").await;
    a.write(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
          xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
          from='evil.localhost' id='auth1' version='1.0'><stream:features/>",
    )
    .await;
    let verify = a.until("</db:verify>").await;
    let id = verify
        .split("id='")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("the verify request names the stream id");
    a.write(
        format!("<db:verify from='evil.localhost' to='a.localhost' id='{id}' type='valid'/>")
            .as_bytes(),
    )
    .await;
    a.rest_until_closed().await;
}

#[actix_rt::test]
async fn s2s_after_dialback_stanzas_enter_but_a_foreign_from_is_invalid_from() {
    let evil = TcpListener::bind("127.0.0.6:0").await.unwrap();
    let evil_addr = evil.local_addr().unwrap();
    let (t, addr) = listening(move |c| {
        c.s2s_hosts = [("evil.localhost".to_string(), evil_addr)]
            .into_iter()
            .collect();
    })
    .await;
    let verifier = actix_rt::spawn(authoritative(evil));
    let mut juliet = super::s2s::online(&t, "juliet", "phone").await;
    let mut peer = opened(addr, "evil.localhost", A).await;
    peer.until("</stream:features>").await;
    peer.write(b"<db:result from='evil.localhost' to='a.localhost'>somekey</db:result>")
        .await;
    let answer = peer.until("/>").await;
    assert!(answer.contains("type='valid'"), "{answer}");
    // A user part that does not read back as itself (U+1D40 prints as `T`) is that
    // stanza's fault (the router answers it `jid-malformed`): the stream goes on, so
    // the next message arrives.
    peer.write("<message type='chat' from='x@evil.localhost/r' to='r\u{1D40}meo@a.localhost' id='m0'><body>bad to</body></message>".as_bytes())
        .await;
    peer.write(b"<message type='chat' from='x@evil.localhost/r' to='juliet@a.localhost' id='m1'><body>over s2s</body></message>")
        .await;
    let (m, _) = juliet.until("message").await;
    assert_eq!(m.attr("id"), Some("m1"));
    assert_eq!(
        m.attr("from"),
        Some("x@evil.localhost/r"),
        "{}",
        String::from(&m)
    );
    peer.write(b"<message type='chat' from='x@other.localhost' to='juliet@a.localhost'><body>forged</body></message>")
        .await;
    let rest = peer.rest_until_closed().await;
    assert!(rest.contains("invalid-from"), "{rest}");
    verifier.await.unwrap();
}

#[actix_rt::test]
async fn s2s_direct_tls_listener_offers_dialback_at_once() {
    let t = TestServer::start(|c| {
        c.domain = A.into();
        c.s2s_direct_tls_listen = Some("127.0.0.2:0".parse().unwrap());
    })
    .await;
    let addr = t
        .server
        .as_ref()
        .unwrap()
        .s2s_direct_tls_addr
        .expect("listener");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let config = cloud_notify::s2s::client_tls::config(Some(b"xmpp-server"), None).unwrap();
    let name = rustls::pki_types::ServerName::try_from(A).unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS from the first byte");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"xmpp-server"[..]));
    let (mut r, mut w) = tokio::io::split(tls);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    w.write_all(&header("evil.localhost", A)).await.unwrap();
    let mut got = String::new();
    let deadline = tokio::time::Instant::now() + super::patience::deadline();
    while !got.contains("</stream:features>") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, r.read(&mut buf))
            .await
            .expect("features within the deadline")
            .unwrap();
        assert!(n > 0, "closed: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("urn:xmpp:features:dialback"), "{got}");
    assert!(!got.contains("starttls"), "already encrypted: {got}");
}

#[actix_rt::test]
async fn s2s_dialback_before_starttls_is_refused_when_encryption_is_required() {
    let (_t, addr) = listening(|c| c.s2s_require_encryption = true).await;
    let mut peer = opened(addr, "evil.localhost", A).await;
    let features = peer.until("</stream:features>").await;
    assert!(
        features.contains("<required"),
        "STARTTLS required: {features}"
    );
    assert!(
        !features.contains("urn:xmpp:features:dialback"),
        "no dialback before TLS: {features}"
    );
    peer.write(b"<db:result from='evil.localhost' to='a.localhost'>somekey</db:result>")
        .await;
    let rest = peer.rest_until_closed().await;
    assert!(rest.contains("policy-violation"), "{rest}");
}

/// A peer that offers no STARTTLS: with `s2s_require_encryption` (the default) no link
/// is made, and the message bounces.
#[actix_rt::test]
async fn s2s_peer_without_tls_gets_no_link_when_encryption_is_required() {
    let plain = TcpListener::bind("127.0.0.6:0").await.unwrap();
    let plain_addr = plain.local_addr().unwrap();
    let t = TestServer::start(move |c| {
        c.domain = A.into();
        c.s2s_hosts = [("plain.localhost".to_string(), plain_addr)]
            .into_iter()
            .collect();
    })
    .await;
    let peer = actix_rt::spawn(async move {
        let (tcp, _) = plain.accept().await.unwrap();
        let mut p = Raw::over(tcp);
        answer_link_as_plain(&mut p, DIALBACK).await;
        p.rest_until_closed().await
    });
    let mut juliet = super::s2s::online(&t, "juliet", "phone").await;
    juliet
        .send("<message type='chat' to='x@plain.localhost' id='m1'><body>secret</body></message>")
        .await;
    let (e, _) = juliet.until("message").await;
    assert_eq!(e.attr("type"), Some("error"), "{}", String::from(&e));
    assert!(
        String::from(&e).contains("remote-server-not-found"),
        "{}",
        String::from(&e)
    );
    let seen = peer.await.unwrap();
    assert!(
        !seen.contains("secret"),
        "nothing sent in the clear: {seen}"
    );
}

#[actix_rt::test]
async fn s2s_secure_auth_offers_no_dialback_and_refuses_it() {
    let (_t, addr) = listening(|c| c.s2s_secure_auth = true).await;
    let mut peer = opened(addr, "evil.localhost", A).await;
    let features = peer.until("</stream:features>").await;
    assert!(
        !features.contains("urn:xmpp:features:dialback"),
        "{features}"
    );
    peer.write(b"<db:result from='evil.localhost' to='a.localhost'>somekey</db:result>")
        .await;
    let rest = peer.rest_until_closed().await;
    assert!(rest.contains("not-authorized"), "{rest}");
}

/// Our link to a peer that offers bidirectional streams (XEP-0288) asks for them, and
/// what the peer sends back on it is checked as on an inbound stream: a stanza from the
/// peer's domain reaches the user, one from another domain ends the link (`invalid-from`).
#[actix_rt::test]
async fn s2s_bidi_link_takes_the_peers_stanzas_but_only_from_its_domain() {
    let plain = TcpListener::bind("127.0.0.6:0").await.unwrap();
    let plain_addr = plain.local_addr().unwrap();
    let t = TestServer::start(move |c| {
        c.domain = A.into();
        c.s2s_require_encryption = false;
        c.s2s_hosts = [("plain.localhost".to_string(), plain_addr)]
            .into_iter()
            .collect();
    })
    .await;
    let peer = actix_rt::spawn(async move {
        let (tcp, _) = plain.accept().await.unwrap();
        let mut p = Raw::over(tcp);
        let features = format!("<bidi xmlns='urn:xmpp:features:bidi'/>{DIALBACK}");
        answer_link_as_plain(&mut p, &features).await;
        let asked = p.until("</db:result>").await;
        assert!(asked.contains("urn:xmpp:bidi"), "bidi asked for: {asked}");
        p.write(b"<db:result type='valid' from='plain.localhost' to='a.localhost'/>")
            .await;
        p.until("</message>").await;
        p.write(
            b"<message type='chat' from='x@plain.localhost/r' to='juliet@a.localhost/phone' \
              id='b1'><body>back on your link</body></message>",
        )
        .await;
        p.write(
            b"<message type='chat' from='x@evil.localhost/r' to='juliet@a.localhost/phone' \
              id='b2'><body>forged</body></message>",
        )
        .await;
        p.rest_until_closed().await
    });
    let mut juliet = super::s2s::online(&t, "juliet", "phone").await;
    juliet
        .send("<message type='chat' to='x@plain.localhost' id='m1'><body>hi</body></message>")
        .await;
    let (m, _) = juliet.until("message").await;
    assert_eq!(
        m.attr("from"),
        Some("x@plain.localhost/r"),
        "{}",
        String::from(&m)
    );
    let seen = peer.await.unwrap();
    assert!(seen.contains("invalid-from"), "{seen}");
}

/// An authenticated stream the peer leaves quiet is closed at `s2s_idle_timeout` with a
/// plain end of stream (it is idle, not broken), not as one that never authenticated.
#[actix_rt::test]
async fn s2s_authenticated_stream_left_idle_ends_plainly_at_s2s_idle_timeout() {
    let evil = TcpListener::bind("127.0.0.6:0").await.unwrap();
    let evil_addr = evil.local_addr().unwrap();
    let (_t, addr) = listening(move |c| {
        c.s2s_hosts = [("evil.localhost".to_string(), evil_addr)]
            .into_iter()
            .collect();
        c.s2s_idle_timeout = Duration::from_secs(1);
    })
    .await;
    let verifier = actix_rt::spawn(authoritative(evil));
    let mut peer = opened(addr, "evil.localhost", A).await;
    peer.until("</stream:features>").await;
    peer.write(b"<db:result from='evil.localhost' to='a.localhost'>somekey</db:result>")
        .await;
    let answer = peer.until("/>").await;
    assert!(answer.contains("type='valid'"), "{answer}");
    let rest = peer.rest_until_closed().await;
    assert!(rest.contains("</stream:stream>"), "{rest}");
    assert!(!rest.contains("stream:error"), "{rest}");
    verifier.await.unwrap();
}
