//! What broke clients nobody here wrote, replayed with the exact bytes each one sends.

use super::raw::{Raw, plaintext};
use super::{DOMAIN, TestServer};

/// xmpp.js (`@xmpp/client` 0.14) opens its stream like this, with double quotes.
const XMPPJS_HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream version=\"1.0\" xmlns=\"jabber:client\" xmlns:stream=\"http://etherx.jabber.org/streams\" to=\"localhost\" xml:lang=\"en\">";

/// go-xmpp (behind go-sendxmpp) opens its stream like this, newline included.
const GOXMPP_HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\n";

/// go-xmpp's PLAIN auth for juliet, with the newline it writes after every element.
const GOXMPP_PLAIN_AUTH: &[u8] =
    b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldABqdWxpZXQtcHc=</auth>\n";

/// Before TLS, with encryption required, no mechanism is offered, and xmpp.js gives up
/// on an empty `<mechanisms/>` ("SASL: No compatible mechanism available").
#[actix_rt::test]
async fn no_empty_mechanisms_next_to_required_starttls() {
    let t = TestServer::start(|_| {}).await;
    let mut c = Raw::connect(t.c2s()).await;
    c.write(XMPPJS_HEADER).await;
    let features = c.until("</stream:features>").await;
    assert!(features.contains("<required/>"), "{features}");
    assert!(!features.contains("mechanisms"), "{features}");
}

/// After SASL the features are bind, session and sm: no `<mechanisms/>` either.
#[actix_rt::test]
async fn no_mechanisms_after_authentication() {
    let t = TestServer::start(plaintext).await;
    let mut c = Raw::connect(t.c2s()).await;
    c.write(XMPPJS_HEADER).await;
    let features = c.until("</stream:features>").await;
    assert!(
        features.contains("<mechanism>PLAIN</mechanism>"),
        "{features}"
    );
    c.write(b"<auth xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\" mechanism=\"PLAIN\">AGp1bGlldABqdWxpZXQtcHc=</auth>").await;
    c.until("<success").await;
    c.write(XMPPJS_HEADER).await;
    let features = c.until("</stream:features>").await;
    assert!(
        features.contains("urn:ietf:params:xml:ns:xmpp-bind"),
        "{features}"
    );
    assert!(features.contains("urn:xmpp:sm:3"), "{features}");
    assert!(!features.contains("mechanisms"), "{features}");
}

/// go-xmpp writes `</auth>\n`: the newline belongs to the old stream, and the restarted
/// stream after `<success/>` must go on (it used to end with a bare EOF).
#[actix_rt::test]
async fn whitespace_after_auth_does_not_end_the_connection() {
    let t = TestServer::start(plaintext).await;
    let mut c = Raw::connect(t.c2s()).await;
    c.write(GOXMPP_HEADER).await;
    c.until("</stream:features>").await;
    c.write(GOXMPP_PLAIN_AUTH).await;
    c.until("<success").await;
    c.write(GOXMPP_HEADER).await;
    let features = c.until("</stream:features>").await;
    assert!(
        features.contains("urn:ietf:params:xml:ns:xmpp-bind"),
        "{features}"
    );
    c.write(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>go</resource></bind></iq>\n")
        .await;
    let bound = c.until("</iq>").await;
    assert!(bound.contains(&format!("juliet@{DOMAIN}/go")), "{bound}");
    // Whitespace keepalives between stanzas are fine too.
    c.write(b"\n \n<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>\n")
        .await;
    c.until("id='p'").await;
    let pong = c.until(">").await;
    assert!(pong.contains("type='result'"), "{pong}");
}

/// What clients ask for at login that is not built is answered `service-unavailable`
/// (profanity asks for bookmarks in private storage and the blocking list; others ask
/// for vCards and the server version), never left unanswered. (Carbons, which profanity
/// asks for too, exist: `carbons.rs`.)
#[actix_rt::test]
async fn unsupported_requests_are_service_unavailable() {
    let t = TestServer::start(|_| {}).await;
    let mut c = t.login("juliet", "laptop").await;
    for (id, payload) in [
        (
            "private",
            "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>",
        ),
        ("vcard", "<vCard xmlns='vcard-temp'/>"),
        ("blocking", "<blocklist xmlns='urn:xmpp:blocking'/>"),
        ("version", "<query xmlns='jabber:iq:version'/>"),
    ] {
        let r = c
            .iq(&format!("<iq type='get' id='{id}'>{payload}</iq>"))
            .await;
        assert_eq!(r.attr("type"), Some("error"), "{id}: {}", String::from(&r));
        assert!(
            String::from(&r).contains("service-unavailable"),
            "{id}: {}",
            String::from(&r)
        );
    }
}

/// disco#items on the server lists its components (the push app servers); on the
/// account it is empty; disco#info advertises items, ping and no more.
#[actix_rt::test]
async fn disco_items_lists_components_and_info_matches_what_is_built() {
    let t = TestServer::start(|_| {}).await;
    let mut c = t.login("juliet", "laptop").await;
    let items = c
        .iq(&format!(
            "<iq type='get' id='i' to='{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        ))
        .await;
    assert_eq!(items.attr("type"), Some("result"));
    assert!(
        String::from(&items).contains(&format!("jid='{}'", super::APP)),
        "{}",
        String::from(&items)
    );
    let own = c
        .iq("<iq type='get' id='o' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await;
    assert_eq!(own.attr("type"), Some("result"));
    assert!(
        !String::from(&own).contains("<item"),
        "{}",
        String::from(&own)
    );
    let info = c
        .iq(&format!(
            "<iq type='get' id='f' to='{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await;
    let text = String::from(&info);
    for var in [
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "urn:xmpp:ping",
    ] {
        assert!(text.contains(var), "{var}: {text}");
    }
    // Carbons are the server's; the archive is the account's (XEP-0313 §7).
    assert!(text.contains("urn:xmpp:carbons:2"), "{text}");
    assert!(!text.contains("urn:xmpp:mam"), "{text}");
}

/// A stream of a later major version is refused with `unsupported-version`.
#[actix_rt::test]
async fn a_stream_of_version_2_is_unsupported() {
    let t = TestServer::start(|_| {}).await;
    let mut c = Raw::connect(t.c2s()).await;
    c.write(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='2.0'>").await;
    let reply = c.rest_until_closed().await;
    assert!(reply.contains("unsupported-version"), "{reply}");
    assert!(
        reply.contains("version='1.0'"),
        "our header says 1.0: {reply}"
    );
}
