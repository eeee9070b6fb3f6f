//! Subscription stanzas for one user that arrive in a row: each changes the roster as
//! the one before it left it. Found with Prosody, whose link delivered a contact's
//! approval and its request back together (clients such as Conversations send both at
//! once); here a component sends them in one write.

use sha1::Digest;

use super::raw::Raw;
use super::{APP, APP_SECRET, TestServer};

/// The app server's domain as a component, in raw bytes, so that two stanzas can go in
/// one write.
async fn raw_component(t: &TestServer) -> Raw {
    let mut c = Raw::connect(t.component()).await;
    c.write(
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{APP}'>"
        )
        .as_bytes(),
    )
    .await;
    let header = c.until("<stream:stream").await + &c.until(">").await;
    let id = header
        .split(" id='")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .unwrap_or_else(|| panic!("no stream id in {header}"));
    let digest: String = sha1::Sha1::digest(format!("{id}{APP_SECRET}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    c.write(format!("<handshake>{digest}</handshake>").as_bytes())
        .await;
    c.until("<handshake").await;
    c.until(">").await;
    c
}

#[actix_rt::test]
async fn an_approval_and_a_request_back_in_one_write_both_reach_the_roster() {
    let t = TestServer::start(|_| {}).await;
    let mut bot = raw_component(&t).await;
    let mut juliet = super::s2s::online(&t, "juliet", "phone").await;
    let contact = format!("bot@{APP}");
    juliet
        .send(&format!("<presence type='subscribe' to='{contact}'/>"))
        .await;
    bot.until("type='subscribe'").await;
    bot.write(
        format!(
            "<presence type='subscribed' from='{contact}' to='juliet@localhost'/>\
             <presence type='subscribe' from='{contact}' to='juliet@localhost'/>"
        )
        .as_bytes(),
    )
    .await;
    let request = loop {
        let (p, _) = juliet.until("presence").await;
        if p.attr("type") == Some("subscribe") {
            break p;
        }
    };
    assert_eq!(request.attr("from"), Some(contact.as_str()));
    let roster = juliet
        .iq("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let item = roster
        .children()
        .flat_map(|q| q.children())
        .find(|i| i.attr("jid") == Some(contact.as_str()))
        .unwrap_or_else(|| panic!("{}", String::from(&roster)));
    // The approval made it `to` and ended the ask; the request read after it keeps that.
    assert_eq!(
        item.attr("subscription"),
        Some("to"),
        "{}",
        String::from(&roster)
    );
    assert_eq!(item.attr("ask"), None, "{}", String::from(&roster));
}

/// RFC 6121 §3.1.5 for a contact that is not ours: the user's approval is followed by
/// the user's current presence, unasked (Prosody waits for it and never probes).
#[actix_rt::test]
async fn an_approval_to_a_contact_elsewhere_is_followed_by_the_users_presence() {
    let t = TestServer::start(|_| {}).await;
    let mut bot = raw_component(&t).await;
    let mut juliet = super::s2s::online(&t, "juliet", "phone").await;
    let contact = format!("bot@{APP}");
    bot.write(
        format!("<presence type='subscribe' from='{contact}' to='juliet@localhost'/>").as_bytes(),
    )
    .await;
    let (request, _) = juliet.until("presence").await;
    assert_eq!(request.attr("type"), Some("subscribe"));
    juliet
        .send(&format!("<presence type='subscribed' to='{contact}'/>"))
        .await;
    let approval = bot.until(">").await;
    assert!(approval.contains("type='subscribed'"), "{approval}");
    // The next stanza: juliet's presence, from her full JID, available.
    let before = bot.until("from='juliet@localhost/phone'").await;
    let tag = before[before.rfind('<').expect("a tag")..].to_string() + &bot.until(">").await;
    assert!(
        tag.starts_with("<presence") && !tag.contains(" type="),
        "{tag}"
    );
}

/// The user's own subscription stanzas and a contact's take one path through the roster:
/// each asked the other, and the user approves as the contact's approval arrives. Read
/// in the session and written after the contact's change, the user's approval undid it
/// (the item ended `from` with the ask still set). Twenty contacts, each raced once.
#[actix_rt::test]
async fn an_approval_sent_as_the_contacts_approval_arrives_ends_in_both() {
    let t = TestServer::start(|_| {}).await;
    let mut bot = raw_component(&t).await;
    let mut juliet = super::s2s::online(&t, "juliet", "phone").await;
    for i in 0..20 {
        let contact = format!("bot{i}@{APP}");
        juliet
            .send(&format!("<presence type='subscribe' to='{contact}'/>"))
            .await;
        bot.until("type='subscribe'").await;
        bot.write(
            format!("<presence type='subscribe' from='{contact}' to='juliet@localhost'/>")
                .as_bytes(),
        )
        .await;
        loop {
            let (p, _) = juliet.until("presence").await;
            if p.attr("type") == Some("subscribe") && p.attr("from") == Some(contact.as_str()) {
                break;
            }
        }
        // Both answers at once, each after a message (archived: the store is busy, so
        // the two roster reads tend to meet in one batch).
        juliet
            .send(&format!(
                "<message type='chat' to='{contact}'><body>hi</body></message>"
            ))
            .await;
        juliet
            .send(&format!("<presence type='subscribed' to='{contact}'/>"))
            .await;
        bot.write(
            format!(
                "<message type='chat' from='{contact}' to='juliet@localhost'><body>hi</body></message>\
                 <presence type='subscribed' from='{contact}' to='juliet@localhost'/>"
            )
            .as_bytes(),
        )
        .await;
        loop {
            let (p, _) = juliet.until("presence").await;
            if p.attr("type") == Some("subscribed") && p.attr("from") == Some(contact.as_str()) {
                break;
            }
        }
        let roster = juliet
            .iq(&format!(
                "<iq type='get' id='r{i}'><query xmlns='jabber:iq:roster'/></iq>"
            ))
            .await;
        let item = roster
            .children()
            .flat_map(|q| q.children())
            .find(|i| i.attr("jid") == Some(contact.as_str()))
            .unwrap_or_else(|| panic!("{}", String::from(&roster)));
        // RFC 6121 §3.1.5 and §3.1.6: approved one way, answered the other.
        assert_eq!(
            (item.attr("subscription"), item.attr("ask")),
            (Some("both"), None),
            "round {i}: {}",
            String::from(&roster)
        );
    }
}
