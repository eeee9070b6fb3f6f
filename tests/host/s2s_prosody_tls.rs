//! Federation with Prosody 0.12 (`prosody.rs` runs it) authenticated by certificates
//! from a CA made by the test: SASL EXTERNAL (XEP-0178) both ways, dialback where one
//! side does not trust the other's certificate, and bidirectional streams (XEP-0288,
//! Prosody's `mod_s2s_bidi`) for a server of ours with no listener. Which mechanism
//! was used is read from Prosody's log, whose lines for it are fixed in 0.12
//! (`mod_saslauth`, `mod_dialback`).

use std::path::Path;
use std::time::Duration;

use super::prosody::{PEER, PEER_APP, Prosody, Setup, TestCa, attr, free_port, prosody};
use super::{TestServer, until_user_stats};

const OURS: &str = "ours.localhost";

/// Prosody accepted our certificate on our link to it.
fn external_from_us(log: &str) -> bool {
    log.contains(&format!("Accepting SASL EXTERNAL identity from {OURS}"))
}

/// Prosody's link to us authenticated with its certificate.
fn external_to_us(log: &str) -> bool {
    log.contains(&format!("SASL EXTERNAL with {OURS} succeeded"))
}

/// Prosody checked our dialback key with our listener (our link to it used dialback).
fn dialback_from_us(log: &str) -> bool {
    log.contains(&format!("asking {OURS} if key"))
}

/// Prosody's link to us used dialback.
fn dialback_to_us(log: &str) -> bool {
    log.contains("sent dialback key on outgoing s2s stream")
}

/// Who trusts whom, and with which certificates.
struct Trust {
    /// Prosody trusts the CA that signed our certificate.
    prosody_trusts_us: bool,
    /// We trust the CA that signed Prosody's certificate.
    we_trust_prosody: bool,
    secure_auth: bool,
}

/// Prosody with a certificate from the test's CA, and us as `OURS` on a port of
/// 127.0.0.2, with a certificate from the CA too when Prosody is to trust it (else our
/// self-signed one).
async fn pair(dir: &Path, trust: Trust) -> Option<(Prosody, TestServer)> {
    let bin = prosody()?;
    let ca = TestCa::new(dir, "ca");
    let (p_cert, p_key) = ca.leaf(dir, &[PEER, PEER_APP]);
    let (our_cert, our_key) = ca.leaf(dir, &[OURS]);
    let listen = free_port("127.0.0.2");
    let p = Prosody::start(
        &bin,
        &dir.join("prosody"),
        Setup {
            hosts: vec![(OURS.into(), listen)],
            cert: Some((p_cert, p_key)),
            ca: Some(ca.pem.clone()),
            secure_auth: trust.secure_auth,
            bidi: false,
        },
    )
    .await;
    let peer = p.s2s;
    let ca = ca.pem.clone();
    let t = TestServer::start(move |c| {
        c.domain = OURS.into();
        c.components.clear();
        if trust.prosody_trusts_us {
            c.tls_certificate = Some(our_cert);
            c.tls_key = Some(our_key);
        }
        if trust.we_trust_prosody {
            c.s2s_ca_file = Some(ca);
        }
        c.s2s_secure_auth = trust.secure_auth;
        c.s2s_listen = Some(listen);
        c.s2s_hosts = [(PEER.to_string(), peer), (PEER_APP.to_string(), peer)]
            .into_iter()
            .collect();
        c.s2s_timeout = Duration::from_secs(15);
    })
    .await;
    Some((p, t))
}

/// juliet (ours) and alice (Prosody's) exchange a chat message each way: one over our
/// link to Prosody, one over Prosody's link to us.
async fn chat_both_ways(p: &Prosody, t: &TestServer) {
    p.register("alice");
    let mut alice = p.login("alice", "laptop").await;
    let mut juliet = super::s2s::online(t, "juliet", "phone").await;
    juliet
        .send(
            "<message type='chat' to='alice@p.localhost' id='m1'><body>to Prosody</body></message>",
        )
        .await;
    let m = alice.until(|e| e.name() == "message").await;
    assert_eq!(
        m.attr("from"),
        Some("juliet@ours.localhost/phone"),
        "{}\n{}",
        String::from(&m),
        p.log()
    );
    alice
        .send("<message type='chat' to='juliet@ours.localhost/phone' id='m2'><body>to us</body></message>")
        .await;
    let (m, _) = juliet.until("message").await;
    assert_eq!(
        m.attr("from"),
        Some("alice@p.localhost/laptop"),
        "{}\n{}",
        String::from(&m),
        p.log()
    );
}

#[actix_rt::test]
async fn prosody_sasl_external_both_ways_with_certificates_from_a_test_ca() {
    let dir = tempfile::tempdir().unwrap();
    let trust = Trust {
        prosody_trusts_us: true,
        we_trust_prosody: true,
        // Both sides refuse dialback: only certificates can carry the messages.
        secure_auth: true,
    };
    let Some((p, t)) = pair(dir.path(), trust).await else {
        return;
    };
    chat_both_ways(&p, &t).await;
    let log = p.log();
    assert!(external_from_us(&log), "{log}");
    assert!(external_to_us(&log), "{log}");
    assert!(!dialback_from_us(&log) && !dialback_to_us(&log), "{log}");
}

#[actix_rt::test]
async fn prosody_does_not_trust_our_certificate_so_our_link_falls_back_to_dialback() {
    let dir = tempfile::tempdir().unwrap();
    let trust = Trust {
        prosody_trusts_us: false,
        we_trust_prosody: true,
        secure_auth: false,
    };
    let Some((p, t)) = pair(dir.path(), trust).await else {
        return;
    };
    chat_both_ways(&p, &t).await;
    let log = p.log();
    assert!(dialback_from_us(&log) && !external_from_us(&log), "{log}");
    assert!(external_to_us(&log) && !dialback_to_us(&log), "{log}");
}

#[actix_rt::test]
async fn we_do_not_trust_prosodys_certificate_so_its_link_falls_back_to_dialback() {
    let dir = tempfile::tempdir().unwrap();
    let trust = Trust {
        prosody_trusts_us: true,
        we_trust_prosody: false,
        secure_auth: false,
    };
    let Some((p, t)) = pair(dir.path(), trust).await else {
        return;
    };
    chat_both_ways(&p, &t).await;
    let log = p.log();
    assert!(external_from_us(&log) && !dialback_from_us(&log), "{log}");
    assert!(dialback_to_us(&log) && !external_to_us(&log), "{log}");
}

/// Behind NAT: no `s2s_listen`, a certificate Prosody trusts, Prosody with
/// `mod_s2s_bidi` and told we are at a port where nothing listens, so its own links to
/// us can only fail. An IQ's answer and an app server's answer to a publish still
/// arrive, on the links we opened, used both ways.
#[actix_rt::test]
async fn prosody_bidi_answers_come_back_on_our_links_without_a_listener() {
    let Some(bin) = prosody() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let (p_cert, p_key) = ca.leaf(dir.path(), &[PEER, PEER_APP]);
    let (our_cert, our_key) = ca.leaf(dir.path(), &[OURS]);
    let nobody = free_port("127.0.0.2");
    let p = Prosody::start(
        &bin,
        &dir.path().join("prosody"),
        Setup {
            hosts: vec![(OURS.into(), nobody)],
            cert: Some((p_cert, p_key)),
            ca: Some(ca.pem.clone()),
            secure_auth: false,
            bidi: true,
        },
    )
    .await;
    let peer = p.s2s;
    let t = TestServer::start(move |c| {
        c.domain = OURS.into();
        c.components.clear();
        c.tls_certificate = Some(our_cert);
        c.tls_key = Some(our_key);
        c.s2s_hosts = [(PEER.to_string(), peer), (PEER_APP.to_string(), peer)]
            .into_iter()
            .collect();
        c.s2s_timeout = Duration::from_secs(15);
    })
    .await;
    let mut app = p.component().await;
    let mut juliet = t.login("juliet", "phone").await;
    let r = juliet
        .iq(&format!(
            "<iq type='get' id='p1' to='{PEER}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    assert_eq!(
        r.attr("type"),
        Some("result"),
        "{}\n{}",
        String::from(&r),
        p.log()
    );
    assert_eq!(r.attr("from"), Some(PEER));
    super::s2s::enable_push_and_leave(juliet, PEER_APP).await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@ours.localhost' id='m1'><body>hi</body></message>")
        .await;
    let publish = app
        .try_until("</iq>")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", p.log()));
    let publish = &publish[publish.find("<iq").expect("an iq")..];
    assert_eq!(attr(publish, "from").as_deref(), Some(OURS), "{publish}");
    let id = attr(publish, "id").expect("publish id");
    app.write(format!("<iq type='result' id='{id}' from='{PEER_APP}' to='{OURS}'/>").as_bytes())
        .await;
    until_user_stats(&t, "juliet", "the answer over our own link matched", |s| {
        s.pending_publishes == 0 && s.registrations == 1
    })
    .await;
    let log = p.log();
    assert!(external_from_us(&log), "{log}");
    assert!(log.contains("Requested bidirectional stream"), "{log}");
}
