//! SASL EXTERNAL (XEP-0178) between two servers whose certificates come from a CA made
//! by the test and trusted through `s2s_ca_file`. The sending server has no listener,
//! so dialback (which needs the receiving server to call back) cannot work: a message
//! that arrives was authenticated by certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};

use super::client::Component;
use super::s2s::online;
use super::{APP, TestServer, until_user_stats};

/// A CA in `dir` (ca.pem) and a certificate and key for `domain` signed by it; the
/// certificate file is the full chain (leaf, then CA), as Let's Encrypt's is.
fn ca_and_leaf(dir: &Path, domain: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec![domain.to_string()]).unwrap();
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    let (cert, key_path) = (
        dir.join(format!("{domain}.pem")),
        dir.join(format!("{domain}.key")),
    );
    std::fs::write(&cert, leaf.pem() + &ca.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_path, cert, key_path)
}

#[actix_rt::test]
async fn s2s_sasl_external_with_a_trusted_certificate_needs_no_dialback() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, a_cert, a_key) = ca_and_leaf(certs.path(), "a.localhost");
    let lb: SocketAddr = std::net::TcpListener::bind("127.0.0.3:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ca_b = ca.clone();
    // a.localhost: a certificate from the CA, no listener (dialback impossible).
    let a = TestServer::start(move |c| {
        c.domain = "a.localhost".into();
        c.tls_certificate = Some(a_cert);
        c.tls_key = Some(a_key);
        c.s2s_hosts = [("b.localhost".to_string(), lb)].into_iter().collect();
        c.s2s_timeout = Duration::from_secs(10);
    })
    .await;
    // b.localhost trusts the CA; its own certificate is self-signed.
    let b = TestServer::start(move |c| {
        c.domain = "b.localhost".into();
        c.s2s_listen = Some(lb);
        c.s2s_ca_file = Some(ca_b);
    })
    .await;
    let mut juliet = a.login("juliet", "phone").await;
    let mut romeo = online(&b, "romeo", "desk").await;
    super::s2s::message_arrives(
        &mut juliet,
        &mut romeo,
        "romeo@b.localhost",
        "juliet@a.localhost/phone",
        "by certificate",
    )
    .await;
}

#[actix_rt::test]
async fn s2s_an_untrusted_certificate_gets_no_sasl_external_and_no_link_without_dialback() {
    let certs = tempfile::tempdir().unwrap();
    let (_, a_cert, a_key) = ca_and_leaf(certs.path(), "a.localhost");
    let lb: SocketAddr = std::net::TcpListener::bind("127.0.0.3:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let a = TestServer::start(move |c| {
        c.domain = "a.localhost".into();
        c.tls_certificate = Some(a_cert);
        c.tls_key = Some(a_key);
        c.s2s_hosts = [("b.localhost".to_string(), lb)].into_iter().collect();
        c.s2s_timeout = Duration::from_secs(10);
    })
    .await;
    // b.localhost does not know the CA: it offers no EXTERNAL, dialback cannot reach a.
    let _b = TestServer::start(move |c| {
        c.domain = "b.localhost".into();
        c.s2s_listen = Some(lb);
    })
    .await;
    let mut juliet = online(&a, "juliet", "phone").await;
    juliet
        .send("<message type='chat' to='romeo@b.localhost' id='m1'><body>hi</body></message>")
        .await;
    let (e, _) = juliet.until("message").await;
    assert_eq!(e.attr("type"), Some("error"), "{}", String::from(&e));
    assert!(
        String::from(&e).contains("remote-server-not-found"),
        "{}",
        String::from(&e)
    );
}

/// XEP-0288 behind NAT: a.localhost has no listener and a certificate b.localhost trusts;
/// b.localhost is told a.localhost is at a port where nothing listens, so its own link
/// to a.localhost can only fail. What b's side sends back still arrives, on the stream
/// a.localhost opened, used both ways.
async fn natted_pair(certs: &Path) -> (TestServer, TestServer) {
    let (ca, a_cert, a_key) = ca_and_leaf(certs, "a.localhost");
    let lb: SocketAddr = std::net::TcpListener::bind("127.0.0.3:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nobody: SocketAddr = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let a = TestServer::start(move |c| {
        c.domain = "a.localhost".into();
        c.components.clear();
        c.tls_certificate = Some(a_cert);
        c.tls_key = Some(a_key);
        c.s2s_hosts = [("b.localhost".to_string(), lb), (APP.to_string(), lb)]
            .into_iter()
            .collect();
        c.s2s_timeout = Duration::from_secs(10);
    })
    .await;
    let b = TestServer::start(move |c| {
        c.domain = "b.localhost".into();
        c.s2s_listen = Some(lb);
        c.s2s_ca_file = Some(ca);
        c.s2s_hosts = [("a.localhost".to_string(), nobody)].into_iter().collect();
        c.s2s_timeout = Duration::from_secs(10);
    })
    .await;
    (a, b)
}

#[actix_rt::test]
async fn s2s_bidi_a_reply_comes_back_on_the_link_of_a_server_without_a_listener() {
    let certs = tempfile::tempdir().unwrap();
    let (a, b) = natted_pair(certs.path()).await;
    let mut juliet = online(&a, "juliet", "phone").await;
    let mut romeo = online(&b, "romeo", "desk").await;
    super::s2s::message_arrives(
        &mut juliet,
        &mut romeo,
        "romeo@b.localhost",
        "juliet@a.localhost/phone",
        "are you there?",
    )
    .await;
    super::s2s::message_arrives(
        &mut romeo,
        &mut juliet,
        "juliet@a.localhost/phone",
        "romeo@b.localhost/desk",
        "on your own link",
    )
    .await;
}

#[actix_rt::test]
async fn s2s_bidi_an_app_servers_answer_reaches_a_server_without_a_listener() {
    let certs = tempfile::tempdir().unwrap();
    let (a, b) = natted_pair(certs.path()).await;
    let mut app = Component::connect(&b).await;
    super::s2s::enable_push_and_leave(a.login("juliet", "phone").await, APP).await;
    let mut romeo = a.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@a.localhost' id='m1'><body>wake up</body></message>")
        .await;
    let publish = app.next().await;
    assert_eq!(publish.attr("from"), Some("a.localhost"));
    until_user_stats(&a, "juliet", "the publish pending", |s| {
        s.pending_publishes == 1
    })
    .await;
    // b.localhost cannot connect to a.localhost: the answer takes a's link to the app
    // server's domain, which a asked to use both ways.
    app.answer_result(&publish).await;
    until_user_stats(&a, "juliet", "the answer matched", |s| {
        s.pending_publishes == 0 && s.registrations == 1
    })
    .await;
}
