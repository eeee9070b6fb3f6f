//! B03–B18 and decisions D2, D3, D8, D9: enabling and disabling.

use crate::harness::*;
use cloud_notify::push::TimerOwner;

#[actix_rt::test]
async fn b03_enable_returns_empty_result_with_same_id() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    let r = h
        .iq(&s, "<iq type='set' id='x42'><enable xmlns='urn:xmpp:push:0' jid='push.example.net' node='n1'/></iq>")
        .await;
    assert_result(&r);
    assert_eq!(r.attr("id"), Some("x42"));
    assert_eq!(r.attr("to"), Some("juliet@example.com/phone"));
}

#[actix_rt::test]
async fn b04_enable_without_jid_is_bad_request() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    let r = h
        .iq(
            &s,
            "<iq type='set' id='a'><enable xmlns='urn:xmpp:push:0' node='n1'/></iq>",
        )
        .await;
    assert_error(&r, "modify", "bad-request", Some("Missing jid"));
}

#[actix_rt::test]
async fn b05_enable_own_full_jid_is_refused() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    let r = h
        .enable_at(&s, "juliet@example.com/phone", None, None)
        .await;
    assert_error(
        &r,
        "modify",
        "bad-request",
        Some("JID must be different from ours"),
    );
}

/// B06 is a Prosody quirk that D2 reverses: the user's own bare JID is refused too.
#[actix_rt::test]
async fn b06_d2_enable_own_bare_jid_is_refused() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    let r = h.enable_at(&s, "juliet@example.com", Some("x"), None).await;
    assert_error(
        &r,
        "modify",
        "bad-request",
        Some("JID must be different from ours"),
    );
    h.offline(&chat("hi"));
    assert!(h.settled_publishes().await.is_empty());
}

#[actix_rt::test]
async fn b07_enable_addressed_to_the_domain_is_service_unavailable() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    let r = h
        .iq(&s, "<iq type='set' id='a' to='example.com'><enable xmlns='urn:xmpp:push:0' jid='push.example.net'/></iq>")
        .await;
    assert_error(&r, "cancel", "service-unavailable", None);
}

#[actix_rt::test]
async fn b08_enable_in_a_get_is_service_unavailable() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    let r = h
        .iq(
            &s,
            "<iq type='get' id='a'><enable xmlns='urn:xmpp:push:0' jid='push.example.net'/></iq>",
        )
        .await;
    assert_error(&r, "cancel", "service-unavailable", None);
}

#[actix_rt::test]
async fn b09_enable_without_node_publishes_without_node() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    assert_result(&h.enable(&s, None, None).await);
    h.offline(&chat("hi"));
    let p = h.next_publish().await;
    assert_eq!(p.node, None);
    assert!(
        p.iq.get_child("pubsub", "http://jabber.org/protocol/pubsub")
            .is_some()
    );
}

#[actix_rt::test]
async fn b10_publish_options_are_passed_verbatim() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    let f = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>eruio234vzxc2kla-91</value></field><field var='endpoint' type='text-single'><value>https://a.example/x</value></field></x>";
    assert_result(&h.enable(&s, Some("n1"), Some(f)).await);
    h.offline(&chat("hi"));
    let p = h.next_publish().await;
    assert_eq!(p.options, Some(stanza_free(f)));
    // <publish-options> is a child of <pubsub>, after <publish>.
    let pubsub =
        p.iq.get_child("pubsub", "http://jabber.org/protocol/pubsub")
            .unwrap();
    let names: Vec<&str> = pubsub.children().map(|c| c.name()).collect();
    assert_eq!(names, ["publish", "publish-options"]);
}

fn stanza_free(xml: &str) -> xmpp_parsers::minidom::Element {
    xml.parse().unwrap()
}

#[actix_rt::test]
async fn b11_re_enable_replaces_options_and_publishes_once() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    assert_result(&h.enable(&s, Some("n1"), Some(&form("first"))).await);
    assert_result(&h.enable(&s, Some("n1"), Some(&form("second"))).await);
    h.offline(&chat("hi"));
    let ps = h.settled_publishes().await;
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].options, Some(stanza_free(&form("second"))));
}

#[actix_rt::test]
async fn b12_two_nodes_two_publishes() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    h.enable_ok(&s, "n1").await;
    h.enable_ok(&s, "n2").await;
    h.offline(&chat("hi"));
    assert_eq!(nodes(&h.settled_publishes().await), ["n1", "n2"]);
}

#[actix_rt::test]
async fn b13_max_devices_evicts_oldest() {
    let mut h = Harness::start(cloud_notify::config::Config {
        push_max_devices: 2,
        ..config()
    })
    .await;
    let s = h.session("phone");
    for n in ["n1", "n2", "n3"] {
        h.enable_ok(&s, n).await;
    }
    h.offline(&chat("hi"));
    assert_eq!(nodes(&h.settled_publishes().await), ["n2", "n3"]);
    let stored: Vec<String> = h
        .probe
        .committed_registrations(USER)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(stored, ["push.example.net<n2", "push.example.net<n3"]);
}

#[actix_rt::test]
async fn b14_re_enable_refreshes_eviction_order() {
    let mut h = Harness::start(cloud_notify::config::Config {
        push_max_devices: 2,
        ..config()
    })
    .await;
    let s = h.session("phone");
    for n in ["n1", "n2", "n1", "n3"] {
        h.enable_ok(&s, n).await;
    }
    h.offline(&chat("hi"));
    assert_eq!(nodes(&h.settled_publishes().await), ["n1", "n3"]);
}

#[actix_rt::test]
async fn b15_disable_by_jid_removes_every_node() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    h.enable_ok(&s, "n1").await;
    h.enable_ok(&s, "n2").await;
    assert_result(&h.disable(&s, APP, None).await);
    h.offline(&chat("hi"));
    assert!(h.settled_publishes().await.is_empty());
    assert!(h.probe.committed_registrations(USER).unwrap().is_empty());
}

#[actix_rt::test]
async fn b16_disable_one_node() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    h.enable_ok(&s, "n1").await;
    h.enable_ok(&s, "n2").await;
    assert_result(&h.disable(&s, APP, Some("n1")).await);
    h.offline(&chat("hi"));
    assert_eq!(nodes(&h.settled_publishes().await), ["n2"]);
}

#[actix_rt::test]
async fn b17_disable_without_jid_is_bad_request() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    let r = h
        .iq(
            &s,
            "<iq type='set' id='a'><disable xmlns='urn:xmpp:push:0' node='n1'/></iq>",
        )
        .await;
    assert_error(&r, "modify", "bad-request", Some("Missing jid"));
}

#[actix_rt::test]
async fn b18_disable_unknown_jid_is_ok() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    assert_result(&h.disable(&s, "never.example", None).await);
}

#[actix_rt::test]
async fn d2_malformed_jid_is_jid_malformed() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    let r = h.enable_at(&s, "a@@b", None, None).await;
    assert_error(&r, "modify", "jid-malformed", Some("Invalid jid"));
}

#[actix_rt::test]
async fn d2_empty_node_is_the_same_as_no_node() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    assert_result(&h.enable(&s, Some(""), Some(&form("a"))).await);
    assert_result(&h.enable(&s, None, Some(&form("b"))).await);
    h.offline(&chat("hi"));
    let ps = h.settled_publishes().await;
    assert_eq!(ps.len(), 1, "one registration, not two");
    assert_eq!(ps[0].node, None);
    assert_eq!(ps[0].options, Some(stanza_free(&form("b"))));
}

#[actix_rt::test]
async fn d2_jid_is_normalised() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    assert_result(&h.enable_at(&s, "PUSH.Example.NET", Some("n1"), None).await);
    assert_result(&h.enable_at(&s, "push.example.net", Some("n1"), None).await);
    h.offline(&chat("hi"));
    let ps = h.settled_publishes().await;
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].to, "push.example.net");
}

#[actix_rt::test]
async fn d3_oversized_publish_options_are_not_acceptable() {
    let mut h = Harness::start(cloud_notify::config::Config {
        push_max_publish_options_size: 256,
        ..config()
    })
    .await;
    let s = h.session("phone");
    let r = h
        .enable(&s, Some("n1"), Some(&form(&"s".repeat(300))))
        .await;
    assert_error(
        &r,
        "modify",
        "not-acceptable",
        Some("Publish options too large"),
    );
    h.offline(&chat("hi"));
    assert!(
        h.settled_publishes().await.is_empty(),
        "nothing was registered"
    );
    // The first data form is kept; others are ignored.
    let two = format!("{}{}", form("one"), form("two"));
    assert_result(&h.enable(&s, Some("n1"), Some(&two)).await);
    h.offline(&chat("hi"));
    assert_eq!(
        h.next_publish().await.options,
        Some(stanza_free(&form("one")))
    );
}

/// D8: a disable unlinks every session linked to the removed registration, including a
/// hibernating phone; its timer goes back to the normal timeout.
#[actix_rt::test]
async fn d8_disable_unlinks_every_session_of_the_registration() {
    let mut h = Harness::start(config()).await;
    let mut phone = h.session("phone");
    let tablet = h.session("tablet");
    h.enable_ok(&phone, "n1").await;
    assert_eq!(h.hibernate(&mut phone, &[]).await, TimerOwner::Module);
    // Taken before the disable: the store write it waits for does not move the paused
    // clock (see the harness's store gate), so the upper bound is not a race.
    let disabled_at = tokio::time::Instant::now();
    assert_result(&h.disable(&tablet, APP, Some("n1")).await);
    h.queue(&mut phone, &chat("after disable"));
    let (c, at) = phone.next_control().await;
    assert_eq!(c.session, phone.id());
    // Expired at the normal timeout from the disable, not at the extended one.
    assert!(at.duration_since(disabled_at) >= NORMAL_TIMEOUT);
    assert!(at.duration_since(disabled_at) < h.cfg.push_max_hibernation_timeout);
    assert!(h.settled_publishes().await.is_empty());
}

/// D9: a linked session publishes with the options of the latest enable, whoever sent it.
#[actix_rt::test]
async fn d9_linked_session_uses_current_options() {
    let mut h = Harness::start(config()).await;
    let mut phone = h.session("phone");
    let tablet = h.session("tablet");
    assert_result(&h.enable(&phone, Some("n1"), Some(&form("old"))).await);
    assert_result(&h.enable(&tablet, Some("n1"), Some(&form("new"))).await);
    h.hibernate(&mut phone, &[&chat("hi")]).await;
    let p = h.next_publish().await;
    assert_eq!(p.options, Some(stanza_free(&form("new"))));
}

#[actix_rt::test]
async fn limit_max_active_users_refuses_new_users() {
    let mut h = Harness::start(cloud_notify::config::Config {
        push_max_active_users: 1,
        ..config()
    })
    .await;
    let juliet = h.session("phone");
    let romeo = h.session_of("romeo", "phone");
    h.enable_ok(&juliet, "n1").await;
    let r = h.enable(&romeo, Some("n1"), None).await;
    assert_error(&r, "wait", "resource-constraint", None);
    // Juliet's state is unaffected.
    h.offline(&chat("hi"));
    assert_eq!(h.next_publish().await.node.as_deref(), Some("n1"));
}

/// Past MAX_LINKED_SESSIONS sessions of one user, an enable is refused with
/// wait/resource-constraint and nothing is written.
#[actix_rt::test]
async fn limit_linked_sessions_per_user() {
    let mut h = Harness::start(config()).await;
    let max = 32;
    for i in 0..max {
        let s = h.session(&format!("r{i}"));
        h.enable_ok(&s, "n1").await;
    }
    let extra = h.session("one-too-many");
    let r = h.enable(&extra, Some("n2"), None).await;
    assert_error(&r, "wait", "resource-constraint", Some("Too many sessions"));
    assert_eq!(h.probe.committed_registrations(USER).unwrap().len(), 1);
    let stats = h.user_stats().await.unwrap();
    assert_eq!(stats.linked_sessions, max);
}

/// B11 across a reload: a ledger update waiting to be written must not bring back the
/// old options when the registration is re-enabled (the stored record is the new one).
#[actix_rt::test]
async fn b11_re_enabled_options_survive_a_restart() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    assert_result(&h.enable(&s, Some("n1"), Some(&form("first"))).await);
    h.offline(&chat("hi"));
    assert_eq!(h.settled_publishes().await.len(), 1);
    h.settle().await; // the success is now in the ledger, not yet on disk
    assert_result(&h.enable(&s, Some("n1"), Some(&form("second"))).await);
    let mut h = h.restart(config()).await;
    h.offline(&chat("again"));
    let ps = h.settled_publishes().await;
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].options, Some(stanza_free(&form("second"))));
}

/// `<disable node=''/>` removes only the node-less registration (D2), not the other
/// devices registered at the same app server.
#[actix_rt::test]
async fn d2_disable_empty_node_removes_only_the_node_less_registration() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    assert_result(&h.enable(&s, None, None).await);
    h.enable_ok(&s, "n1").await;
    assert_result(&h.disable(&s, APP, Some("")).await);
    h.offline(&chat("hi"));
    assert_eq!(nodes(&h.settled_publishes().await), ["n1"]);
}
