//! SIGHUP's limits on the wire (`Server::reload`, what main calls with the file read
//! again): each lowered or changed limit is in force for the next decision it takes part
//! in, without a restart.

use std::time::Duration;

use cloud_notify::config::Config;
use cloud_notify::xmpp::server::Reloaded;

use super::{TestServer, body_of, enable_push, enable_sm, node_of, offline_setup};

/// Reloads `t` with its configuration changed by `change`; asserts that `key` was
/// applied (not left for a restart).
fn reload(t: &TestServer, key: &str, change: impl FnOnce(&mut Config)) -> Reloaded {
    let mut cfg = t.cfg.clone();
    change(&mut cfg);
    let done = t.server.as_ref().expect("running").reload(&cfg, true);
    assert!(
        done.applied.iter().any(|a| a.key == key),
        "{key} applied: {:?}",
        done.applied.iter().map(|a| a.key).collect::<Vec<_>>()
    );
    assert!(
        !done.restart.iter().any(|k| k == key),
        "{key} left for a restart: {:?}",
        done.restart
    );
    done
}

#[actix_rt::test]
async fn a_lowered_offline_max_messages_bounces_the_next_message_past_it() {
    let t = TestServer::start(|_| {}).await;
    reload(&t, "offline_max_messages", |c| c.offline_max_messages = 2);
    let mut romeo = t.login("romeo", "desk").await;
    for i in 0..3 {
        romeo
            .send(&format!(
                "<message type='chat' id='m{i}' to='juliet@localhost'><body>{i}</body></message>"
            ))
            .await;
    }
    let bounce = romeo.next().await;
    assert_eq!(bounce.attr("type"), Some("error"));
    assert_eq!(bounce.attr("id"), Some("m2"));
    assert!(String::from(&bounce).contains("resource-constraint"));
}

#[actix_rt::test]
async fn a_lowered_offline_max_bytes_bounces_the_next_message_past_it() {
    let t = TestServer::start(|_| {}).await;
    reload(&t, "offline_max_bytes", |c| c.offline_max_bytes = 1024);
    let mut romeo = t.login("romeo", "desk").await;
    let big = "x".repeat(2048);
    romeo
        .send(&format!(
            "<message type='chat' id='big' to='juliet@localhost'><body>{big}</body></message>"
        ))
        .await;
    let bounce = romeo.next().await;
    assert_eq!(bounce.attr("type"), Some("error"));
    assert_eq!(bounce.attr("id"), Some("big"));
    assert!(String::from(&bounce).contains("resource-constraint"));
}

/// B62 with the limit lowered at run time: the user's push state is already in memory
/// (Juliet enabled push before the reload), and the next error counts against the new
/// limit.
#[actix_rt::test]
async fn a_lowered_push_max_errors_removes_a_registration_at_the_new_count() {
    let (t, mut app, mut romeo) = offline_setup(&["n1"], |c| c.push_max_errors = 5).await;
    reload(&t, "push_max_errors", |c| c.push_max_errors = 1);
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>e1</body></message>")
        .await;
    let p = app.next().await;
    app.answer_error(&p, "cancel", "item-not-found").await;
    // n1 is gone; a fresh registration shows that the next message publishes only there.
    let mut juliet = t.login("juliet", "laptop").await;
    enable_push(&mut juliet, "n2").await;
    juliet.close().await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>after</body></message>")
        .await;
    let p = app.next().await;
    assert_eq!(node_of(&p).as_deref(), Some("n2"));
    assert_eq!(body_of(&p).as_deref(), Some("after"));
    app.expect_nothing_before_ping(&t).await;
}

#[actix_rt::test]
async fn push_notification_with_body_turned_on_shows_the_next_body() {
    let (t, mut app, mut romeo) =
        offline_setup(&["n1"], |c| c.push_notification_with_body = false).await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>hidden</body></message>")
        .await;
    // The placeholder for an important message (push_notification_important_body).
    assert_eq!(
        body_of(&app.next().await).as_deref(),
        Some(t.cfg.push_notification_important_body.as_str())
    );
    reload(&t, "push_notification_with_body", |c| {
        c.push_notification_with_body = true
    });
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>shown</body></message>")
        .await;
    assert_eq!(body_of(&app.next().await).as_deref(), Some("shown"));
}

/// A session that enables stream management after the reload gets the new queue size:
/// past it the session ends with resource-constraint, as at start.
#[actix_rt::test]
async fn a_lowered_smacks_max_queue_size_bounds_the_next_session() {
    let t = TestServer::start(|_| {}).await;
    reload(&t, "smacks_max_queue_size", |c| c.smacks_max_queue_size = 3);
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
        let next = phone.next_or_error().await;
        if next.contains("resource-constraint") {
            ended = next;
            break;
        }
    }
    assert!(ended.contains("resource-constraint"), "{ended}");
}

/// Keys that need a restart are named and change nothing now.
#[actix_rt::test]
async fn a_restart_key_is_named_and_not_applied() {
    let t = TestServer::start(|_| {}).await;
    let mut cfg = t.cfg.clone();
    cfg.store_cache_size += 4096;
    let done = t.server.as_ref().expect("running").reload(&cfg, true);
    assert!(done.applied.is_empty(), "{:?}", done.applied);
    assert_eq!(done.restart, ["store_cache_size"]);
}

/// `s2s_max_connections` also bounds the outbound links: lowered to one while a link
/// to b.localhost is open (connecting to a peer that never answers), a stanza for a
/// second domain bounces at once instead of opening another link.
#[actix_rt::test]
async fn a_lowered_s2s_max_connections_bounds_the_next_outbound_link() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = silent.local_addr().unwrap();
    let t = TestServer::start(|c| {
        c.s2s_hosts = [
            ("b.localhost".to_string(), peer),
            ("c.localhost".to_string(), peer),
        ]
        .into_iter()
        .collect();
    })
    .await;
    reload(&t, "s2s_max_connections", |c| c.s2s_max_connections = 1);
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' id='b1' to='x@b.localhost'><body>1</body></message>")
        .await;
    // The link to b.localhost is open (its connection accepted, never answered).
    let (_held, _) = tokio::time::timeout(super::patience::deadline(), silent.accept())
        .await
        .expect("the link to b.localhost connects")
        .unwrap();
    romeo
        .send("<message type='chat' id='c1' to='y@c.localhost'><body>2</body></message>")
        .await;
    let bounce = tokio::time::timeout(Duration::from_secs(10), romeo.next())
        .await
        .expect("bounced at once, not after s2s_timeout");
    assert_eq!(bounce.attr("id"), Some("c1"), "{}", String::from(&bounce));
    assert_eq!(bounce.attr("type"), Some("error"));
    assert!(String::from(&bounce).contains("resource-constraint"));
}

#[actix_rt::test]
async fn the_placeholder_body_and_the_sender_change_for_the_next_publish() {
    let (t, mut app, mut romeo) =
        offline_setup(&["n1"], |c| c.push_notification_with_body = false).await;
    reload(&t, "push_notification_important_body", |c| {
        c.push_notification_important_body = "Wake up".into();
        c.push_notification_with_sender = true;
    });
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>hidden</body></message>")
        .await;
    let p = app.next().await;
    assert_eq!(body_of(&p).as_deref(), Some("Wake up"));
    assert!(
        String::from(&p).contains("romeo@localhost/desk"),
        "the sender: {}",
        String::from(&p)
    );
}

/// B57 with the extended hold shortened at run time: a push-linked session that
/// hibernates after the reload is held for the new `push_max_hibernation_timeout`.
#[actix_rt::test]
async fn a_shortened_push_max_hibernation_timeout_holds_the_next_hibernation_less() {
    let t = TestServer::start(|c| {
        c.push_batch_window = Duration::from_millis(100);
        c.smacks_hibernation_time = Duration::from_secs(1);
        c.push_max_hibernation_timeout = Duration::from_secs(60);
    })
    .await;
    let mut app = super::client::Component::connect(&t).await;
    let mut tablet = t.login("juliet", "tablet").await;
    enable_push(&mut tablet, "n2").await;
    tablet.close().await;
    let mut phone = t.login("juliet", "phone").await;
    enable_sm(&mut phone).await;
    enable_push(&mut phone, "n1").await;
    phone.send("<presence/>").await;
    reload(&t, "push_max_hibernation_timeout", |c| {
        c.push_max_hibernation_timeout = Duration::from_secs(2)
    });
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost/phone'><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
        .await;
    phone.until("message").await;
    phone.drop_connection().await;
    let dropped = std::time::Instant::now();
    let first = app.next().await; // the hibernation-start push, unimportant
    assert_eq!(node_of(&first).as_deref(), Some("n1"));
    // The offline fallback at the hold's end: after 2 s, long before 60 s.
    let second = app.next().await;
    assert_eq!(node_of(&second).as_deref(), Some("n2"));
    assert!(dropped.elapsed() >= Duration::from_secs(2), "held");
}

/// A lowered `push_max_devices` applies at the next enable: the registration enabled
/// longest ago makes room (D4), so the next message publishes only to the new one.
#[actix_rt::test]
async fn a_lowered_push_max_devices_evicts_at_the_next_enable() {
    let (t, mut app, mut romeo) = offline_setup(&["n1"], |_| {}).await;
    reload(&t, "push_max_devices", |c| c.push_max_devices = 1);
    let mut juliet = t.login("juliet", "laptop").await;
    enable_push(&mut juliet, "n2").await;
    juliet.close().await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>after</body></message>")
        .await;
    let p = app.next().await;
    assert_eq!(node_of(&p).as_deref(), Some("n2"));
    app.answer_result(&p).await;
    app.expect_nothing_before_ping(&t).await;
}

/// A lowered `push_max_active_users` refuses the next user to be loaded: romeo's bind is
/// refused with `resource-constraint`, while juliet, in memory before the reload, goes on.
#[actix_rt::test]
async fn a_lowered_push_max_active_users_refuses_the_next_new_user() {
    let t = TestServer::start(|_| {}).await;
    let mut juliet = t.login("juliet", "phone").await;
    let ping = "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>";
    assert_eq!(juliet.iq(ping).await.attr("type"), Some("result"));
    reload(&t, "push_max_active_users", |c| c.push_max_active_users = 1);
    let romeo = super::client::try_login(&t, "romeo", "romeo-pw", "desk").await;
    assert!(
        romeo
            .as_ref()
            .is_err_and(|e| e.contains("resource-constraint")),
        "romeo's bind is refused: {:?}",
        romeo.err()
    );
    assert_eq!(juliet.iq(ping).await.attr("type"), Some("result"));
}

/// A shortened `push_response_timeout` gives up on the next publish at the new time: an
/// unanswered publish ends as a timeout within seconds, not after the 60 s it started with.
#[actix_rt::test]
async fn a_shortened_push_response_timeout_ends_the_next_unanswered_publish_sooner() {
    let t = TestServer::start(|_| {}).await;
    let mut app = super::client::Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    enable_push(&mut juliet, "n1").await;
    juliet.close().await;
    reload(&t, "push_response_timeout", |c| {
        c.push_response_timeout = Duration::from_secs(1)
    });
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost' id='m1'><body>hi</body></message>")
        .await;
    app.next().await; // left unanswered
    super::s2s::until_publishes(&t, "the publish ended as a timeout", |h| h.timeout == 1).await;
}

/// A shortened `push_user_idle_time` unloads the next user who becomes idle at the new
/// time: juliet's state leaves memory within seconds of her logout, not after 30 s.
#[actix_rt::test]
async fn a_shortened_push_user_idle_time_unloads_the_next_idle_user_sooner() {
    let t = TestServer::start(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = t.server.as_ref().unwrap().metrics_addr.expect("metrics on");
    let in_memory = "cloud_notify_push_users_in_memory";
    reload(&t, "push_user_idle_time", |c| {
        c.push_user_idle_time = Duration::from_secs(1)
    });
    let mut juliet = t.login("juliet", "phone").await;
    juliet
        .iq("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    super::operate::scrape_until(addr, "juliet in memory", |m| m.get(in_memory) == Some(&1.0))
        .await;
    juliet.close().await;
    super::operate::scrape_until(addr, "juliet unloaded", |m| m.get(in_memory) == Some(&0.0)).await;
}

/// A shortened `push_batch_window` applies to the next window opened: with 60 s at start
/// and 100 ms after the reload, the first message's window closes at once and the next
/// message publishes again (B47), where 60 s would have held it.
#[actix_rt::test]
async fn a_shortened_push_batch_window_closes_the_next_window_sooner() {
    let t = TestServer::start(|c| {
        c.push_notification_with_body = true;
        c.push_batch_window = Duration::from_secs(60);
    })
    .await;
    let mut app = super::client::Component::connect(&t).await;
    reload(&t, "push_batch_window", |c| {
        c.push_batch_window = Duration::from_millis(100)
    });
    super::sleeping_phone(&t, "n1").await;
    let mut romeo = t.login("romeo", "desk").await;
    for b in ["first", "second"] {
        romeo
            .send(&format!(
                "<message type='chat' to='juliet@localhost'><body>{b}</body></message>"
            ))
            .await;
        assert_eq!(body_of(&app.next().await).as_deref(), Some(b));
        super::until_user_stats(&t, "juliet", "the batch window to close", |s| {
            s.open_batch_windows == 0
        })
        .await;
    }
}
