//! The Tigase push extensions over real sockets: a client enables them in its
//! `<enable/>`, the account's disco lists them, and the app-server component receives
//! what each one adds. The encrypted payload is opened here with the key the client
//! enabled, which checks the GCM tag.

use aes_gcm::aead::Aead;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use xmpp_parsers::minidom::Element;

use super::client::{Client, Component};
use super::{APP, DOMAIN, FORM, TestServer, enable_sm, has_feature, quick};

const KEY: [u8; 16] = *b"Siskin's own key";
const ENCRYPT_NS: &str = "tigase:push:encrypt:0";

fn key_b64() -> String {
    STANDARD.encode(KEY)
}

/// Enables push with `extensions` inside the enable; the server's answer.
async fn enable_with(c: &mut Client, node: &str, extensions: &str) -> Element {
    c.iq(&format!(
        "<iq type='set' id='e-{node}'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='{node}'>{FORM}{extensions}</enable></iq>"
    ))
    .await
}

fn notification(publish: &Element) -> Element {
    publish
        .get_child("pubsub", "http://jabber.org/protocol/pubsub")
        .and_then(|p| p.get_child("publish", "http://jabber.org/protocol/pubsub"))
        .and_then(|p| p.get_child("item", "http://jabber.org/protocol/pubsub"))
        .and_then(|i| i.get_child("notification", "urn:xmpp:push:0"))
        .unwrap_or_else(|| panic!("no notification: {}", String::from(publish)))
        .clone()
}

/// The JSON of an encrypted notification, decrypted with [`KEY`]; panics unless the
/// tag verifies.
fn open(notification: &Element) -> serde_json::Value {
    let enc = notification
        .get_child("encrypted", ENCRYPT_NS)
        .unwrap_or_else(|| panic!("not encrypted: {}", String::from(notification)));
    let iv = STANDARD.decode(enc.attr("iv").expect("iv")).unwrap();
    assert_eq!(iv.len(), 12, "a 96-bit IV");
    let sealed = STANDARD.decode(enc.text().trim()).unwrap();
    let plain = Aes128Gcm::new(&KEY.into())
        .decrypt(Nonce::from_slice(&iv), sealed.as_slice())
        .expect("the GCM tag verifies with the enabled key");
    serde_json::from_slice(&plain).unwrap()
}

#[actix_rt::test]
async fn the_account_disco_lists_each_extension() {
    let t = TestServer::start(|_| {}).await;
    let mut juliet = t.login("juliet", "phone").await;
    let own = juliet
        .iq("<iq type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    for var in [
        "tigase:push:encrypt:0",
        "tigase:push:encrypt:aes-128-gcm",
        "tigase:push:priority:0",
        "tigase:push:jingle:0",
        "tigase:push:filter:muted:0",
        "tigase:push:filter:groupchat:0",
        "tigase:push:away:0",
        "tigase:push:filter:ignore-unknown:0",
    ] {
        assert!(has_feature(&own, var), "{var}: {}", String::from(&own));
    }

    let server = juliet
        .iq(&format!("<iq type='get' id='d2' to='{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"))
        .await;
    assert!(!has_feature(&server, "tigase:push:encrypt:0"));
}

/// Offline path: the app server gets the encrypted payload with the real sender and
/// text (push_notification_with_body is off, the default), no summary form, and the
/// high priority mark.
#[actix_rt::test]
async fn an_encrypted_notification_reaches_the_app_server_and_opens_with_the_key() {
    let t = TestServer::start(|_| {}).await;
    let mut app = Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    let r = enable_with(
        &mut juliet,
        "n1",
        &format!(
            "<encrypt xmlns='{ENCRYPT_NS}' alg='aes-128-gcm'>{}</encrypt><priority xmlns='tigase:push:priority:0'/>",
            key_b64()
        ),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    juliet.close().await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>Wherefore art thou, Romeo?</body></message>")
        .await;
    let publish = app.next().await;
    let xml = String::from(&publish);
    assert!(
        !xml.contains("Wherefore") && !xml.contains("romeo@"),
        "{xml}"
    );
    assert!(xml.contains("the-secret"), "publish-options still passed");
    let n = notification(&publish);
    assert!(n.get_child("x", "jabber:x:data").is_none(), "{xml}");
    assert_eq!(
        n.get_child("priority", "tigase:push:priority:0")
            .map(|p| p.text()),
        Some("high".to_string())
    );
    assert_eq!(
        open(&n),
        serde_json::json!({
            "unread": 1,
            "sender": "romeo@localhost",
            "type": "chat",
            "message": "Wherefore art thou, Romeo?"
        })
    );
    app.answer_result(&publish).await;
}

/// `max-size` bounds the base64 payload; the text is cut on a character boundary.
#[actix_rt::test]
async fn a_long_text_is_cut_to_max_size() {
    let t = TestServer::start(|_| {}).await;
    let mut app = Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    let r = enable_with(
        &mut juliet,
        "n1",
        &format!(
            "<encrypt xmlns='{ENCRYPT_NS}' alg='aes-128-gcm' max-size='400'>{}</encrypt>",
            key_b64()
        ),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    juliet.close().await;
    let mut romeo = t.login("romeo", "desk").await;
    let text = "ünïcødé ".repeat(100);
    romeo
        .send(&format!(
            "<message type='chat' to='juliet@localhost'><body>{text}</body></message>"
        ))
        .await;
    let publish = app.next().await;
    let n = notification(&publish);
    let enc = n.get_child("encrypted", ENCRYPT_NS).unwrap();
    assert!(enc.text().trim().len() <= 400, "{}", enc.text().len());
    let json = open(&n);
    let kept = json["message"].as_str().unwrap();
    assert!(!kept.is_empty() && text.starts_with(kept), "{kept}");
}

/// A call proposed to a sleeping phone: `voip`, high priority, the jingle element, and
/// the payload names the caller's full JID, the session and the media.
#[actix_rt::test]
async fn a_proposed_call_rings_a_hibernated_phone() {
    let t = TestServer::start(quick).await;
    let mut app = Component::connect(&t).await;
    let mut phone = t.login("juliet", "phone").await;
    enable_sm(&mut phone).await;
    let r = enable_with(
        &mut phone,
        "n1",
        &format!(
            "<encrypt xmlns='{ENCRYPT_NS}' alg='aes-128-gcm'>{}</encrypt><priority xmlns='tigase:push:priority:0'/><jingle xmlns='tigase:push:jingle:0'/>",
            key_b64()
        ),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    phone.send("<presence/>").await;
    phone.until("presence").await;
    phone.send_nonza("<a xmlns='urn:xmpp:sm:3' h='2'/>").await;
    phone.send_nonza("<r xmlns='urn:xmpp:sm:3'/>").await;
    phone.until("a").await;
    phone.drop_connection().await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message to='juliet@localhost/phone' id='c'><propose xmlns='urn:xmpp:jingle-message:0' id='call-1'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>")
        .await;
    let publish = app.next().await;
    let n = notification(&publish);
    let enc = n.get_child("encrypted", ENCRYPT_NS).unwrap();
    assert_eq!(enc.attr("type"), Some("voip"));
    assert!(n.get_child("priority", "tigase:push:priority:0").is_some());
    let j = n
        .get_child("jingle", "tigase:push:jingle:0")
        .expect("jingle");
    assert_eq!(
        (j.attr("action"), j.attr("sid")),
        (Some("propose"), Some("call-1"))
    );
    let json = open(&n);
    assert_eq!(json["type"], "call");
    assert_eq!(json["sid"], "call-1");
    assert_eq!(json["media"], serde_json::json!(["audio"]));
    assert_eq!(json["sender"], "romeo@localhost/desk");
}

/// A muted sender wakes no registration that muted it; the same message still wakes
/// the user's other registration, whose publish comes out of the same decision, so once
/// it arrived nothing else can be on its way.
#[actix_rt::test]
async fn a_muted_sender_publishes_nothing_to_the_registration_that_muted_it() {
    let t = TestServer::start(|_| {}).await;
    let mut app = Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    let r = enable_with(
        &mut juliet,
        "muting",
        "<muted xmlns='tigase:push:filter:muted:0'><item jid='romeo@localhost'/></muted>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    let r = enable_with(&mut juliet, "plain", "").await;
    assert_eq!(r.attr("type"), Some("result"));
    juliet.close().await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>shh</body></message>")
        .await;
    let publish = app.next().await;
    assert_eq!(super::node_of(&publish).as_deref(), Some("plain"));
    app.answer_result(&publish).await;
    app.expect_nothing_before_ping(&t).await;
}

/// SIGHUP lowers push_max_filter_jids for the next enable of a user whose push state
/// is already in memory.
#[actix_rt::test]
async fn a_reloaded_push_max_filter_jids_bounds_the_next_enable() {
    let t = TestServer::start(|_| {}).await;
    let mut juliet = t.login("juliet", "phone").await;
    let r = enable_with(&mut juliet, "plain", "").await;
    assert_eq!(r.attr("type"), Some("result"));
    let mut lowered = t.cfg.clone();
    lowered.push_max_filter_jids = 1;
    let done = t.server.as_ref().expect("running").reload(&lowered, true);
    assert!(done.applied.iter().any(|a| a.key == "push_max_filter_jids"));
    let two = "<muted xmlns='tigase:push:filter:muted:0'><item jid='romeo@localhost'/><item jid='tybalt@localhost'/></muted>";
    let r = enable_with(&mut juliet, "muting", two).await;
    assert_eq!(r.attr("type"), Some("error"), "{}", String::from(&r));
    assert!(
        String::from(&r).contains("not-acceptable"),
        "{}",
        String::from(&r)
    );
    let one = "<muted xmlns='tigase:push:filter:muted:0'><item jid='romeo@localhost'/></muted>";
    let r = enable_with(&mut juliet, "muting", one).await;
    assert_eq!(r.attr("type"), Some("result"));
}

/// The admin option: with push_encrypted_with_body = false the payload carries only what
/// the plain notification would (no sender, the placeholder text).
#[actix_rt::test]
async fn push_encrypted_with_body_false_keeps_sender_and_text_out() {
    let t = TestServer::start(|c| c.push_encrypted_with_body = false).await;
    let mut app = Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    enable_with(
        &mut juliet,
        "n1",
        &format!(
            "<encrypt xmlns='{ENCRYPT_NS}' alg='aes-128-gcm'>{}</encrypt>",
            key_b64()
        ),
    )
    .await;
    juliet.close().await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>private</body></message>")
        .await;
    let json = open(&notification(&app.next().await));
    assert_eq!(json.get("sender"), None);
    assert_eq!(json["message"], "New Message!");
}

/// The same option turned off by SIGHUP: the next payload keeps sender and text out.
#[actix_rt::test]
async fn push_encrypted_with_body_turned_off_by_a_reload_applies_to_the_next_publish() {
    let t = TestServer::start(|_| {}).await;
    let mut app = Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    enable_with(
        &mut juliet,
        "n1",
        &format!(
            "<encrypt xmlns='{ENCRYPT_NS}' alg='aes-128-gcm'>{}</encrypt>",
            key_b64()
        ),
    )
    .await;
    juliet.close().await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>first</body></message>")
        .await;
    let publish = app.next().await;
    assert_eq!(open(&notification(&publish))["message"], "first");
    app.answer_result(&publish).await;
    let mut off = t.cfg.clone();
    off.push_encrypted_with_body = false;
    let done = t.server.as_ref().expect("running").reload(&off, true);
    assert!(
        done.applied
            .iter()
            .any(|a| a.key == "push_encrypted_with_body")
    );
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>private</body></message>")
        .await;
    let json = open(&notification(&app.next().await));
    assert_eq!(json.get("sender"), None);
    assert_eq!(json["message"], "New Message!");
}

/// With `push_notification_with_sender` as well, the plain form's sender is the full JID
/// but the payload carries the bare one, as the specification asks of a chat message.
#[actix_rt::test]
async fn the_shown_sender_is_bare_inside_the_payload() {
    let t = TestServer::start(|c| {
        c.push_encrypted_with_body = false;
        c.push_notification_with_sender = true;
    })
    .await;
    let mut app = Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    let r = enable_with(
        &mut juliet,
        "n1",
        &format!(
            "<encrypt xmlns='{ENCRYPT_NS}' alg='aes-128-gcm'>{}</encrypt>",
            key_b64()
        ),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    juliet.close().await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>hi</body></message>")
        .await;
    let json = open(&notification(&app.next().await));
    assert_eq!(json["sender"], "romeo@localhost");
    assert_eq!(json["message"], "New Message!");
}

#[actix_rt::test]
async fn an_unknown_algorithm_or_a_bad_key_is_refused() {
    let t = TestServer::start(|_| {}).await;
    let mut juliet = t.login("juliet", "phone").await;
    let r = enable_with(
        &mut juliet,
        "n1",
        &format!(
            "<encrypt xmlns='{ENCRYPT_NS}' alg='aes-256-cbc'>{}</encrypt>",
            key_b64()
        ),
    )
    .await;
    let x = String::from(&r);
    assert_eq!(r.attr("type"), Some("error"), "{x}");
    assert!(x.contains("feature-not-implemented"), "{x}");
    let r = enable_with(
        &mut juliet,
        "n1",
        &format!("<encrypt xmlns='{ENCRYPT_NS}' alg='aes-128-gcm'>AAAA</encrypt>"),
    )
    .await;
    let x = String::from(&r);
    assert!(
        x.contains("bad-request") && x.contains("Invalid encryption key"),
        "{x}"
    );
}

/// The key is stored with the registration: after a restart the publish still opens with
/// it.
#[actix_rt::test]
async fn the_key_survives_a_restart() {
    let mut t = TestServer::start(|_| {}).await;
    {
        let mut juliet = t.login("juliet", "phone").await;
        let r = enable_with(
            &mut juliet,
            "n1",
            &format!(
                "<encrypt xmlns='{ENCRYPT_NS}' alg='aes-128-gcm'>{}</encrypt>",
                key_b64()
            ),
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"));
        juliet.close().await;
    }
    t.server.take().unwrap().shutdown().await;
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        t.server = Some(
            cloud_notify::xmpp::server::Server::start(t.cfg.clone())
                .await
                .expect("restart"),
        );
    })
    .await
    .expect("restart in time");
    let mut app = Component::connect(&t).await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>after restart</body></message>")
        .await;
    let publish = app.next().await;
    assert_eq!(open(&notification(&publish))["message"], "after restart");
    app.answer_result(&publish).await;
}

/// The groupchat filter on the wire: a groupchat message to an absent resource (here
/// from romeo, standing in for a room) publishes only when the room is listed, and for a
/// `mentioned` room only when the text names the nickname.
#[actix_rt::test]
async fn groupchat_rules_pick_the_rooms_and_mentions_that_publish() {
    let t = TestServer::start(|_| {}).await;
    let mut app = Component::connect(&t).await;
    let mut juliet = t.login("juliet", "phone").await;
    let r = enable_with(
        &mut juliet,
        "rooms",
        "<groupchat xmlns='tigase:push:filter:groupchat:0'><room jid='romeo@localhost' allow='mentioned' nick='Juliet'/></groupchat>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    let r = enable_with(&mut juliet, "plain", "").await;
    assert_eq!(r.attr("type"), Some("result"));
    juliet.close().await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send(
            "<message type='groupchat' to='juliet@localhost/gone'><body>hello all</body></message>",
        )
        .await;
    // Both registrations decide on the same message: once the unfiltered one's publish
    // is here, the other one's would be too.
    let p = app.next().await;
    assert_eq!(super::node_of(&p).as_deref(), Some("plain"));
    app.answer_result(&p).await;
    romeo
        .send("<message type='groupchat' to='juliet@localhost/gone'><body>juliet, are you there?</body></message>")
        .await;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let p = app.next().await;
        nodes.push(super::node_of(&p).unwrap_or_default());
        app.answer_result(&p).await;
    }
    nodes.sort();
    assert_eq!(nodes, ["plain", "rooms"]);
    app.expect_nothing_before_ping(&t).await;
}

/// Sets the session's presence (`inner`: its `<show/>`, if any) and waits until the
/// server has taken it: the ping's answer comes after the presence is handled.
async fn set_presence(c: &mut Client, inner: &str) {
    c.send(&format!("<presence>{inner}</presence>")).await;
    c.iq("<iq type='get' id='pres'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
}

/// Both publishes a message made (one decision), by node, sorted; each answered.
async fn two_nodes(app: &mut Component) -> Vec<String> {
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let p = app.next().await;
        nodes.push(super::node_of(&p).unwrap_or_default());
        app.answer_result(&p).await;
    }
    nodes.sort();
    nodes
}

/// `tigase:push:away:0`: the phone that enabled it with `away='true'` is pushed while
/// it is connected, as long as every online client of the user (phone and desk) is away
/// or xa; once the desk is available again, only the absent tablet is. The desk's own
/// registration, without away, is never pushed while it is connected.
#[actix_rt::test]
async fn away_pushes_a_connected_phone_while_every_client_is_away() {
    let t = TestServer::start(|_| {}).await;
    let mut app = Component::connect(&t).await;
    let mut tablet = t.login("juliet", "tablet").await;
    let r = enable_with(&mut tablet, "tablet", "").await;
    assert_eq!(r.attr("type"), Some("result"));
    tablet.close().await;
    let mut phone = t.login("juliet", "phone").await;
    let r = phone
        .iq(&format!(
            "<iq type='set' id='e-phone'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='phone' away='true'>{FORM}</enable></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    set_presence(&mut phone, "<show>xa</show>").await;
    let mut desk = t.login("juliet", "desk").await;
    let r = enable_with(&mut desk, "desk", "").await;
    assert_eq!(r.attr("type"), Some("result"));
    set_presence(&mut desk, "<show>away</show>").await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>anyone?</body></message>")
        .await;
    assert_eq!(two_nodes(&mut app).await, ["phone", "tablet"]);
    // Every publish of that message left in one go, ahead of the pong: no desk.
    app.expect_nothing_before_ping(&t).await;
    set_presence(&mut desk, "").await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>back?</body></message>")
        .await;
    let p = app.next().await;
    assert_eq!(super::node_of(&p).as_deref(), Some("tablet"));
    app.answer_result(&p).await;
    app.expect_nothing_before_ping(&t).await;
}

/// A call for a user with an online desktop and an absent phone rings both at once (the
/// archive path); the desktop's accept, sent to the caller, reaches the phone with the
/// `accept` action so that it stops ringing, and not the desktop itself.
#[actix_rt::test]
async fn a_call_rings_an_online_desktop_and_an_absent_phone_and_the_accept_reaches_the_phone() {
    let t = TestServer::start(|_| {}).await;
    let mut app = Component::connect(&t).await;
    let jingle = "<jingle xmlns='tigase:push:jingle:0'/>";
    let mut phone = t.login("juliet", "phone").await;
    let r = enable_with(&mut phone, "phone", jingle).await;
    assert_eq!(r.attr("type"), Some("result"));
    phone.close().await;
    let mut desk = t.login("juliet", "desk").await;
    let r = enable_with(&mut desk, "desk", jingle).await;
    assert_eq!(r.attr("type"), Some("result"));
    set_presence(&mut desk, "").await;
    let mut romeo = t.login("romeo", "desk").await;
    romeo
        .send("<message to='juliet@localhost' id='c'><propose xmlns='urn:xmpp:jingle-message:0' id='call-2'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>")
        .await;
    let mut rang = Vec::new();
    for _ in 0..2 {
        let p = app.next().await;
        let n = notification(&p);
        let j = n
            .get_child("jingle", "tigase:push:jingle:0")
            .expect("jingle");
        assert_eq!(
            (j.attr("action"), j.attr("sid")),
            (Some("propose"), Some("call-2"))
        );
        rang.push(super::node_of(&p).unwrap_or_default());
        app.answer_result(&p).await;
    }
    rang.sort();
    assert_eq!(rang, ["desk", "phone"], "every registration at once");
    let (m, _) = desk.until("message").await;
    assert!(m.has_child("propose", "urn:xmpp:jingle-message:0"));
    desk.send("<message to='romeo@localhost/desk' id='a'><accept xmlns='urn:xmpp:jingle-message:0' id='call-2'/></message>")
        .await;
    let p = app.next().await;
    let n = notification(&p);
    let j = n
        .get_child("jingle", "tigase:push:jingle:0")
        .expect("jingle");
    assert_eq!(
        (j.attr("action"), j.attr("sid")),
        (Some("accept"), Some("call-2"))
    );
    assert_eq!(super::node_of(&p).as_deref(), Some("phone"));
    app.answer_result(&p).await;
    // The desk that answered is not pushed its own answer.
    app.expect_nothing_before_ping(&t).await;
    let (m, _) = romeo.until("message").await;
    assert!(m.has_child("accept", "urn:xmpp:jingle-message:0"));
}

/// Romeo's message to the absent Juliet; the nodes of the publishes it made (one
/// decision), sorted and answered, and nothing else on its way.
async fn nodes_for(
    t: &TestServer,
    app: &mut Component,
    romeo: &mut Client,
    body: &str,
    n: usize,
) -> Vec<String> {
    romeo
        .send(&format!(
            "<message type='chat' to='juliet@localhost'><body>{body}</body></message>"
        ))
        .await;
    let mut nodes = Vec::new();
    for _ in 0..n {
        let p = app.next().await;
        nodes.push(super::node_of(&p).unwrap_or_default());
        app.answer_result(&p).await;
    }
    app.expect_nothing_before_ping(t).await;
    nodes.sort();
    nodes
}

/// Juliet puts Romeo on her roster (`add`) or takes him off, from a session that then
/// logs out.
async fn roster(t: &TestServer, add: bool) {
    let mut desk = t.login("juliet", "desk").await;
    let item = if add {
        "<item jid='romeo@localhost'/>"
    } else {
        "<item jid='romeo@localhost' subscription='remove'/>"
    };
    let r = desk
        .iq(&format!(
            "<iq type='set' id='r'><query xmlns='jabber:iq:roster'>{item}</query></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    desk.close().await;
}

/// `tigase:push:filter:ignore-unknown:0`: the registration that asked for it is pushed
/// only for senders on the roster, the plain one for everyone; adding and removing the
/// contact takes effect at once, and after a restart the roster is read before the
/// first message is decided.
#[actix_rt::test]
async fn ignore_unknown_pushes_only_for_contacts() {
    let mut t = TestServer::start(|_| {}).await;
    {
        let mut app = Component::connect(&t).await;
        let mut phone = t.login("juliet", "phone").await;
        let r = enable_with(
            &mut phone,
            "picky",
            "<ignore-unknown xmlns='tigase:push:filter:ignore-unknown:0'/>",
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
        let r = enable_with(&mut phone, "plain", "").await;
        assert_eq!(r.attr("type"), Some("result"));
        phone.close().await;
        let mut romeo = t.login("romeo", "desk").await;
        assert_eq!(
            nodes_for(&t, &mut app, &mut romeo, "hello?", 1).await,
            ["plain"]
        );
        roster(&t, true).await;
        assert_eq!(
            nodes_for(&t, &mut app, &mut romeo, "friends", 2).await,
            ["picky", "plain"]
        );
        roster(&t, false).await;
        assert_eq!(
            nodes_for(&t, &mut app, &mut romeo, "removed", 1).await,
            ["plain"]
        );
        romeo.close().await;
    }
    t.server.take().unwrap().shutdown().await;
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        t.server = Some(
            cloud_notify::xmpp::server::Server::start(t.cfg.clone())
                .await
                .expect("restart"),
        );
    })
    .await
    .expect("restart in time");
    let mut app = Component::connect(&t).await;
    let mut romeo = t.login("romeo", "desk").await;
    assert_eq!(
        nodes_for(&t, &mut app, &mut romeo, "after restart", 1).await,
        ["plain"]
    );
}
