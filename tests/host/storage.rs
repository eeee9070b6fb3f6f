//! Offline storage's byte limit (issue 8): besides `offline_max_messages`, what waits for
//! one user is bounded in bytes, so a few large messages cannot fill the disk.

use super::client::Component;
use super::{TestServer, enable_push};

fn message(id: &str, body: &str) -> String {
    format!("<message type='chat' id='{id}' to='juliet@localhost'><body>{body}</body></message>")
}

#[actix_rt::test]
async fn offline_storage_past_its_byte_limit_bounces_resource_constraint() {
    // Room for two of these messages (about 2.2 KB each once stored), not three.
    let t = TestServer::start(|c| c.offline_max_bytes = 5000).await;
    let body = "x".repeat(2000);
    // A registration makes each stored message observable: the offline path publishes
    // only once the message is durable.
    let mut app = Component::connect(&t).await;
    let mut tablet = t.login("juliet", "tablet").await;
    enable_push(&mut tablet, "n1").await;
    tablet.close().await;

    let mut romeo = t.login("romeo", "desk").await;
    for id in ["m0", "m1"] {
        romeo.send(&message(id, &body)).await;
        let p = app.next().await;
        app.answer_result(&p).await;
    }
    romeo.send(&message("m2", &body)).await;
    let bounce = romeo.next().await;
    assert_eq!(bounce.attr("type"), Some("error"));
    assert_eq!(bounce.attr("id"), Some("m2"));
    let error = bounce
        .get_child("error", "jabber:client")
        .expect("an error element");
    assert_eq!(
        error.attr("type"),
        Some("wait"),
        "{}",
        String::from(&bounce)
    );
    assert!(
        error.has_child("resource-constraint", "urn:ietf:params:xml:ns:xmpp-stanzas"),
        "{}",
        String::from(&bounce)
    );

    // Delivered messages give their room back.
    let mut juliet = t.login("juliet", "phone").await;
    juliet.send("<presence/>").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let m = juliet.next().await;
        assert_eq!(m.name(), "message", "{}", String::from(&m));
        ids.push(m.attr("id").unwrap_or_default().to_string());
    }
    assert_eq!(ids, ["m0", "m1"]);
    juliet.close().await;
    romeo.send(&message("m3", &body)).await;
    let p = app.next().await;
    app.answer_result(&p).await;
    let mut juliet = t.login("juliet", "phone").await;
    juliet.send("<presence/>").await;
    let m = juliet.next().await;
    assert_eq!(m.attr("id"), Some("m3"), "{}", String::from(&m));
}
