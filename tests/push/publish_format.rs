//! B19–B29 and D1: the publish IQ on the wire.

use std::collections::HashSet;

use crate::harness::*;
use cloud_notify::config::Config;

async fn one_publish(cfg: Config, trigger: &str) -> Publish {
    let mut h = Harness::start(cfg).await;
    let s = h.session("phone");
    h.enable_ok(&s, "n1").await;
    h.offline(trigger);
    let p = h.next_publish().await;
    assert!(
        h.settled_publishes().await.is_empty(),
        "exactly one publish"
    );
    p
}

#[actix_rt::test]
async fn b19_publish_is_a_set_from_the_bare_domain_with_a_fresh_64_hex_id() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    h.enable_ok(&s, "n1").await;
    let mut ids = HashSet::new();
    for i in 0..5 {
        h.offline(&chat(&format!("m{i}")));
        let p = h.next_publish().await;
        assert_eq!(p.iq.attr("type"), Some("set"));
        assert_eq!(p.iq.attr("from"), Some("example.com"));
        assert_eq!(p.to, APP);
        assert_eq!(p.id.len(), 64);
        assert!(
            p.id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        ids.insert(p.id);
    }
    assert_eq!(ids.len(), 5, "every publish has its own id");
}

#[actix_rt::test]
async fn b20_payload_path() {
    let p = one_publish(config(), &chat("hi")).await;
    let pubsub =
        p.iq.get_child("pubsub", "http://jabber.org/protocol/pubsub")
            .unwrap();
    let publish = pubsub
        .get_child("publish", "http://jabber.org/protocol/pubsub")
        .unwrap();
    let item = publish
        .get_child("item", "http://jabber.org/protocol/pubsub")
        .unwrap();
    assert_eq!(item.attr("id"), None, "<item> has no id");
    let notification = item.get_child("notification", "urn:xmpp:push:0").unwrap();
    let x = notification.get_child("x", "jabber:x:data").unwrap();
    assert_eq!(x.attr("type"), Some("form"));
    assert_eq!(notification.children().count(), 1);
}

#[actix_rt::test]
async fn b21_five_typed_fields_in_prosodys_order() {
    let p = one_publish(config(), &chat("hi")).await;
    let got: Vec<(&str, &str)> = p
        .fields
        .iter()
        .map(|(v, t, _)| (v.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("FORM_TYPE", "hidden"),
            ("message-count", "text-single"),
            ("pending-subscription-count", "text-single"),
            ("last-message-sender", "jid-single"),
            ("last-message-body", "text-single"),
        ]
    );
    assert_eq!(
        p.field("FORM_TYPE").as_deref(),
        Some("urn:xmpp:push:summary")
    );
}

#[actix_rt::test]
async fn b22_message_count_is_always_one() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    h.enable_ok(&s, "n1").await;
    for i in 0..3 {
        h.offline(&chat(&format!("m{i}")));
    }
    let ps = h.settled_publishes().await;
    assert_eq!(ps.len(), 3);
    assert!(
        ps.iter()
            .all(|p| p.field("message-count").as_deref() == Some("1"))
    );
}

#[actix_rt::test]
async fn b23_pending_subscription_count_has_no_value() {
    let p = one_publish(config(), &chat("hi")).await;
    assert_eq!(p.field("pending-subscription-count"), None);
}

#[actix_rt::test]
async fn b24_important_message_gets_the_placeholder_and_no_sender() {
    let p = one_publish(config(), &chat("secret text")).await;
    assert_eq!(p.body().as_deref(), Some("New Message!"));
    assert_eq!(p.sender(), None);
    assert!(!String::from(&p.iq).contains("secret text"));
}

#[actix_rt::test]
async fn b25_unimportant_trigger_still_publishes_without_body() {
    let p = one_publish(config(), &chat_state()).await;
    assert_eq!(p.body(), None);
}

#[actix_rt::test]
async fn b26_with_sender_gives_the_full_from() {
    let p = one_publish(
        Config {
            push_notification_with_sender: true,
            ..config()
        },
        &chat("hi"),
    )
    .await;
    assert_eq!(p.sender().as_deref(), Some("romeo@example.org/desk"));
}

#[actix_rt::test]
async fn b27_with_body_gives_the_text_and_omemo_gives_none() {
    let cfg = Config {
        push_notification_with_body: true,
        ..config()
    };
    let p = one_publish(cfg.clone(), &chat("the real text")).await;
    assert_eq!(p.body().as_deref(), Some("the real text"));
    let omemo = "<message type='chat' from='romeo@example.org/desk'><encrypted xmlns='eu.siacs.conversations.axolotl'><payload>AAAA</payload></encrypted></message>";
    let p = one_publish(cfg, omemo).await;
    assert_eq!(p.body(), None);
}

#[actix_rt::test]
async fn b28_custom_placeholder() {
    let p = one_publish(
        Config {
            push_notification_important_body: "Ping".into(),
            ..config()
        },
        &chat("hi"),
    )
    .await;
    assert_eq!(p.body().as_deref(), Some("Ping"));
}

/// B29 is a Prosody quirk (an empty `<value/>`); D1 sends no value, as its README promised.
#[actix_rt::test]
async fn b29_d1_empty_placeholder_sends_no_value() {
    let p = one_publish(
        Config {
            push_notification_important_body: String::new(),
            ..config()
        },
        &chat("hi"),
    )
    .await;
    let body_field =
        p.iq.get_child("pubsub", "http://jabber.org/protocol/pubsub")
            .and_then(|x| x.get_child("publish", "http://jabber.org/protocol/pubsub"))
            .and_then(|x| x.get_child("item", "http://jabber.org/protocol/pubsub"))
            .and_then(|x| x.get_child("notification", "urn:xmpp:push:0"))
            .and_then(|x| x.get_child("x", "jabber:x:data"))
            .and_then(|x| {
                x.children()
                    .find(|f| f.attr("var") == Some("last-message-body"))
            })
            .unwrap();
    assert_eq!(body_field.children().count(), 0, "no <value/> at all");
}
