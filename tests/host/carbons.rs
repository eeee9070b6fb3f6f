//! Message carbons (XEP-0280 v2) over the wire: received and sent copies, `<private/>`
//! and `no-copy`, never a copy back to the sending session, enable and disable.

use xmpp_parsers::minidom::Element;

use super::client::Client;
use super::{TestServer, has_feature};

const CARBONS: &str = "urn:xmpp:carbons:2";
const FWD: &str = "urn:xmpp:forward:0";

/// Logs Juliet in as `resource`, available, with carbons enabled.
async fn with_carbons(t: &TestServer, resource: &str) -> Client {
    let mut c = t.login("juliet", resource).await;
    c.send("<presence/>").await;
    let r = c
        .iq(&format!(
            "<iq type='set' id='c1'><enable xmlns='{CARBONS}'/></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    c
}

/// The next message, with the direction of the carbon it is (`None`: not a carbon) and
/// the message inside.
async fn next_message(c: &mut Client) -> (Option<String>, Element) {
    let (m, _) = c.until("message").await;
    for dir in ["received", "sent"] {
        if let Some(inner) = m
            .get_child(dir, CARBONS)
            .and_then(|w| w.get_child("forwarded", FWD))
            .and_then(|f| f.get_child("message", "jabber:client"))
        {
            assert_eq!(
                m.attr("from"),
                Some("juliet@localhost"),
                "from the bare JID"
            );
            return (Some(dir.to_string()), inner.clone());
        }
    }
    (None, m)
}

fn body(m: &Element) -> String {
    m.get_child("body", "jabber:client")
        .map(|b| b.text())
        .unwrap_or_default()
}

#[actix_rt::test]
async fn carbons_are_the_servers_feature() {
    let t = TestServer::start(|_| {}).await;
    let mut juliet = t.login("juliet", "phone").await;
    let server = juliet
        .iq("<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    assert!(has_feature(&server, CARBONS), "{}", String::from(&server));
}

#[actix_rt::test]
async fn received_and_sent_copies_reach_the_other_session_only() {
    let t = TestServer::start(|_| {}).await;
    let mut phone = with_carbons(&t, "phone").await;
    let mut desk = with_carbons(&t, "desk").await;
    let mut romeo = t.login("romeo", "garden").await;
    romeo.send("<presence/>").await;

    romeo
        .send("<message type='chat' to='juliet@localhost/desk'><body>to the desk</body></message>")
        .await;
    let (dir, m) = next_message(&mut desk).await;
    assert_eq!((dir, body(&m)), (None, "to the desk".to_string()));
    let (dir, m) = next_message(&mut phone).await;
    assert_eq!(dir.as_deref(), Some("received"));
    assert_eq!(body(&m), "to the desk");
    assert_eq!(m.attr("from"), Some("romeo@localhost/garden"));

    desk.send(
        "<message type='chat' to='romeo@localhost/garden'><body>from the desk</body></message>",
    )
    .await;
    let (dir, m) = next_message(&mut phone).await;
    assert_eq!(dir.as_deref(), Some("sent"));
    assert_eq!(body(&m), "from the desk");
    assert_eq!(m.attr("from"), Some("juliet@localhost/desk"));
    let (m, _) = romeo.until("message").await;
    assert_eq!(body(&m), "from the desk");
    // The sending session gets no copy of its own message: the next thing it reads is
    // the answer to a ping sent after it.
    let (_, before) = {
        desk.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        desk.until("iq").await
    };
    assert!(
        before.iter().all(|e| e.name() != "message"),
        "{:?}",
        before.iter().map(String::from).collect::<Vec<_>>()
    );
}

#[actix_rt::test]
async fn private_and_no_copy_messages_are_not_copied() {
    let t = TestServer::start(|_| {}).await;
    let mut phone = with_carbons(&t, "phone").await;
    let mut desk = with_carbons(&t, "desk").await;
    desk.send(&format!(
        "<message type='chat' to='romeo@localhost'><body>private</body><private xmlns='{CARBONS}'/><no-copy xmlns='urn:xmpp:hints'/></message>"
    ))
    .await;
    desk.send(
        "<message type='chat' to='romeo@localhost'><body>hinted</body><no-copy xmlns='urn:xmpp:hints'/></message>",
    )
    .await;
    desk.send("<message type='chat' to='romeo@localhost'><body>shared</body></message>")
        .await;
    let (dir, m) = next_message(&mut phone).await;
    assert_eq!(dir.as_deref(), Some("sent"));
    assert_eq!(body(&m), "shared", "the first copy is the third message");
}

#[actix_rt::test]
async fn a_session_that_disabled_carbons_gets_no_copies() {
    let t = TestServer::start(|_| {}).await;
    let mut phone = with_carbons(&t, "phone").await;
    let r = phone
        .iq(&format!(
            "<iq type='set' id='c2'><disable xmlns='{CARBONS}'/></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    let mut desk = with_carbons(&t, "desk").await;
    let mut romeo = t.login("romeo", "garden").await;
    romeo
        .send("<message type='chat' to='juliet@localhost/desk'><body>desk only</body></message>")
        .await;
    desk.send("<message type='chat' to='romeo@localhost'><body>out</body></message>")
        .await;
    let (_, m) = next_message(&mut desk).await;
    assert_eq!(body(&m), "desk only");
    // A message to the bare JID reaches the phone itself; nothing came before it.
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>to all</body></message>")
        .await;
    let (dir, m) = next_message(&mut phone).await;
    assert_eq!((dir, body(&m)), (None, "to all".to_string()));
}

/// XEP-0280 §6: copies go to every session that enabled carbons, with or without
/// presence. A session that sent none gets no message to the bare JID itself (RFC 6121
/// delivers those to available resources), so it gets a `received` copy of it; the
/// available session gets the message once, as it is.
#[actix_rt::test]
async fn a_session_without_presence_gets_copies_of_messages_to_the_bare_jid() {
    let t = TestServer::start(|_| {}).await;
    let mut phone = with_carbons(&t, "phone").await;
    let mut quiet = t.login("juliet", "quiet").await;
    let r = quiet
        .iq(&format!(
            "<iq type='set' id='c3'><enable xmlns='{CARBONS}'/></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{}", String::from(&r));
    let mut romeo = t.login("romeo", "garden").await;
    romeo
        .send("<message type='chat' to='juliet@localhost'><body>to the bare JID</body></message>")
        .await;
    let (dir, m) = next_message(&mut quiet).await;
    assert_eq!(dir.as_deref(), Some("received"));
    assert_eq!(body(&m), "to the bare JID");
    assert_eq!(m.attr("from"), Some("romeo@localhost/garden"));
    let (dir, m) = next_message(&mut phone).await;
    assert_eq!((dir, body(&m)), (None, "to the bare JID".to_string()));
    // A resource that is gone: delivered as to the bare JID, copied the same way.
    romeo
        .send(
            "<message type='chat' to='juliet@localhost/gone'><body>to a gone one</body></message>",
        )
        .await;
    let (dir, m) = next_message(&mut quiet).await;
    assert_eq!(
        (dir.as_deref(), body(&m).as_str()),
        (Some("received"), "to a gone one")
    );
    // The phone's next message is that one, as it is: no copy of the first came before.
    let (dir, m) = next_message(&mut phone).await;
    assert_eq!((dir, body(&m)), (None, "to a gone one".to_string()));
}
