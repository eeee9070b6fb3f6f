//! B42–B56 and D12, D13, D18: stanzas for hibernated and ack-overdue sessions.

use std::time::Duration;

use crate::harness::*;
use cloud_notify::config::{Config, NotifyOn};
use cloud_notify::push::{AckOverdue, TimerOwner};

fn with_body() -> Config {
    // The body text identifies which stanza a publish was for.
    Config {
        push_notification_with_body: true,
        ..config()
    }
}

#[actix_rt::test]
async fn b42_hibernation_pushes_only_own_registration() {
    let mut h = Harness::start(config()).await;
    let mut phone = h.session("phone");
    let tablet = h.session("tablet");
    h.enable_ok(&phone, "n1").await;
    h.enable_ok(&tablet, "n2").await;
    assert_eq!(
        h.hibernate(&mut phone, &[&chat("hi")]).await,
        TimerOwner::Module
    );
    let ps = h.settled_publishes().await;
    assert_eq!(nodes(&ps), ["n1"]);
    assert_eq!(ps[0].body().as_deref(), Some("New Message!"));
}

#[actix_rt::test]
async fn b43_queue_at_hibernation_gives_one_important_and_one_unimportant() {
    let mut h = Harness::start(config()).await;
    let mut phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    let (p, a, b, c) = (presence(), chat("a"), chat("b"), chat("c"));
    h.hibernate(&mut phone, &[&p, &a, &b, &presence(), &c])
        .await;
    let ps = h.settled_publishes().await;
    assert_eq!(ps.len(), 2);
    // Queue order: the presence came first.
    assert_eq!(ps[0].body(), None);
    assert_eq!(ps[1].body().as_deref(), Some("New Message!"));
}

#[actix_rt::test]
async fn b44_session_without_enable_gets_no_push() {
    let mut h = Harness::start(config()).await;
    let enabled = h.session("tablet");
    h.enable_ok(&enabled, "n1").await;
    let mut phone = h.session("phone");
    assert_eq!(
        h.hibernate(&mut phone, &[&chat("hi")]).await,
        TimerOwner::Host
    );
    h.queue(&mut phone, &chat("more"));
    assert!(h.settled_publishes().await.is_empty());
}

/// A window far longer than the harness's deadline: a publish that arrives at all was not
/// held for the window.
fn long_window(cfg: Config) -> Config {
    Config {
        push_batch_window: Duration::from_secs(60),
        ..cfg
    }
}

/// B45 as amended by D20: the first stanza publishes at once (Prosody: 1 s later).
#[actix_rt::test]
async fn b45_d20_queued_stanza_publishes_at_once() {
    let (mut h, mut phone) = hibernated_phone(long_window(config())).await;
    h.queue(&mut phone, &chat("hi"));
    let p = h.next_publish().await;
    assert_eq!(p.body().as_deref(), Some("New Message!"));
}

#[actix_rt::test]
async fn b46_burst_within_the_window_gives_one_publish() {
    let (mut h, mut phone) = hibernated_phone(with_body()).await;
    for b in ["m1", "m2", "m3", "m4", "m5"] {
        h.queue(&mut phone, &chat(b));
    }
    let p = h.next_publish().await;
    assert_eq!(p.body().as_deref(), Some("m1"));
    assert!(h.settled_publishes().await.is_empty());
}

/// B47: a stanza after the window of the first opens a new one and publishes at once.
#[actix_rt::test]
async fn b47_messages_in_separate_windows_give_two_publishes() {
    let (mut h, mut phone) = hibernated_phone(with_body()).await;
    h.queue(&mut phone, &chat("first"));
    assert_eq!(h.next_publish().await.body().as_deref(), Some("first"));
    assert_eq!(h.user_stats().await.map(|s| s.open_batch_windows), Some(1));
    wait_until("the first window to close", || async {
        h.user_stats()
            .await
            .is_some_and(|s| s.open_batch_windows == 0)
    })
    .await;
    h.queue(&mut phone, &chat("second"));
    assert_eq!(h.next_publish().await.body().as_deref(), Some("second"));
}

/// D20: an important stanza after an unimportant publish in the same window publishes at
/// once (the upgrade), and only once.
#[actix_rt::test]
async fn d20_important_after_unimportant_upgrades_once_within_the_window() {
    let (mut h, mut phone) = hibernated_phone(long_window(with_body())).await;
    h.queue(&mut phone, &presence());
    assert_eq!(h.next_publish().await.body(), None);
    h.queue(&mut phone, &presence());
    h.queue(&mut phone, &chat("important"));
    assert_eq!(h.next_publish().await.body().as_deref(), Some("important"));
    h.queue(&mut phone, &chat("again"));
    h.queue(&mut phone, &presence());
    assert!(h.settled_publishes().await.is_empty());
}

/// D20: after an important publish nothing else publishes within the window.
#[actix_rt::test]
async fn d20_nothing_follows_an_important_publish_within_the_window() {
    let (mut h, mut phone) = hibernated_phone(long_window(with_body())).await;
    h.queue(&mut phone, &chat("first"));
    assert_eq!(h.next_publish().await.body().as_deref(), Some("first"));
    h.queue(&mut phone, &presence());
    h.queue(&mut phone, &chat("second"));
    assert!(h.settled_publishes().await.is_empty());
}

/// A harness with one phone, push enabled for node n1, hibernated with an empty queue.
async fn hibernated_phone(cfg: Config) -> (Harness, TestSession) {
    let mut h = Harness::start(cfg).await;
    let mut phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    h.hibernate(&mut phone, &[]).await;
    (h, phone)
}

async fn one_queued(cfg: Config, xml: &str) -> Publish {
    let (mut h, mut phone) = hibernated_phone(cfg).await;
    h.queue(&mut phone, xml);
    let p = h.next_publish().await;
    assert!(h.settled_publishes().await.is_empty());
    p
}

#[actix_rt::test]
async fn b48_presence_update_publishes_without_body() {
    assert_eq!(one_queued(config(), &presence()).await.body(), None);
}

#[actix_rt::test]
async fn b49_carbons_sent_without_body_received_with_placeholder() {
    let sent = "<message from='juliet@example.com' to='juliet@example.com/phone'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat' from='juliet@example.com/desktop' to='romeo@example.org'><body>out</body></message></forwarded></sent></message>";
    assert_eq!(one_queued(config(), sent).await.body(), None);
    let received = "<message from='juliet@example.com' to='juliet@example.com/phone'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat' from='romeo@example.org/desk' to='juliet@example.com/desktop'><body>in</body></message></forwarded></received></message>";
    assert_eq!(
        one_queued(config(), received).await.body().as_deref(),
        Some("New Message!")
    );
}

#[actix_rt::test]
async fn b50_encrypted_without_body_gets_placeholder() {
    for (name, ns) in [
        ("encrypted", "eu.siacs.conversations.axolotl"),
        ("encrypted", "urn:xmpp:omemo:0"),
        ("x", "jabber:x:encrypted"),
        ("openpgp", "urn:xmpp:openpgp:0"),
        // D17
        ("encrypted", "urn:xmpp:omemo:2"),
    ] {
        let m = format!(
            "<message type='chat' from='romeo@example.org/desk'><{name} xmlns='{ns}'>x</{name}></message>"
        );
        assert_eq!(
            one_queued(config(), &m).await.body().as_deref(),
            Some("New Message!"),
            "{ns}"
        );
    }
}

#[actix_rt::test]
async fn b51_groupchat_subject_publishes_without_body() {
    let m = "<message type='groupchat' from='room@muc.example.org/romeo'><subject>topic</subject><body>topic changed</body></message>";
    assert_eq!(one_queued(config(), m).await.body(), None);
}

#[actix_rt::test]
async fn b52_empty_body_publishes_without_body() {
    let m = "<message type='chat' from='romeo@example.org/desk'><body/></message>";
    assert_eq!(one_queued(config(), m).await.body(), None);
}

#[actix_rt::test]
async fn b53_headline_publishes_without_body() {
    let m = "<message type='headline' from='news.example'><body>news</body></message>";
    assert_eq!(one_queued(config(), m).await.body(), None);
}

/// B54 with D12 and D20: a resume ends the window. Inside what would still be the first
/// window, the next hibernation's first stanza publishes at once.
#[actix_rt::test]
async fn b54_d12_resume_within_the_window_ends_it() {
    let (mut h, mut phone) = hibernated_phone(long_window(with_body())).await;
    h.queue(&mut phone, &chat("before resume"));
    assert_eq!(
        h.next_publish().await.body().as_deref(),
        Some("before resume")
    );
    h.resume(&phone);
    h.hibernate(&mut phone, &[]).await;
    h.queue(&mut phone, &presence());
    let p = h.next_publish().await;
    assert_eq!(p.body(), None, "the presence, in a new window");
    assert!(h.settled_publishes().await.is_empty());
}

#[actix_rt::test]
async fn b55_d13_stanzas_pushed_at_hibernation_are_not_pushed_again() {
    let mut h = Harness::start(with_body()).await;
    let mut phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    let unacked = phone.queued(&chat("unacked"));
    h.hibernate_with(&phone, vec![unacked.clone()]).await;
    assert_eq!(h.next_publish().await.body().as_deref(), Some("unacked"));
    h.resume(&phone);
    // Still unacked at the second hibernation, together with a new stanza.
    let new = phone.queued(&chat("new"));
    h.hibernate_with(&phone, vec![unacked, new]).await;
    let ps = h.settled_publishes().await;
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].body().as_deref(), Some("new"));
}

/// B56 with D20: the unacked queue of a silent session publishes at once, at most one
/// notification per window however often the ack is overdue.
#[actix_rt::test]
async fn b56_d20_ack_overdue_publishes_at_once() {
    let mut h = Harness::start(long_window(config())).await;
    let mut phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    let queue = vec![phone.queued(&chat("a")), phone.queued(&chat("b"))];
    h.hub.do_send(AckOverdue {
        user: USER.into(),
        session: phone.id(),
        queue: queue.clone(),
    });
    let p = h.next_publish().await;
    assert_eq!(p.body().as_deref(), Some("New Message!"));
    let mut queue = queue;
    queue.push(phone.queued(&chat("c")));
    h.hub.do_send(AckOverdue {
        user: USER.into(),
        session: phone.id(),
        queue,
    });
    assert!(h.settled_publishes().await.is_empty());
}

/// D13: a stanza pushed on the ack-overdue path is not pushed again when the session then
/// hibernates with it still unacked (Prosody pushes it twice: its batch marks copies).
#[actix_rt::test]
async fn d13_ack_overdue_then_hibernation_pushes_once() {
    let mut h = Harness::start(with_body()).await;
    let mut phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    let a = phone.queued(&chat("a"));
    h.hub.do_send(AckOverdue {
        user: USER.into(),
        session: phone.id(),
        queue: vec![a.clone()],
    });
    assert_eq!(h.next_publish().await.body().as_deref(), Some("a"));
    h.hibernate_with(&phone, vec![a]).await;
    assert!(h.settled_publishes().await.is_empty());
}

/// D18: with push_notify_on = "important", presence and chat states wake nobody.
#[actix_rt::test]
async fn d18_notify_on_important_skips_unimportant_stanzas() {
    let mut h = Harness::start(Config {
        push_notify_on: NotifyOn::Important,
        push_notification_with_body: true,
        ..config()
    })
    .await;
    let mut phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    h.hibernate(&mut phone, &[&presence(), &chat_state()]).await;
    h.queue(&mut phone, &presence());
    h.queue(&mut phone, &chat("wake"));
    let p = h.next_publish().await;
    assert_eq!(p.body().as_deref(), Some("wake"));
    assert!(h.settled_publishes().await.is_empty());
}

/// D16: an error bounce queued for a hibernated session wakes nobody.
#[actix_rt::test]
async fn d16_error_message_queued_is_not_pushed() {
    let mut h = Harness::start(with_body()).await;
    let mut phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    h.hibernate(
        &mut phone,
        &["<message type='error' from='romeo@example.org'><body>bounce</body></message>"],
    )
    .await;
    h.queue(&mut phone, &chat("real"));
    assert_eq!(h.next_publish().await.body().as_deref(), Some("real"));
    assert!(h.settled_publishes().await.is_empty());
}
