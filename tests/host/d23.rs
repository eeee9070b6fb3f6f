//! D23 in one process: a message waiting for a hibernated session is durable, at the
//! price of no commit of its own (group commit).

use std::collections::HashSet;
use std::time::Duration;

use cloud_notify::store::Probe;
use tokio::io::AsyncWriteExt;

use super::raw::{Raw, plaintext};
use super::{TestServer, client, enable_sm};

async fn batches(t: &TestServer) -> u64 {
    let store = &t.server.as_ref().expect("running").store;
    store.send(Probe).await.expect("probe").batches
}

const BURST: usize = 1000;

/// 1,000 messages to a hibernated session, written `chunk` at a time (each chunk
/// followed by a ping round trip): each is made durable, and the store's group commit
/// gives them a few commits between them, not one each.
async fn burst_to_a_hibernated_session(chunk: usize) {
    let t = TestServer::start(|c| {
        plaintext(c);
        c.smacks_max_queue_size = 2 * BURST;
    })
    .await;
    let mut phone = t.login("juliet", "phone").await;
    let previd = enable_sm(&mut phone).await;
    phone.drop_connection().await;
    let (mut romeo_in, mut romeo_out) = Raw::login(t.c2s(), "romeo", "desk").await.split();
    let before = batches(&t).await;
    let deadline = tokio::time::Instant::now() + super::patience::wait(Duration::from_secs(60));
    for start in (0..BURST).step_by(chunk) {
        let mut burst = String::new();
        for i in start..(start + chunk).min(BURST) {
            burst.push_str(&format!(
                "<message type='chat' to='juliet@localhost/phone' id='m{i}'><body>{i}</body></message>"
            ));
        }
        burst.push_str("<iq type='get' id='pace'><ping xmlns='urn:xmpp:ping'/></iq>");
        romeo_out.write_all(burst.as_bytes()).await.unwrap();
        loop {
            let el = tokio::time::timeout_at(deadline, romeo_in.recv())
                .await
                .expect("romeo's ping answered in time")
                .expect("romeo's stream open");
            assert_ne!(el.attr("type"), Some("error"), "{}", String::from(&el));
            if el.attr("id") == Some("pace") {
                break;
            }
        }
    }
    // Romeo's ping answered says only that his stream was read: Juliet's actor may still
    // be taking the deliveries (slow under emulation). Her actor answers in mailbox
    // order, so its answer means every message reached her queue or offline storage.
    let router = t.server.as_ref().expect("running").router.clone();
    tokio::time::timeout_at(
        deadline,
        router.send(cloud_notify::push::GetUserStats {
            user: "juliet".into(),
        }),
    )
    .await
    .expect("juliet's actor took the burst in time")
    .expect("the router answers");
    // The queue comes back on the resumed stream (every write for it answered by then);
    // what did not fit the session's channel is in offline storage (D22).
    let mut resumed = client::authenticate(&t, "juliet", "juliet-pw")
        .await
        .unwrap();
    resumed
        .send_nonza(&format!(
            "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>"
        ))
        .await;
    resumed.until("resumed").await;
    let mut got = HashSet::new();
    loop {
        let el = resumed.next().await;
        match el.name() {
            "message" => assert!(got.insert(el.attr("id").unwrap_or_default().to_string())),
            "r" => break,
            _ => panic!("{}", String::from(&el)),
        }
    }
    let queued = got.len();
    let after_resume = batches(&t).await - before;
    resumed
        .send_nonza(&format!("<a xmlns='urn:xmpp:sm:3' h='{queued}'/>"))
        .await;
    resumed
        .iq("<iq type='get' id='done'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let mut laptop = t.login("juliet", "laptop").await;
    laptop.send("<presence/>").await;
    laptop
        .send("<iq type='get' id='done'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    loop {
        let el = laptop.next().await;
        if el.attr("id") == Some("done") {
            break;
        }
        if el.name() == "message" && el.attr("type") == Some("chat") {
            assert!(got.insert(el.attr("id").unwrap_or_default().to_string()));
        }
    }
    assert_eq!(
        got.len(),
        BURST,
        "every message queued or stored offline, once"
    );
    let total = batches(&t).await - before;
    println!(
        "{BURST} messages to a hibernated session in chunks of {chunk}: {queued} queued, \
         {} stored offline; store batches: {after_resume} until the resumption, {total} \
         until both logins had everything",
        BURST - queued
    );
    // Group commit: nowhere near a commit per message (here 3 to 12 in all).
    assert!(total < (BURST / 10) as u64, "{total} store batches");
}

#[actix_rt::test]
async fn a_burst_to_a_hibernated_session_shares_commits() {
    burst_to_a_hibernated_session(BURST).await;
}

#[actix_rt::test]
async fn chunks_to_a_hibernated_session_share_commits() {
    burst_to_a_hibernated_session(100).await;
}
