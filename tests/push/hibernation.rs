//! B57–B61 and D14: the hibernation timer the module holds for push-linked sessions.
//! "Resumable until t" is observed as "the module tells the session to expire at t".

use tokio::time::Instant;

use crate::harness::*;
use cloud_notify::push::{SessionAction, StanzaKey, TimerOwner};

#[actix_rt::test]
async fn b57_push_linked_session_is_held_for_the_extended_timeout() {
    let mut h = Harness::start(config()).await;
    let mut phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    let start = Instant::now();
    assert_eq!(h.hibernate(&mut phone, &[]).await, TimerOwner::Module);
    let (c, at) = phone.next_control().await;
    assert_eq!(c.action, SessionAction::Expire);
    assert_eq!(c.session, phone.id());
    assert!(
        at.duration_since(start) >= h.cfg.push_max_hibernation_timeout,
        "held past the normal timeout until the extended one"
    );
}

#[actix_rt::test]
async fn b58_first_important_push_cuts_the_timeout_back() {
    let mut h = Harness::start(config()).await;
    let mut phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    let start = Instant::now();
    h.hibernate(&mut phone, &[]).await;
    // On the paused clock nothing moves time between the queueing, the push and the
    // timer it starts, so both bounds below are the module's arithmetic, not scheduling.
    let queued = Instant::now();
    h.queue(&mut phone, &chat("hi"));
    let p = h.next_publish().await;
    let (_, at) = phone.next_control().await;
    assert!(p.at >= queued);
    assert!(
        at.duration_since(queued) >= NORMAL_TIMEOUT,
        "normal timeout from the push"
    );
    assert!(
        at.duration_since(start) < h.cfg.push_max_hibernation_timeout,
        "well before the extended timeout"
    );
}

#[actix_rt::test]
async fn b59_unimportant_pushes_keep_the_extended_timeout() {
    let mut h = Harness::start(config()).await;
    let mut phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    let start = Instant::now();
    h.hibernate(&mut phone, &[&presence()]).await;
    h.queue(&mut phone, &presence());
    let (_, at) = phone.next_control().await;
    assert!(at.duration_since(start) >= h.cfg.push_max_hibernation_timeout);
    assert_eq!(h.settled_publishes().await.len(), 2);
}

#[actix_rt::test]
async fn b60_session_without_push_keeps_the_hosts_timer() {
    let mut h = Harness::start(config()).await;
    let mut phone = h.session("phone");
    assert_eq!(
        h.hibernate(&mut phone, &[&chat("hi")]).await,
        TimerOwner::Host
    );
    assert!(h.settled_publishes().await.is_empty());
    assert!(phone.no_control_yet());
}

#[actix_rt::test]
async fn b61_after_disable_no_publish_and_no_extension() {
    let mut h = Harness::start(config()).await;
    let mut phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    assert_result(&h.disable(&phone, APP, None).await);
    assert_eq!(
        h.hibernate(&mut phone, &[&chat("hi")]).await,
        TimerOwner::Host
    );
    assert!(h.settled_publishes().await.is_empty());
}

/// A resume cancels the held timer: after a second hibernation the expiry comes the full
/// extended timeout after that one, not after the first.
#[actix_rt::test]
async fn resume_cancels_the_held_timer() {
    let mut h = Harness::start(config()).await;
    let mut phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    h.hibernate(&mut phone, &[]).await;
    h.resume(&phone);
    h.settle().await;
    let second = Instant::now();
    h.hibernate(&mut phone, &[]).await;
    let (_, at) = phone.next_control().await;
    assert!(at.duration_since(second) >= h.cfg.push_max_hibernation_timeout);
}

/// D14: at the end of the held hibernation the session is told to expire; the host then
/// hands its unacked messages to offline storage. A message already pushed to the
/// session's own registration is not pushed there again, the others are (D13).
#[actix_rt::test]
async fn d14_expiry_then_offline_fallback_pushes_only_what_was_not_pushed() {
    let mut h = Harness::start(cloud_notify::config::Config {
        push_notification_with_body: true,
        ..config()
    })
    .await;
    let mut phone = h.session("phone");
    let tablet = h.session("tablet");
    h.enable_ok(&tablet, "n2").await;
    h.enable_ok(&phone, "n1").await;
    let a = phone.queued(&chat("a"));
    let b = phone.queued(&chat("b"));
    h.hibernate_with(&phone, vec![a.clone(), b.clone()]).await;
    let first = h.next_publish().await;
    assert_eq!(
        (first.node.as_deref(), first.body().as_deref()),
        (Some("n1"), Some("a"))
    );
    let (c, _) = phone.next_control().await;
    assert_eq!(c.action, SessionAction::Expire);
    // The host destroys the session: unacked messages go offline, keyed by position.
    for q in [&a, &b] {
        h.offline_keyed(&String::from(&q.stanza), Some(StanzaKey { ..q.key }));
    }
    h.close(&phone);
    let mut got: Vec<(String, String)> = h
        .settled_publishes()
        .await
        .into_iter()
        .map(|p| {
            (
                p.node.clone().unwrap_or_default(),
                p.body().unwrap_or_default(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("n1".to_string(), "b".to_string()),
            ("n2".to_string(), "a".to_string()),
            ("n2".to_string(), "b".to_string())
        ]
    );
}
