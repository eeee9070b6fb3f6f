//! A server-to-server link whose connection breaks while a batch is being written: that
//! batch was taken from the link's queue, and whether the peer got it is unknown (there
//! is no stream management on our links), so its stanzas bounce instead of vanishing.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

use super::TestServer;
use super::raw::Raw;
use super::s2s_hostile::{DIALBACK, answer_link_as_plain};

/// The peer reads our link's first message and then nothing, so our writer blocks on a
/// full connection; once the link's queue behind it is full (a small message sent last
/// bounces `resource-constraint`) the peer resets the connection under the blocked
/// write. That batch bounces
/// `recipient-unavailable`, each stanza once; what waited behind it in the queue, and
/// a message sent after the reset, go to a new link (here never answered: they end at
/// `s2s_timeout`).
#[actix_rt::test]
async fn s2s_a_batch_written_as_the_link_breaks_bounces_recipient_unavailable() {
    // A small receive buffer on the peer's side, so our writes block soon.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.6:0".parse().unwrap()).unwrap();
    let plain = socket.listen(8).unwrap();
    let plain_addr = plain.local_addr().unwrap();
    let t = TestServer::start(move |c| {
        c.s2s_require_encryption = false;
        c.s2s_queue_size = 4;
        c.s2s_timeout = Duration::from_secs(2);
        c.s2s_hosts = [("plain.localhost".to_string(), plain_addr)]
            .into_iter()
            .collect();
        c.c2s_require_encryption = false;
        c.allow_unencrypted_plain_auth = true;
    })
    .await;
    let (reset, reset_rx) = tokio::sync::oneshot::channel::<()>();
    let peer = actix_rt::spawn(async move {
        let (tcp, _) = plain.accept().await.unwrap();
        let mut p = Raw::over(tcp);
        answer_link_as_plain(&mut p, DIALBACK).await;
        p.until("</db:result>").await;
        p.write(b"<db:result type='valid' from='plain.localhost' to='localhost'/>")
            .await;
        p.until("</message>").await;
        // Reads nothing more until told to reset the connection.
        let _ = reset_rx.await;
        // Deprecated for the wait on drop it can cause; a zero linger never waits, it
        // resets the connection at once, which is the point here.
        #[allow(deprecated)]
        p.tcp.set_linger(Some(Duration::ZERO)).unwrap();
        drop(p);
        // Kept listening: the next link is accepted by the kernel and never answered.
        plain
    });
    let (mut juliet_in, mut juliet_out) = Raw::login(t.c2s(), "juliet", "phone").await.split();
    let wait = super::patience::wait(Duration::from_secs(30));
    let deadline = tokio::time::Instant::now() + wait;
    let mut fates: HashMap<String, String> = HashMap::new();
    let mut next_bounce = async || loop {
        let el = tokio::time::timeout_at(deadline, juliet_in.recv())
            .await
            .expect("a bounce in time")
            .expect("juliet's stream open");
        if el.name() != "message" || el.attr("type") != Some("error") {
            continue;
        }
        let id = el.attr("id").unwrap_or_default().to_string();
        let condition = el
            .get_child("error", "jabber:client")
            .and_then(|e| e.children().next())
            .map(|c| c.name().to_string())
            .unwrap_or_default();
        return (id, condition);
    };
    juliet_out
        .write_all(b"<message type='chat' to='x@plain.localhost' id='m0'><body>hi</body></message>")
        .await
        .unwrap();
    // No body: not archived, only carried. 100 x 200 KB is several times what the
    // connection's buffers hold (our send buffer grows to 4 MB at most, the peer's
    // receive buffer is 4 KB): the link's writer ends up blocked on the peer.
    let payload = "x".repeat(200_000);
    for i in 1..=100 {
        let m = format!(
            "<message type='chat' to='x@plain.localhost' id='m{i}'><x xmlns='urn:test:big'>{payload}</x></message>"
        );
        juliet_out.write_all(m.as_bytes()).await.unwrap();
    }
    // Then a small one: with the writer blocked, the queue behind it is full and it
    // bounces (the links take stanzas in order: every big one met its fate before it).
    juliet_out
        .write_all(
            b"<message type='chat' to='x@plain.localhost' id='probe'><body>?</body></message>",
        )
        .await
        .unwrap();
    loop {
        let (id, condition) = next_bounce().await;
        assert!(
            fates.insert(id.clone(), condition.clone()).is_none(),
            "{id} bounced twice"
        );
        if id == "probe" {
            assert_eq!(condition, "resource-constraint");
            break;
        }
    }
    reset.send(()).unwrap();
    // One more, after the reset: it waits for a new link (or, with the queue full,
    // bounces at once while what is queued does), so a remote-server-timeout comes
    // last either way, after the broken batch's bounces.
    juliet_out
        .write_all(
            b"<message type='chat' to='x@plain.localhost' id='m101'><body>late</body></message>",
        )
        .await
        .unwrap();
    let mut broken = 0;
    loop {
        let (id, condition) = next_bounce().await;
        assert!(
            fates.insert(id.clone(), condition.clone()).is_none(),
            "{id} bounced twice ({condition})"
        );
        match condition.as_str() {
            "recipient-unavailable" => broken += 1,
            // What waited behind the batch, on the next link, never answered.
            "remote-server-timeout" => break,
            "resource-constraint" => {}
            other => panic!("{id}: {other}"),
        }
    }
    let mut by_condition: HashMap<&str, usize> = HashMap::new();
    for condition in fates.values() {
        *by_condition.entry(condition).or_default() += 1;
    }
    assert!(
        broken > 0,
        "no bounce for the batch under the broken write; bounces by condition: {by_condition:?}"
    );
    drop(peer);
}
