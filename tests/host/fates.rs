//! Every accepted message has exactly one fate (D22): delivered, in offline storage, or
//! bounced to its sender. And sessions never lock their own account out.

use std::collections::HashSet;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use xmpp_parsers::minidom::Element;

use super::raw::{self, Raw};
use super::{TestServer, client, enable_sm};

/// Messages sent in the D22 tests: 3,000 against the default limits (queue 500,
/// offline storage 1,000). Under qemu (`CLOUD_NOTIFY_TEST_RUNNER`, an emulated board)
/// the same proportions at a fifth of the size, so the run stays within its deadlines.
fn scale() -> (usize, usize, usize) {
    if super::patience::emulated() {
        (600, 100, 200)
    } else {
        (3000, 500, 1000)
    }
}

fn plaintext(c: &mut cloud_notify::config::Config) {
    let (_, queue, offline) = scale();
    c.smacks_max_queue_size = queue;
    c.offline_max_messages = offline;
    raw::plaintext(c);
}

/// `3-7, 9` for 3, 4, 5, 6, 7, 9.
fn ranges(ids: impl Iterator<Item = usize>) -> String {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for i in ids {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => out.push((i, i)),
        }
    }
    let parts: Vec<String> = out
        .iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    parts.join(", ")
}

fn index(el: &Element) -> usize {
    let id = el.attr("id").unwrap_or_default();
    let n = id
        .strip_prefix('m')
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("not one of ours: {}", String::from(el)));
    assert!(n < scale().0, "{n}");
    n
}

/// A hibernated session (queue 500) gets 3,000 messages, in chunks of `chunk` paced by
/// a ping round trip of the sender. Offline storage holds 1,000. The bounces the sender
/// gets and the messages Juliet finds at her next login add up to exactly 3,000, with
/// no message twice.
async fn three_thousand_to_a_hibernated_session(chunk: usize) {
    let sent = scale().0;
    let chunk = chunk.min(sent);
    let t = TestServer::start(plaintext).await;
    let mut phone = t.login("juliet", "phone").await;
    let previd = enable_sm(&mut phone).await;
    phone.send("<presence/>").await;
    phone.until("presence").await;
    phone.drop_connection().await;

    let (mut romeo_in, mut romeo_out) = Raw::login(t.c2s(), "romeo", "desk").await.split();
    let mut bounced = HashSet::new();
    let deadline = tokio::time::Instant::now() + super::patience::wait(Duration::from_secs(120));
    let on_romeo = |el: Element, bounced: &mut HashSet<usize>| {
        if el.name() == "message" && el.attr("type") == Some("error") {
            assert!(bounced.insert(index(&el)), "bounced twice");
            let text = String::from(&el);
            assert!(
                text.contains("resource-constraint") || text.contains("recipient-unavailable"),
                "{text}"
            );
        }
    };
    for start in (0..sent).step_by(chunk) {
        let mut buf = String::new();
        for i in start..(start + chunk).min(sent) {
            buf.push_str(&format!(
                "<message type='chat' to='juliet@localhost' id='m{i}'><body>{i}</body></message>"
            ));
        }
        buf.push_str(&format!(
            "<iq type='get' id='pace{start}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        romeo_out.write_all(buf.as_bytes()).await.unwrap();
        let pace = format!("pace{start}");
        loop {
            let el = tokio::time::timeout_at(deadline, romeo_in.recv())
                .await
                .expect("romeo's pace answered in time")
                .expect("romeo's stream open");
            if el.name() == "iq" && el.attr("id") == Some(pace.as_str()) {
                break;
            }
            on_romeo(el, &mut bounced);
        }
    }
    // The queue overflowed, the session ends, and its unacked messages take their way
    // out; it is gone once a resumption fails with its final h.
    ended(&t, &previd).await;
    // Then a last message behind all of them: its bounce comes once the store has
    // answered everything before it.
    romeo_out
        .write_all(
            b"<message type='chat' to='juliet@localhost' id='barrier'><body>b</body></message>",
        )
        .await
        .unwrap();
    loop {
        let el = tokio::time::timeout_at(deadline, romeo_in.recv())
            .await
            .expect("the barrier bounced in time")
            .expect("romeo's stream open");
        if el.attr("id") == Some("barrier") {
            assert_eq!(el.attr("type"), Some("error"), "offline storage is full");
            break;
        }
        on_romeo(el, &mut bounced);
    }
    let (mut juliet_in, mut juliet_out) = Raw::login(t.c2s(), "juliet", "laptop").await.split();
    juliet_out.write_all(b"<presence/>").await.unwrap();
    let mut delivered = HashSet::new();
    while bounced.len() + delivered.len() < sent {
        tokio::select! {
            el = romeo_in.recv() => on_romeo(el.expect("romeo's stream open"), &mut bounced),
            el = juliet_in.recv() => {
                let el = el.expect("juliet's stream open");
                if el.name() == "message" {
                    assert!(delivered.insert(index(&el)), "delivered twice");
                }
            }
            _ = tokio::time::sleep_until(deadline) => panic!(
                "only {} bounced and {} delivered of {sent}; missing: {}",
                bounced.len(),
                delivered.len(),
                ranges((0..sent).filter(|i| !bounced.contains(i) && !delivered.contains(i)))
            ),
        }
    }
    assert!(
        bounced.is_disjoint(&delivered),
        "a message both bounced and delivered"
    );
    assert_eq!(
        delivered.len(),
        t.cfg.offline_max_messages,
        "offline storage was full before anything bounced"
    );
}

/// Waits until the session with this resumption id has ended: a `<resume/>` then fails
/// with the session's final `h` (while it is still ending it fails without one).
async fn ended(t: &TestServer, previd: &str) {
    let deadline = tokio::time::Instant::now() + super::patience::wait(Duration::from_secs(60));
    loop {
        let mut c = client::authenticate(t, "juliet", "juliet-pw")
            .await
            .unwrap();
        c.send_nonza(&format!(
            "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>"
        ))
        .await;
        let failed = c.next().await;
        assert_eq!(failed.name(), "failed", "{}", String::from(&failed));
        if failed.attr("h").is_some() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session never ended"
        );
        c.close().await;
    }
}

#[actix_rt::test]
async fn d22_a_burst_of_3000_to_a_hibernated_session_each_has_one_fate() {
    three_thousand_to_a_hibernated_session(usize::MAX).await;
}

#[actix_rt::test]
async fn d22_3000_in_chunks_of_100_each_has_one_fate() {
    three_thousand_to_a_hibernated_session(100).await;
}

#[actix_rt::test]
async fn d22_3000_one_at_a_time_each_has_one_fate() {
    three_thousand_to_a_hibernated_session(1).await;
}

/// A client that logs in anew instead of resuming used to lock its own account once 32
/// hibernated sessions (held for days with push) filled the per-user cap. Now the
/// oldest hibernated session makes room, and its unacked message goes to offline
/// storage.
#[actix_rt::test]
async fn new_logins_evict_the_oldest_hibernated_session_not_refused() {
    let t = TestServer::start(plaintext).await;
    let cap = cloud_notify::xmpp::user::MAX_RESOURCES;
    let mut first_previd = String::new();
    for n in 0..cap {
        let mut phone = t.login("juliet", &format!("phone{n}")).await;
        let previd = enable_sm(&mut phone).await;
        if n == 0 {
            first_previd = previd;
            phone.send("<presence/>").await;
            phone.until("presence").await;
        }
        phone.drop_connection().await;
    }
    // The oldest (phone0) gets a message that waits in its unacked queue.
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send(
            "<message type='chat' to='juliet@localhost/phone0' id='kept'><body>k</body></message>",
        )
        .await;
    romeo
        .iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    // One more login: it gets in.
    let laptop = t.login("juliet", "laptop").await;
    ended(&t, &first_previd).await;
    laptop.close().await;
    // The evicted session's message is in offline storage for the next login.
    let mut again = t.login("juliet", "again").await;
    again.send("<presence/>").await;
    let (m, _) = again.until("message").await;
    assert_eq!(m.attr("id"), Some("kept"));
}

/// `<failed/>` carries the final `h` of an ended session only for its own user: another
/// account's resumption id is "not found" like any unknown one.
#[actix_rt::test]
async fn a_failed_resumption_never_reveals_another_accounts_h() {
    let t = TestServer::start(|_| {}).await;
    let mut juliet = t.login("juliet", "phone").await;
    let previd = enable_sm(&mut juliet).await;
    juliet.send("<presence/>").await;
    juliet.until("presence").await;
    juliet.close().await;
    ended(&t, &previd).await;
    let mut romeo = client::authenticate(&t, "romeo", "romeo-pw").await.unwrap();
    romeo
        .send_nonza(&format!(
            "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>"
        ))
        .await;
    let failed = romeo.next().await;
    assert_eq!(failed.name(), "failed");
    assert_eq!(failed.attr("h"), None, "{}", String::from(&failed));
}

/// At an orderly stop, a connected client is told `system-shutdown`, and a hibernated
/// session's unacked message is kept in offline storage: after the restart it is there.
#[actix_rt::test]
async fn d23_orderly_shutdown_keeps_hibernated_messages_and_says_system_shutdown() {
    let mut t = TestServer::start(|_| {}).await;
    let mut phone = t.login("juliet", "phone").await;
    enable_sm(&mut phone).await;
    phone.send("<presence/>").await;
    phone.until("presence").await;
    phone.drop_connection().await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost' id='queued'><body>q</body></message>")
        .await;
    romeo
        .iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    // And a client still negotiating when the stop comes.
    let mut negotiating = Raw::connect(t.c2s()).await;
    negotiating.write(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>").await;
    negotiating.until("</stream:features>").await;
    let server = t.server.take().expect("running");
    let stop = actix::spawn(server.shutdown());
    let err = romeo.next_or_error().await;
    assert!(err.contains("system-shutdown"), "{err}");
    let rest = negotiating.rest_until_closed().await;
    assert!(rest.contains("system-shutdown"), "{rest}");
    stop.await.unwrap();
    t.server = Some(
        cloud_notify::xmpp::server::Server::start(t.cfg.clone())
            .await
            .expect("restart"),
    );
    let mut juliet = t.login("juliet", "laptop").await;
    juliet.send("<presence/>").await;
    let (m, _) = juliet.until("message").await;
    assert_eq!(m.attr("id"), Some("queued"));
    assert!(m.get_child("delay", "urn:xmpp:delay").is_some());
}

/// A connected client that never acknowledges: past `smacks_max_queue_size` its stream
/// ends with `resource-constraint` and the session ends for good (no hibernation); what
/// it had not acknowledged, and the message that did not fit, wait in offline storage.
#[actix_rt::test]
async fn a_connected_queue_overflow_ends_the_session_and_keeps_its_messages() {
    let t = TestServer::start(|c| c.smacks_max_queue_size = 5).await;
    let mut juliet = t.login("juliet", "phone").await;
    let previd = enable_sm(&mut juliet).await;
    let mut romeo = t.login("romeo", "desk").await;
    for i in 0..6 {
        romeo
            .send(&format!(
                "<message type='chat' to='juliet@localhost/phone' id='m{i}'><body>{i}</body></message>"
            ))
            .await;
    }
    // The enable's answer is unacked too: 4 messages fit, the 5th overflows.
    let mut got = Vec::new();
    let closed = loop {
        match juliet.next_or_error().await {
            e if !e.starts_with('<') => break e,
            text => got.push(text),
        }
    };
    assert!(closed.contains("resource-constraint"), "{closed}");
    ended(&t, &previd).await;
    let mut again = t.login("juliet", "laptop").await;
    again.send("<presence/>").await;
    let mut ids = Vec::new();
    while ids.len() < 6 {
        let (m, _) = again.until("message").await;
        ids.push(m.attr("id").unwrap_or_default().to_string());
    }
    // m5 came after the session ended and was stored on its own; the session's own
    // messages keep their order.
    let queued: Vec<&String> = ids.iter().filter(|i| *i != "m5").collect();
    assert_eq!(queued, ["m0", "m1", "m2", "m3", "m4"], "{ids:?}");
    assert!(ids.contains(&"m5".to_string()), "{ids:?}");
}
