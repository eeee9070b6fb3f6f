//! The rest of the acceptance checklist over real sockets: enable/disable replies
//! (B03–B06), stanzas queued for a hibernated phone (B43, B48–B56), the held hibernation
//! (B57, B59–B61) and the app server's answers (B65–B69).

use std::time::{Duration, Instant};

use super::client::{self, Client, Component};
use super::{
    APP, FORM, TestServer, body_of, enable_push, enable_sm, marker, node_of, offline_setup,
    sleeping_phone,
};

fn error_text(r: &xmpp_parsers::minidom::Element) -> String {
    String::from(r)
}

#[actix_rt::test]
async fn b03_to_b06_wire_enable_replies() {
    let t = TestServer::start(|_| {}).await;
    let mut phone = t.login("juliet", "phone").await;
    let r = phone
        .iq(&format!(
            "<iq type='set' id='x42'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='n1'/></iq>"
        ))
        .await;
    assert_eq!(
        (r.attr("type"), r.attr("id")),
        (Some("result"), Some("x42"))
    );
    assert!(r.children().next().is_none(), "B03: empty result");
    let r = phone
        .iq("<iq type='set' id='b04'><enable xmlns='urn:xmpp:push:0' node='n1'/></iq>")
        .await;
    let x = error_text(&r);
    assert!(
        x.contains("bad-request") && x.contains("Missing jid") && x.contains("modify"),
        "{x}"
    );
    for jid in ["juliet@localhost/phone", "juliet@localhost"] {
        let r = phone
            .iq(&format!(
                "<iq type='set' id='b05'><enable xmlns='urn:xmpp:push:0' jid='{jid}'/></iq>"
            ))
            .await;
        let x = error_text(&r);
        assert!(
            x.contains("JID must be different from ours"),
            "B05/B06 (D2): {x}"
        );
    }
}

async fn hibernated_with(t: &TestServer) -> (Component, Client) {
    let app = Component::connect(t).await;
    sleeping_phone(t, "n1").await;
    let romeo = t.login("romeo", "desk").await;
    (app, romeo)
}

fn fast(c: &mut cloud_notify::config::Config) {
    c.push_notification_with_body = false;
    c.push_batch_window = Duration::from_millis(100);
}

/// One stanza reaches the hibernated phone; returns the publish's body value.
async fn queued_body(stanza: &str) -> Option<String> {
    let t = TestServer::start(fast).await;
    let (mut app, mut romeo) = hibernated_with(&t).await;
    romeo.send(stanza).await;
    let p = app.next().await;
    assert_eq!(node_of(&p).as_deref(), Some("n1"));
    body_of(&p)
}

#[actix_rt::test]
async fn b48_wire_presence_update_publishes_without_body() {
    assert_eq!(
        queued_body("<presence to='juliet@localhost/phone'/>").await,
        None
    );
}

#[actix_rt::test]
async fn b49_wire_carbons() {
    let sent = "<message to='juliet@localhost/phone'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat'><body>out</body></message></forwarded></sent></message>";
    assert_eq!(queued_body(sent).await, None);
    let received = "<message to='juliet@localhost/phone'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat'><body>in</body></message></forwarded></received></message>";
    assert_eq!(queued_body(received).await.as_deref(), Some("New Message!"));
}

#[actix_rt::test]
async fn b50_wire_encrypted_without_body_gets_the_placeholder() {
    let m = "<message type='chat' to='juliet@localhost/phone'><encrypted xmlns='eu.siacs.conversations.axolotl'><payload>AA</payload></encrypted></message>";
    assert_eq!(queued_body(m).await.as_deref(), Some("New Message!"));
}

#[actix_rt::test]
async fn b51_b52_b53_wire_subject_empty_body_and_headline_publish_without_body() {
    for m in [
        "<message type='groupchat' to='juliet@localhost/phone'><subject>s</subject><body>b</body></message>",
        "<message type='chat' to='juliet@localhost/phone'><body/></message>",
        "<message type='headline' to='juliet@localhost/phone'><body>news</body></message>",
    ] {
        assert_eq!(queued_body(m).await, None, "{m}");
    }
}

#[actix_rt::test]
async fn b43_wire_queue_at_hibernation_gives_one_important_and_one_unimportant() {
    let t = TestServer::start(fast).await;
    let mut app = Component::connect(&t).await;
    let mut phone = t.login("juliet", "phone").await;
    enable_sm(&mut phone).await;
    enable_push(&mut phone, "n1").await;
    phone.send("<presence/>").await;
    let mut romeo = t.login("romeo", "desk").await;
    for s in [
        "<presence to='juliet@localhost/phone'/>",
        "<message type='chat' to='juliet@localhost/phone'><body>1</body></message>",
        "<message type='chat' to='juliet@localhost/phone'><body>2</body></message>",
        "<presence to='juliet@localhost/phone'><show>away</show></presence>",
        "<message type='chat' to='juliet@localhost/phone'><body>3</body></message>",
    ] {
        romeo.send(s).await;
    }
    for _ in 0..3 {
        phone.until("message").await;
    }
    // Nothing acknowledged: everything above is in the queue when the socket dies.
    phone.drop_connection().await;
    let mut bodies = vec![body_of(&app.next().await), body_of(&app.next().await)];
    bodies.sort();
    assert_eq!(bodies, [None, Some("New Message!".to_string())]);
    app.expect_nothing_before_ping(&t).await;
}

/// B54 with D20: the message publishes at once; the phone resumes inside the window and
/// gets it; nothing more is published for it, neither by the window nor at logout.
#[actix_rt::test]
async fn b54_d20_wire_resume_within_the_window_publishes_nothing_more() {
    let t = TestServer::start(|c| {
        c.push_notification_with_body = true;
        c.push_batch_window = Duration::from_secs(60);
    })
    .await;
    let mut app = Component::connect(&t).await;
    let previd = sleeping_phone(&t, "n1").await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>early</body></message>")
        .await;
    let p = app.next().await;
    assert_eq!(body_of(&p).as_deref(), Some("early"));
    app.answer_result(&p).await;
    let mut phone = client::authenticate(&t, "juliet", "juliet-pw")
        .await
        .unwrap();
    phone
        .send_nonza(&format!(
            "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='2'/>"
        ))
        .await;
    phone.until("resumed").await;
    phone.until("message").await;
    // Acknowledge it (enable result, presence echo, the message), then log out.
    phone.send_nonza("<a xmlns='urn:xmpp:sm:3' h='3'/>").await;
    phone.close().await;
    marker(&mut romeo, &mut app, "marker").await;
}

#[actix_rt::test]
async fn b56_wire_unanswered_ack_request_publishes() {
    let t = TestServer::start(|c| {
        c.push_batch_window = Duration::from_millis(100);
        c.smacks_max_ack_delay = Duration::from_secs(1);
    })
    .await;
    let mut app = Component::connect(&t).await;
    let mut phone = t.login("juliet", "phone").await;
    enable_sm(&mut phone).await;
    // The first <r/> follows the enable's result, and the client never answers it.
    let sent = Instant::now();
    enable_push(&mut phone, "n1").await;
    phone.send("<presence/>").await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost/phone'><body>hello?</body></message>")
        .await;
    // Connected but silent: the server's <r/> goes unanswered.
    let p = app.next().await;
    assert!(
        sent.elapsed() >= Duration::from_secs(1),
        "after smacks_max_ack_delay"
    );
    assert_eq!(node_of(&p).as_deref(), Some("n1"));
    drop(phone);
}

/// B57 and B59: with only unimportant pushes the session is held for the extended
/// timeout, far past the normal one. Seen from its end: the unacked chat-state message
/// goes offline only then, and reaches the other registration.
#[actix_rt::test]
async fn b57_b59_wire_only_unimportant_pushes_keep_the_extended_timeout() {
    let t = TestServer::start(|c| {
        c.push_batch_window = Duration::from_millis(100);
        c.smacks_hibernation_time = Duration::from_secs(1);
        c.push_max_hibernation_timeout = Duration::from_secs(3);
    })
    .await;
    let mut app = Component::connect(&t).await;
    let mut tablet = t.login("juliet", "tablet").await;
    enable_push(&mut tablet, "n2").await;
    tablet.close().await;
    let mut phone = t.login("juliet", "phone").await;
    enable_sm(&mut phone).await;
    enable_push(&mut phone, "n1").await;
    phone.send("<presence/>").await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost/phone'><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
        .await;
    phone.until("message").await;
    phone.drop_connection().await;
    let dropped = Instant::now();
    let first = app.next().await; // the hibernation-start push, unimportant
    assert_eq!(
        (node_of(&first).as_deref(), body_of(&first)),
        (Some("n1"), None)
    );
    let second = app.next().await; // the offline fallback at the end
    assert_eq!(node_of(&second).as_deref(), Some("n2"));
    assert!(
        dropped.elapsed() >= Duration::from_secs(3),
        "held for push_max_hibernation_timeout"
    );
}

#[actix_rt::test]
async fn b61_wire_after_disable_no_publish_and_no_extension() {
    // The first message reaches the phone while it is online: kept out of the archive
    // (XEP-0334), so that the archive path (B40: the absent tablet pushed at once) stays
    // out of this test of the hibernation path.
    let t = TestServer::start(|c| {
        c.push_notification_with_body = true;
        c.smacks_hibernation_time = Duration::from_secs(1);
    })
    .await;
    let mut app = Component::connect(&t).await;
    let mut tablet = t.login("juliet", "tablet").await;
    enable_push(&mut tablet, "n2").await;
    tablet.close().await;
    let mut phone = t.login("juliet", "phone").await;
    enable_sm(&mut phone).await;
    enable_push(&mut phone, "n1").await;
    let r = phone
        .iq(&format!(
            "<iq type='set' id='d'><disable xmlns='urn:xmpp:push:0' jid='{APP}' node='n1'/></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    phone.send("<presence/>").await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost/phone'><body>m</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>")
        .await;
    phone.until("message").await;
    phone.drop_connection().await;
    let dropped = Instant::now();
    // No publish to n1 at hibernation; after the normal timeout the message goes offline.
    let p = app.next().await;
    assert_eq!(node_of(&p).as_deref(), Some("n2"));
    let waited = dropped.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
}

#[actix_rt::test]
async fn b65_wire_a_success_resets_the_error_count() {
    let (_t, mut app, mut romeo) = offline_setup(&["n1"], |c| c.push_max_errors = 3).await;
    for (i, kind) in ["e", "e", "ok", "e", "e", "ok"].into_iter().enumerate() {
        romeo
            .send(&format!(
                "<message type='chat' to='juliet@localhost'><body>{i}</body></message>"
            ))
            .await;
        let p = app.next().await;
        assert_eq!(
            body_of(&p),
            Some(i.to_string()),
            "still registered at step {i}"
        );
        match kind {
            "ok" => app.answer_result(&p).await,
            _ => app.answer_error(&p, "cancel", "item-not-found").await,
        }
    }
}

#[actix_rt::test]
async fn b66_b67_b69_wire_foreign_unknown_and_missing_answers_change_nothing() {
    let (t, mut app, mut romeo) = offline_setup(&["n1"], |c| c.push_max_errors = 1).await;
    for i in 0..3 {
        romeo
            .send(&format!(
                "<message type='chat' to='juliet@localhost'><body>{i}</body></message>"
            ))
            .await;
        let p = app.next().await;
        assert_eq!(body_of(&p), Some(i.to_string()));
        match i {
            // B66: an error from another JID (the server only accepts the component's own
            // domain from it, so this never reaches the push module).
            0 => {
                app.answer_error_from(&p, "other.localhost", "cancel", "item-not-found")
                    .await
            }
            // B67: an error to an id never sent.
            1 => {
                app.answer_error_with_id(&p, &"0".repeat(64), "cancel", "item-not-found")
                    .await
            }
            // B69: no answer at all.
            _ => {}
        }
    }
    app.expect_nothing_before_ping(&t).await;
}

#[actix_rt::test]
async fn b68_wire_removal_while_hibernating_stops_publishes() {
    let t = TestServer::start(|c| {
        c.push_notification_with_body = true;
        c.push_batch_window = Duration::from_millis(100);
        c.push_max_errors = 1;
        c.smacks_hibernation_time = Duration::from_secs(1);
    })
    .await;
    let mut app = Component::connect(&t).await;
    let mut tablet = t.login("juliet", "tablet").await;
    enable_push(&mut tablet, "n2").await;
    tablet.close().await;
    sleeping_phone(&t, "n1").await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost/phone'><body>one</body></message>")
        .await;
    let p = app.next().await;
    assert_eq!(node_of(&p).as_deref(), Some("n1"));
    app.answer_error(&p, "cancel", "item-not-found").await;
    romeo
        .send("<message type='chat' to='juliet@localhost/phone'><body>two</body></message>")
        .await;
    // n1 is removed and the phone's session no longer publishes; it is back on the
    // normal timeout, at whose end both messages go offline: to n2 only.
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let p = app.next().await;
        assert_eq!(node_of(&p).as_deref(), Some("n2"), "{}", String::from(&p));
        bodies.push(body_of(&p).unwrap_or_default());
    }
    bodies.sort();
    assert_eq!(bodies, ["one", "two"]);
    let _ = FORM;
}

#[actix_rt::test]
async fn b55_wire_stanzas_pushed_at_hibernation_are_not_pushed_again() {
    let t = TestServer::start(|c| {
        c.push_notification_with_body = true;
        c.push_batch_window = Duration::from_millis(100);
    })
    .await;
    let mut app = Component::connect(&t).await;
    let mut phone = t.login("juliet", "phone").await;
    let previd = enable_sm(&mut phone).await;
    enable_push(&mut phone, "n1").await;
    phone.send("<presence/>").await;
    phone.until("presence").await;
    phone.send_nonza("<a xmlns='urn:xmpp:sm:3' h='2'/>").await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost/phone'><body>unacked</body></message>")
        .await;
    phone.until("message").await;
    phone.drop_connection().await;
    assert_eq!(body_of(&app.next().await).as_deref(), Some("unacked"));
    // Resume without acknowledging it, and lose the connection again.
    let mut phone = client::authenticate(&t, "juliet", "juliet-pw")
        .await
        .unwrap();
    phone
        .send_nonza(&format!(
            "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='2'/>"
        ))
        .await;
    phone.until("resumed").await;
    phone.until("message").await;
    phone.drop_connection().await;
    romeo
        .send("<message type='chat' to='juliet@localhost/phone'><body>new</body></message>")
        .await;
    let next = app.next().await;
    assert_eq!(
        body_of(&next).as_deref(),
        Some("new"),
        "not 'unacked' again"
    );
}

/// RFC 6120 §7.7.2.2: a second bind of the same resource replaces the older session,
/// which gets a `conflict` stream error.
#[actix_rt::test]
async fn second_bind_of_a_resource_replaces_the_older_session() {
    let t = TestServer::start(|_| {}).await;
    let mut old = t.login("juliet", "phone").await;
    let mut new = t.login("juliet", "phone").await;
    let e = old.next_or_error().await;
    assert!(e.contains("conflict"), "{e}");
    let pong = new
        .iq("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(pong.attr("type"), Some("result"));
}

/// Past smacks_max_queue_size unacknowledged stanzas the session ends with
/// resource-constraint, and the unacknowledged messages are kept offline.
#[actix_rt::test]
async fn full_unacked_queue_ends_the_session_and_keeps_the_messages() {
    let t = TestServer::start(|c| c.smacks_max_queue_size = 3).await;
    let mut phone = t.login("juliet", "phone").await;
    enable_sm(&mut phone).await;
    phone.send("<presence/>").await;
    let mut romeo = t.login("romeo", "desk").await;
    for i in 0..4 {
        romeo
            .send(&format!("<message type='chat' to='juliet@localhost/phone' id='q{i}'><body>{i}</body></message>"))
            .await;
    }
    let mut ended = String::new();
    for _ in 0..6 {
        match phone.next_or_error().await {
            e if e.contains("resource-constraint") => {
                ended = e;
                break;
            }
            _ => continue,
        }
    }
    assert!(ended.contains("resource-constraint"), "{ended}");
    let mut juliet = t.login("juliet", "laptop").await;
    juliet.send("<presence/>").await;
    let (m, _) = juliet.until("message").await;
    assert!(
        m.get_child("delay", "urn:xmpp:delay").is_some(),
        "kept offline"
    );
}
