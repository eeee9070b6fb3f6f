//! Federation with a real peer, Prosody 0.12 (`prosody.rs` runs it), with self-signed
//! certificates on both sides and `s2s_secure_auth = false`, so that dialback is what
//! authenticates both ways: IQs, chat, presence subscriptions, publishes to an app
//! server attached to Prosody, and Prosody going away under publishes (D21).

use std::net::SocketAddr;
use std::time::Duration;

use xmpp_parsers::minidom::Element;

use super::client::Client;
use super::operate::{cli, parse_openmetrics, scrape, text};
use super::prosody::{PEER, PEER_APP, PeerClient, Prosody, Setup, attr, free_port, prosody};
use super::raw::Raw;
use super::{TestServer, until_user_stats};

/// Our domain as an IP literal, which Prosody reaches on port 5269 without DNS.
const OURS_IP: &str = "127.0.0.2";
/// Our domain as a name, which Prosody finds through `test_s2s_hosts`.
const OURS: &str = "ours.localhost";

/// Our server as `OURS` listening on a port of 127.0.0.2, and Prosody told where.
async fn dialback_pair(
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut cloud_notify::config::Config) + 'static,
) -> Option<(Prosody, TestServer)> {
    let bin = prosody()?;
    let listen = free_port("127.0.0.2");
    let p = Prosody::start(
        &bin,
        dir,
        Setup {
            hosts: vec![(OURS.into(), listen)],
            ..Setup::default()
        },
    )
    .await;
    let peer = p.s2s;
    let t = TestServer::start(move |c| {
        c.domain = OURS.into();
        c.components.clear();
        c.s2s_listen = Some(listen);
        c.s2s_hosts = [(PEER.to_string(), peer), (PEER_APP.to_string(), peer)]
            .into_iter()
            .collect();
        c.s2s_timeout = Duration::from_secs(15);
        tweak(c);
    })
    .await;
    Some((p, t))
}

/// The next publish the app server attached to Prosody receives, as text.
async fn next_publish(app: &mut Raw, p: &Prosody) -> String {
    let publish = app
        .try_until("</iq>")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", p.log()));
    publish[publish.find("<iq").expect("an iq")..].to_string()
}

/// The app server answers `publish` with a result.
async fn answer(app: &mut Raw, publish: &str, ours: &str) {
    let id = attr(publish, "id").expect("publish id");
    app.write(format!("<iq type='result' id='{id}' from='{PEER_APP}' to='{ours}'/>").as_bytes())
        .await;
}

#[actix_rt::test]
async fn prosody_federation_iq_both_ways_and_a_push_to_its_component() {
    let Some(bin) = prosody() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = Prosody::start(&bin, dir.path(), Setup::default()).await;
    let peer = p.s2s;
    let t = TestServer::start(move |c| {
        c.domain = OURS_IP.into();
        c.components.clear();
        c.s2s_listen = Some(SocketAddr::from(([127, 0, 0, 2], 5269)));
        c.s2s_hosts = [(PEER.to_string(), peer), (PEER_APP.to_string(), peer)]
            .into_iter()
            .collect();
        c.s2s_timeout = Duration::from_secs(15);
    })
    .await;
    let mut app = p.component().await;
    let mut juliet = t.login("juliet", "phone").await;
    // Out over our link (Prosody verifies our key on our listener), the answer back over
    // Prosody's link to us (we verify its key with it).
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
    // A push to an app server attached to Prosody, as a phone with Conversations' p2
    // would use it; the answer comes back and is matched.
    super::s2s::enable_push_and_leave(juliet, PEER_APP).await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@127.0.0.2' id='m1'><body>hi</body></message>")
        .await;
    let publish = next_publish(&mut app, &p).await;
    assert_eq!(
        attr(&publish, "from").as_deref(),
        Some(OURS_IP),
        "{publish}"
    );
    assert_eq!(attr(&publish, "type").as_deref(), Some("set"), "{publish}");
    assert!(publish.contains("the-secret"), "{publish}");
    answer(&mut app, &publish, OURS_IP).await;
    until_user_stats(&t, "juliet", "the answer through Prosody matched", |s| {
        s.pending_publishes == 0 && s.registrations == 1
    })
    .await;
}

fn is_presence_from(e: &Element, from: &str) -> bool {
    e.name() == "presence"
        && e.attr("type").is_none()
        && e.attr("from").is_some_and(|f| f.starts_with(from))
}

fn show(e: &Element) -> Option<String> {
    e.children().find(|c| c.name() == "show").map(|c| c.text())
}

/// Reads until an available presence from `from` (a bare JID's resources) arrives.
async fn client_presence_from(c: &mut Client, from: &str) -> Element {
    loop {
        let (e, _) = c.until("presence").await;
        if is_presence_from(&e, from) {
            return e;
        }
    }
}

/// The subscription state of `contact` in a roster result.
fn subscription(roster: &Element, contact: &str) -> Option<String> {
    roster
        .children()
        .flat_map(|q| q.children())
        .find(|i| i.attr("jid") == Some(contact))
        .and_then(|i| i.attr("subscription"))
        .map(str::to_string)
}

async fn peer_presence_from(c: &mut PeerClient, from: &str) -> Element {
    c.until(|e| is_presence_from(e, from)).await
}

#[actix_rt::test]
async fn prosody_chat_and_presence_subscriptions_both_ways_with_a_prosody_user() {
    let dir = tempfile::tempdir().unwrap();
    let Some((p, t)) = dialback_pair(dir.path(), |_| {}).await else {
        return;
    };
    p.register("alice");
    let mut alice = p.login("alice", "laptop").await;
    let mut juliet = super::s2s::online(&t, "juliet", "phone").await;
    // Chat, both ways.
    juliet
        .send("<message type='chat' to='alice@p.localhost' id='m1'><body>hello Prosody</body></message>")
        .await;
    let m = alice.until(|e| e.name() == "message").await;
    assert_eq!(
        m.attr("from"),
        Some("juliet@ours.localhost/phone"),
        "{}\n{}",
        String::from(&m),
        p.log()
    );
    assert!(
        String::from(&m).contains("hello Prosody"),
        "{}",
        String::from(&m)
    );
    alice
        .send("<message type='chat' to='juliet@ours.localhost/phone' id='m2'><body>hello back</body></message>")
        .await;
    let (m, _) = juliet.until("message").await;
    assert_eq!(m.attr("from"), Some("alice@p.localhost/laptop"));
    assert!(
        String::from(&m).contains("hello back"),
        "{}",
        String::from(&m)
    );
    // juliet subscribes to alice; alice approves; alice's presence follows at once
    // (RFC 6121 §3.1.5, Prosody sends it).
    juliet
        .send("<presence type='subscribe' to='alice@p.localhost'/>")
        .await;
    let request = alice
        .until(|e| e.name() == "presence" && e.attr("type") == Some("subscribe"))
        .await;
    assert_eq!(request.attr("from"), Some("juliet@ours.localhost"));
    alice
        .send("<presence type='subscribed' to='juliet@ours.localhost'/>")
        .await;
    client_presence_from(&mut juliet, "alice@p.localhost/laptop").await;
    // alice subscribes to juliet; juliet approves; juliet's presence follows at once
    // (our side sends it).
    alice
        .send("<presence type='subscribe' to='juliet@ours.localhost'/>")
        .await;
    let request = loop {
        // The `subscribed` of juliet's own request may still be on its way.
        let (e, _) = juliet.until("presence").await;
        if e.attr("type") == Some("subscribe") {
            break e;
        }
    };
    assert_eq!(request.attr("from"), Some("alice@p.localhost"));
    juliet
        .send("<presence type='subscribed' to='alice@p.localhost'/>")
        .await;
    peer_presence_from(&mut alice, "juliet@ours.localhost/phone").await;
    // Both subscribed: a change of presence reaches the other side on the same streams
    // (an answer to an earlier probe, with the old presence, may come first).
    juliet.send("<presence><show>away</show></presence>").await;
    alice
        .until(|e| {
            is_presence_from(e, "juliet@ours.localhost/phone") && show(e).as_deref() == Some("away")
        })
        .await;
    alice.send("<presence><show>dnd</show></presence>").await;
    loop {
        let e = client_presence_from(&mut juliet, "alice@p.localhost/laptop").await;
        if show(&e).as_deref() == Some("dnd") {
            break;
        }
    }
    // Both rosters hold the other with subscription both.
    let r = juliet
        .iq("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    assert_eq!(
        subscription(&r, "alice@p.localhost").as_deref(),
        Some("both"),
        "{}",
        String::from(&r)
    );
    alice
        .send("<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let r = alice
        .until(|e| e.name() == "iq" && e.attr("id") == Some("r2"))
        .await;
    assert_eq!(
        subscription(&r, "juliet@ours.localhost").as_deref(),
        Some("both"),
        "{}",
        String::from(&r)
    );
}

/// One count from our OpenMetrics endpoint (0 when the series is absent).
async fn metric(t: &TestServer, series: &str) -> f64 {
    let addr = t.server.as_ref().unwrap().metrics_addr.expect("metrics on");
    let get = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (_, body) = scrape(addr, get).await;
    parse_openmetrics(&body).get(series).copied().unwrap_or(0.0)
}

/// Polls a count until it reaches `at_least`: the push module counts as it handles an
/// answer or a timeout, which nothing on the wire reports.
async fn until_metric(t: &TestServer, series: &str, at_least: f64) {
    let deadline = std::time::Instant::now() + super::patience::wait(Duration::from_secs(15));
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        let v = metric(t, series).await;
        if v >= at_least {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} stayed at {v}, wanted {at_least}"
        );
        tick.tick().await;
    }
}

/// D21 with a real peer: while Prosody is down, publishes fail in our s2s layer, more of
/// them than `push_max_errors`; none counts as the app server's error, the registration
/// stays, and once Prosody is back the next publish reaches its component.
#[actix_rt::test]
async fn prosody_down_for_several_publishes_keeps_the_registration_d21() {
    const MAX_ERRORS: u32 = 2;
    let dir = tempfile::tempdir().unwrap();
    let Some((mut p, t)) = dialback_pair(dir.path(), |c| {
        c.push_max_errors = MAX_ERRORS;
        c.push_response_timeout = Duration::from_secs(2);
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
    else {
        return;
    };
    // A remote app server is counted under "other" (the label names only components).
    let outcome = |o: &str| {
        format!("cloud_notify_push_publishes_total{{outcome=\"{o}\",app_server=\"other\"}}")
    };
    let (success, s2s_failure, error) =
        (outcome("success"), outcome("s2s_failure"), outcome("error"));
    let mut app = p.component().await;
    super::s2s::enable_push_and_leave(t.login("juliet", "phone").await, PEER_APP).await;
    let mut romeo = super::s2s::online(&t, "romeo", "desk").await;
    let message = |n: u32| {
        format!(
            "<message type='chat' to='juliet@ours.localhost' id='m{n}'><body>{n}</body></message>"
        )
    };
    // The path works: a publish and its answer.
    romeo.send(&message(0)).await;
    let publish = next_publish(&mut app, &p).await;
    answer(&mut app, &publish, OURS).await;
    until_metric(&t, &success, 1.0).await;
    // Prosody goes away; messages keep coming for the sleeping phone.
    drop(app);
    p.stop();
    let down = MAX_ERRORS + 1;
    for n in 1..=down {
        romeo.send(&message(n)).await;
    }
    // Each publish ends as our own s2s layer's failure (held, then given up), none as an
    // error of the app server's.
    until_metric(&t, &s2s_failure, f64::from(down)).await;
    assert_eq!(metric(&t, &error).await, 0.0);
    until_user_stats(&t, "juliet", "the publishes ended", |s| {
        s.pending_publishes == 0 && s.registrations == 1
    })
    .await;
    let run = cli(&t, &["push", "list", "juliet"]).await;
    let out = text(&run.stdout);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(out.contains(&format!("\n{PEER_APP} node 'n1'\n")), "{out}");
    assert!(out.contains("  errors in a row:  0 "), "{out}");
    assert!(out.contains("  last s2s failure: "), "{out}");
    assert!(!out.contains("  last s2s failure: never"), "{out}");
    assert!(out.contains("removed in the last 30 days: none"), "{out}");
    // Prosody is back: the next publish reaches the component and is answered.
    p.restart().await;
    let mut app = p.component().await;
    romeo.send(&message(down + 1)).await;
    let publish = next_publish(&mut app, &p).await;
    assert_eq!(attr(&publish, "from").as_deref(), Some(OURS), "{publish}");
    answer(&mut app, &publish, OURS).await;
    until_metric(&t, &success, 2.0).await;
    until_user_stats(&t, "juliet", "the registration still there", |s| {
        s.pending_publishes == 0 && s.registrations == 1
    })
    .await;
}
