//! B30–B41 and D15, D16, D17: the offline, groupchat and archive paths.

use crate::harness::*;

async fn with_registration() -> (Harness, TestSession) {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    h.enable_ok(&s, "n1").await;
    h.close(&s);
    (h, s)
}

#[actix_rt::test]
async fn b30_offline_chat_message_one_publish_with_placeholder() {
    let (mut h, _) = with_registration().await;
    h.offline(&chat("hi"));
    let ps = h.settled_publishes().await;
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].body().as_deref(), Some("New Message!"));
}

#[actix_rt::test]
async fn b31_offline_three_messages_three_publishes() {
    let (mut h, _) = with_registration().await;
    for b in ["a", "b", "c"] {
        h.offline(&chat(b));
    }
    assert_eq!(h.settled_publishes().await.len(), 3);
}

#[actix_rt::test]
async fn b32_offline_chat_state_publishes_without_body() {
    let (mut h, _) = with_registration().await;
    h.offline(&chat_state());
    let ps = h.settled_publishes().await;
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].body(), None);
}

#[actix_rt::test]
async fn b33_offline_headline_no_publish() {
    let (mut h, _) = with_registration().await;
    h.offline("<message type='headline' from='news.example'><body>news</body></message>");
    assert!(h.settled_publishes().await.is_empty());
}

#[actix_rt::test]
async fn b34_d16_error_message_no_publish() {
    let (mut h, _) = with_registration().await;
    h.offline("<message type='error' from='romeo@example.org'><body>bounced</body><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>");
    h.archived("<message type='error' from='romeo@example.org' to='juliet@example.com'><body>bounced</body></message>", true);
    assert!(h.settled_publishes().await.is_empty());
}

#[actix_rt::test]
async fn b35_presence_subscribe_no_publish() {
    let (mut h, _) = with_registration().await;
    h.offline("<presence type='subscribe' from='romeo@example.org' to='juliet@example.com'/>");
    assert!(h.settled_publishes().await.is_empty());
}

#[actix_rt::test]
async fn b36_groupchat_to_absent_resource_publishes_to_every_registration() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    h.enable_ok(&s, "n1").await;
    h.enable_ok(&s, "n2").await;
    h.close(&s);
    h.offline("<message type='groupchat' from='room@muc.example.org/romeo' to='juliet@example.com/gone'><body>hi all</body></message>");
    let ps = h.settled_publishes().await;
    assert_eq!(nodes(&ps), ["n1", "n2"]);
    assert!(
        ps.iter()
            .all(|p| p.body().as_deref() == Some("New Message!"))
    );
}

#[actix_rt::test]
async fn b37_archive_pushes_registrations_of_absent_devices() {
    let mut h = Harness::start(config()).await;
    let phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    h.close(&phone);
    // A desktop session that never enabled push is online.
    h.archived(&chat("hi"), true);
    let ps = h.settled_publishes().await;
    assert_eq!(nodes(&ps), ["n1"]);
}

#[actix_rt::test]
async fn b38_archive_skips_registrations_linked_to_current_sessions() {
    let mut h = Harness::start(config()).await;
    let phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    h.archived(&chat("hi"), true);
    assert!(h.settled_publishes().await.is_empty());
}

/// Tigase's away (`away='true'` on the enable): a registration linked to a connected
/// session is pushed on the archive path only while the host says every online session
/// is away or xa; a plain one never is.
#[actix_rt::test]
async fn archive_pushes_a_linked_away_registration_only_when_everyone_is_away() {
    let mut h = Harness::start(config()).await;
    let phone = h.session("phone");
    let r = h
        .iq(
            &phone,
            &format!(
                "<iq type='set' id='en1'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='n1' away='true'/></iq>"
            ),
        )
        .await;
    assert_result(&r);
    let desk = h.session("desk");
    h.enable_ok(&desk, "n2").await;
    h.archived_with(&chat("hi"), true, false);
    assert!(h.settled_publishes().await.is_empty());
    h.archived_with(&chat("hi"), true, true);
    assert_eq!(nodes(&h.settled_publishes().await), ["n1"]);
}

#[actix_rt::test]
async fn b39_d15_own_outgoing_message_is_not_pushed() {
    let mut h = Harness::start(config()).await;
    let phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    h.close(&phone);
    h.archived("<message type='chat' from='juliet@example.com/desktop' to='romeo@example.org'><body>out</body></message>", true);
    // D15: same local part on another host is still someone else.
    h.archived("<message type='chat' from='juliet@example.com/desktop' to='juliet@other.example'><body>out</body></message>", true);
    assert!(h.settled_publishes().await.is_empty());
}

#[actix_rt::test]
async fn archive_path_stands_aside_when_the_user_has_no_sessions() {
    let mut h = Harness::start(config()).await;
    let phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    h.close(&phone);
    // With no sessions at all the offline path (B30) covers the message. (B40 itself,
    // "MAM does not archive chat states", is the host's MAM deciding; tested there.)
    h.archived(&chat("hi"), false);
    assert!(h.settled_publishes().await.is_empty());
}

#[actix_rt::test]
async fn b41_call_propose_is_urgent_even_to_online_sessions() {
    let mut h = Harness::start(config()).await;
    let phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    h.archived("<message from='romeo@example.org/desk' to='juliet@example.com'><propose xmlns='urn:xmpp:jingle-message:0' id='c1'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>", true);
    let ps = h.settled_publishes().await;
    assert_eq!(nodes(&ps), ["n1"]);
    assert_eq!(ps[0].body().as_deref(), Some("New Message!"));
}

/// D17: JMI v1 calls and a hang-up are urgent too, so a ringing phone stops ringing.
#[actix_rt::test]
async fn d17_jmi_v1_propose_and_retract_are_urgent() {
    let mut h = Harness::start(config()).await;
    let phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    for what in ["propose", "retract"] {
        h.archived(&format!("<message from='romeo@example.org/desk' to='juliet@example.com'><{what} xmlns='urn:xmpp:jingle-message:1' id='c1'/></message>"), true);
    }
    let ps = h.settled_publishes().await;
    assert_eq!(ps.len(), 2);
    assert!(
        ps.iter()
            .all(|p| p.body().as_deref() == Some("New Message!"))
    );
}

/// A burst of events for one user beyond its actor's mailbox: the events past the bound
/// are dropped with a warning (their messages are in offline storage; the phone was woken
/// by the first ones), memory stays bounded, and the user's push keeps working.
#[actix_rt::test]
async fn burst_past_the_user_mailbox_is_bounded() {
    let (mut h, _) = with_registration().await;
    // Loaded, so the burst meets a running actor.
    h.offline(&chat("warm-up"));
    assert_eq!(h.settled_publishes().await.len(), 1);
    for i in 0..2000 {
        h.offline(&chat(&format!("burst {i}")));
    }
    let n = h.settled_publishes().await.len();
    assert!(n >= 256, "the mailbox's worth is delivered ({n})");
    assert!(
        n < 2000,
        "the rest is dropped, not queued without bound ({n})"
    );
    h.offline(&chat("after"));
    assert_eq!(h.settled_publishes().await.len(), 1);
}

/// D17: the user's own device answering a call is archived as an outgoing message; the
/// other devices are pushed so they stop ringing.
#[actix_rt::test]
async fn d17_own_device_accept_reaches_the_other_devices() {
    let mut h = Harness::start(config()).await;
    let phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    h.close(&phone);
    h.archived("<message from='juliet@example.com/desktop' to='romeo@example.org'><accept xmlns='urn:xmpp:jingle-message:1' id='c1'/></message>", true);
    assert_eq!(nodes(&h.settled_publishes().await), ["n1"]);
}

/// D13: a call pushed from the archive path skips the registration of a hibernated
/// session, which gets the same stanza through its queue.
#[actix_rt::test]
async fn d13_urgent_archive_push_skips_hibernated_sessions() {
    let mut h = Harness::start(config()).await;
    let mut phone = h.session("phone");
    let tablet = h.session("tablet");
    h.enable_ok(&phone, "n1").await;
    h.enable_ok(&tablet, "n2").await;
    h.hibernate(&mut phone, &[]).await;
    h.archived("<message from='romeo@example.org/desk' to='juliet@example.com'><propose xmlns='urn:xmpp:jingle-message:0' id='c1'/></message>", true);
    assert_eq!(nodes(&h.settled_publishes().await), ["n2"]);
}
