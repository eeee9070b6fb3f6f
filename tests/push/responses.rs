//! B62–B69 and D5, D10, D11, D19: what the app server's answers do.

use crate::harness::*;
use cloud_notify::config::Config;
use cloud_notify::push::AppServerResponse;
use std::time::Duration;

fn max_errors(n: u32) -> Config {
    Config {
        push_max_errors: n,
        ..config()
    }
}

async fn registered(cfg: Config) -> Harness {
    let mut h = Harness::start(cfg).await;
    let s = h.session("phone");
    h.enable_ok(&s, "n1").await;
    h.close(&s);
    h
}

/// One offline message; returns how many publishes it caused, after their answers were
/// handled.
async fn trigger(h: &mut Harness) -> usize {
    h.offline(&chat("hi"));
    let n = h.settled_publishes().await.len();
    // The answers were sent before the publishes reached the channel; let them land.
    h.settle().await;
    n
}

#[actix_rt::test]
async fn b62_sixteen_errors_remove_the_registration() {
    let mut h = registered(config()).await;
    h.answer(Answer::Error("cancel", "item-not-found"), None)
        .await;
    for _ in 0..16 {
        assert_eq!(trigger(&mut h).await, 1);
    }
    assert_eq!(
        trigger(&mut h).await,
        0,
        "the 17th trigger publishes nothing"
    );
    assert!(h.probe.committed_registrations(USER).unwrap().is_empty());
}

#[actix_rt::test]
async fn b63_max_errors_three() {
    let mut h = registered(max_errors(3)).await;
    h.answer(Answer::Error("auth", "not-authorized"), None)
        .await;
    for _ in 0..3 {
        assert_eq!(trigger(&mut h).await, 1);
    }
    assert_eq!(trigger(&mut h).await, 0);
}

#[actix_rt::test]
async fn b64_wait_errors_never_count() {
    let mut h = registered(max_errors(3)).await;
    h.answer(Answer::Error("wait", "resource-constraint"), None)
        .await;
    for _ in 0..6 {
        assert_eq!(trigger(&mut h).await, 1);
    }
    let stored = h.probe.committed_registrations(USER).unwrap();
    assert_eq!(stored[0].1.error_count, 0);
}

#[actix_rt::test]
async fn b65_a_success_resets_the_count() {
    let mut h = registered(max_errors(3)).await;
    h.answer(Answer::Error("cancel", "item-not-found"), None)
        .await;
    trigger(&mut h).await;
    trigger(&mut h).await;
    assert_eq!(
        h.probe.committed_registrations(USER).unwrap()[0]
            .1
            .error_count,
        2
    );
    h.answer(Answer::Result, None).await;
    trigger(&mut h).await;
    assert_eq!(
        h.probe.committed_registrations(USER).unwrap()[0]
            .1
            .error_count,
        0
    );
    h.answer(Answer::Error("cancel", "item-not-found"), None)
        .await;
    trigger(&mut h).await;
    trigger(&mut h).await;
    assert_eq!(trigger(&mut h).await, 1, "still registered");
}

#[actix_rt::test]
async fn b66_d11_errors_from_another_jid_do_not_count() {
    let mut h = registered(max_errors(3)).await;
    h.answer(
        Answer::Error("cancel", "item-not-found"),
        Some("other.example.net"),
    )
    .await;
    for _ in 0..5 {
        assert_eq!(trigger(&mut h).await, 1);
    }
    // D11: the same JID written differently is the same JID.
    h.answer(
        Answer::Error("cancel", "item-not-found"),
        Some("PUSH.example.NET"),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(trigger(&mut h).await, 1);
    }
    assert_eq!(trigger(&mut h).await, 0);
}

#[actix_rt::test]
async fn b67_d19_unknown_ids_have_no_effect() {
    let mut h = registered(max_errors(1)).await;
    for id in ["0123", &"f".repeat(64), &"0".repeat(64)] {
        h.hub.do_send(AppServerResponse {
            iq: stanza(&format!("<iq type='error' id='{id}' from='{APP}'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")),
        });
    }
    assert_eq!(trigger(&mut h).await, 1, "registration untouched");
}

#[actix_rt::test]
async fn b68_removal_while_hibernating_stops_publishes() {
    let mut h = Harness::start(max_errors(1)).await;
    let mut phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    h.answer(Answer::Error("cancel", "item-not-found"), None)
        .await;
    h.hibernate(&mut phone, &[&chat("a")]).await;
    assert_eq!(h.settled_publishes().await.len(), 1);
    h.settle().await;
    h.queue(&mut phone, &chat("b"));
    // The session goes back to the normal timeout and expires without further publishes.
    let _ = phone.next_control().await;
    assert!(h.settled_publishes().await.is_empty());
}

#[actix_rt::test]
async fn b69_unanswered_publish_changes_nothing_and_is_not_resent() {
    let mut h = registered(config()).await;
    h.answer(Answer::Silent, None).await;
    for _ in 0..3 {
        assert_eq!(trigger(&mut h).await, 1);
    }
}

/// D5: error counts are per registration and survive a restart.
#[actix_rt::test]
async fn d5_error_count_survives_restart() {
    let mut h = registered(max_errors(3)).await;
    h.answer(Answer::Error("cancel", "item-not-found"), None)
        .await;
    trigger(&mut h).await;
    trigger(&mut h).await;
    let mut h = h.restart(max_errors(3)).await;
    h.answer(Answer::Error("cancel", "item-not-found"), None)
        .await;
    assert_eq!(trigger(&mut h).await, 1);
    assert_eq!(
        trigger(&mut h).await,
        0,
        "third error after restart removed it"
    );
}

/// D5: a re-enable starts the count afresh.
#[actix_rt::test]
async fn d5_re_enable_resets_the_count() {
    let mut h = registered(max_errors(3)).await;
    h.answer(Answer::Error("cancel", "item-not-found"), None)
        .await;
    trigger(&mut h).await;
    trigger(&mut h).await;
    let s = h.session("phone2");
    h.enable_ok(&s, "n1").await;
    h.close(&s);
    trigger(&mut h).await;
    trigger(&mut h).await;
    assert_eq!(
        trigger(&mut h).await,
        1,
        "only two errors since the re-enable"
    );
}

/// D10: an unanswered publish is given up after push_response_timeout; the timeout is in
/// the ledger, counts as no error, and a late answer is ignored.
#[actix_rt::test]
async fn d10_response_timeout_is_recorded_and_late_answers_ignored() {
    let cfg = Config {
        push_response_timeout: Duration::from_millis(200),
        push_max_errors: 1,
        ..config()
    };
    let mut h = registered(cfg.clone()).await;
    h.answer(Answer::Silent, None).await;
    h.offline(&chat("hi"));
    let p = h.next_publish().await;
    wait_until("the publish is given up", || async {
        h.user_stats()
            .await
            .is_some_and(|s| s.pending_publishes == 0)
    })
    .await;
    h.hub.do_send(AppServerResponse {
        iq: stanza(&format!("<iq type='error' id='{}' from='{APP}'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>", p.id)),
    });
    h.settle().await;
    let mut h = h.restart(cfg).await;
    let stored = h.probe.committed_registrations(USER).unwrap();
    assert_eq!(stored.len(), 1, "the late error was ignored");
    assert!(stored[0].1.last_timeout.is_some(), "timeout recorded");
    assert_eq!(stored[0].1.error_count, 0);
    assert_eq!(trigger(&mut h).await, 1);
}

/// D10: the tracking map is bounded; past it the oldest publish is treated as unanswered.
#[actix_rt::test]
async fn d10_pending_publishes_are_bounded() {
    let mut h = registered(Config {
        push_max_pending_publishes: 2,
        push_max_errors: 1,
        ..config()
    })
    .await;
    h.answer(Answer::Silent, None).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        h.offline(&chat("hi"));
        ids.push(h.next_publish().await.id);
    }
    let error = |id: &str| AppServerResponse {
        iq: stanza(&format!(
            "<iq type='error' id='{id}' from='{APP}'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )),
    };
    // The first publish is no longer tracked: its error is ignored.
    h.hub.do_send(error(&ids[0]));
    assert_eq!(trigger(&mut h).await, 1);
    // The third still is: its error removes the registration.
    h.hub.do_send(error(&ids[2]));
    assert_eq!(trigger(&mut h).await, 0);
}

#[actix_rt::test]
async fn ledger_records_success_and_last_error() {
    let mut h = registered(config()).await;
    h.answer(Answer::Error("wait", "resource-constraint"), None)
        .await;
    trigger(&mut h).await;
    h.answer(Answer::Result, None).await;
    trigger(&mut h).await;
    let h = h.restart(config()).await;
    let (_, rec) = h.probe.committed_registrations(USER).unwrap().remove(0);
    assert!(rec.last_success.is_some());
    let e = rec.last_error.expect("last error kept");
    assert_eq!(
        (e.error_type.as_str(), e.condition.as_str()),
        ("wait", "resource-constraint")
    );
    assert_eq!(rec.client, "phone");
}

/// D19: an id that carries this user's live route but was never sent changes nothing.
#[actix_rt::test]
async fn d19_unknown_id_with_a_live_route_is_ignored() {
    let mut h = registered(max_errors(1)).await;
    h.answer(Answer::Silent, None).await;
    h.offline(&chat("hi"));
    let real = h.next_publish().await.id;
    let forged = format!("{}{}", &real[..16], "0".repeat(48));
    h.hub.do_send(AppServerResponse {
        iq: stanza(&format!("<iq type='error' id='{forged}' from='{APP}'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")),
    });
    assert_eq!(trigger(&mut h).await, 1, "registration untouched");
}
