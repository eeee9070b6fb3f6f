//! What the server makes of the elements a peer sends, after the stream reader: the
//! conversions of session.rs (`handle_client`, `server_iq`, `roster_iq`), component.rs
//! (`handle`), the router, the push module's rules and publish, and what the server keeps
//! of a stanza (XEP-0198 queue, offline storage) or writes to another peer.
//!
//! Input: byte 0 bit 0 picks a component stream (XEP-0114) instead of a client stream;
//! the rest follows the stream header, so the fuzzer works inside stanzas.
//!
//! Asserts, besides no panic: every JID the server parses round-trips through its text;
//! every stanza it forwards, bounces or answers is written by its stream writer and read
//! back unchanged by a peer; every stanza it queues for XEP-0198 or stores offline comes
//! back unchanged from its stored text; a publish built from the stanza is one
//! well-formed element carrying the stanza's sender and body unchanged; a roster set's
//! contact round-trips and its item is writable.
#![no_main]

use cloud_notify::config::{Config, NotifyOn};
use cloud_notify::push::protocol::{self, PushCommand};
use cloud_notify::push::publish::{self, Summary};
use cloud_notify::push::rules::{self, Path};
use cloud_notify::xmpp::roster::{self, RosterSet};
use cloud_notify::xmpp::sm::SmState;
use cloud_notify::xmpp::stanza;
use cloud_notify::xmpp::xml::Limits;
use cloud_notify_fuzz::*;
use libfuzzer_sys::fuzz_target;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

fuzz_target!(|data: &[u8]| {
    let [flags, body @ ..] = data else {
        return;
    };
    let component = flags & 1 == 1;
    let head = if component {
        COMPONENT_HEAD
    } else {
        CLIENT_HEAD
    };
    let (els, _) = elements(head, body, Limits::default());
    for el in els {
        if component {
            from_component(el);
        } else {
            from_client(el);
        }
    }
});

/// What a session writes to its client: the stream writer, and the XEP-0198 queue.
fn to_client(s: &Element) {
    wire_round_trip(s, CLIENT_NS);
    let mut sm = SmState::new("sm1".into(), 4);
    assert_eq!(sm.on_sent(s), Some(1));
    let queued = sm.unacked();
    assert!(
        queued.len() == 1 && &queued[0].1 == s,
        "the XEP-0198 queue lost or changed {s:?}: {queued:?}"
    );
}

/// What the router does with a stanza for a user: delivery to a session, offline
/// storage (with a delay stamp, as session.rs `delay_stamped`), the push module.
fn deliver(s: &Element) {
    to_client(s);
    let mut stamped = s.clone();
    let mut delay = Element::builder("delay", "urn:xmpp:delay").build();
    stanza::set_attr(&mut delay, "from", "example.com");
    stanza::set_attr(&mut delay, "stamp", "2026-01-01T00:00:00.000Z");
    stamped.append_child(delay);
    text_round_trip(&stamped);
    push_module(s);
    if let Some(bounce) = stanza::error_reply(s, "cancel", "recipient-unavailable") {
        to_client(&bounce);
    }
}

fn push_module(s: &Element) {
    let important = rules::is_important(s);
    let _ = rules::is_urgent(s);
    let _ = rules::body_text(s);
    for path in [Path::Offline, Path::Archive, Path::Smacks] {
        for on in [NotifyOn::All, NotifyOn::Important] {
            let _ = rules::wakes(s, path, on);
        }
    }
    let reg = registration(
        &"push.example.net".parse().expect("jid"),
        Some("n1".into()),
        Some(
            "<x xmlns='jabber:x:data' type='submit'><field var='secret'><value>s</value>\
             </field></x>"
                .into(),
        ),
        None,
    )
    .expect("a valid registration");
    let revealing = Config {
        push_notification_with_body: true,
        push_notification_with_sender: true,
        ..Config::default()
    };
    for cfg in [&revealing, &Config::default()] {
        let summary = Summary::of(Some(s), important, cfg);
        check_publish(&reg, &summary);
    }
}

fn from_client(mut el: Element) {
    // session.rs handle_client: anything else ends the stream.
    if !matches!(el.name(), "message" | "presence" | "iq") || !el.has_ns(CLIENT_NS) {
        if el.is("a", "urn:xmpp:sm:3") {
            let _ = el.attr("h").and_then(|h| h.parse::<u32>().ok());
        }
        return;
    }
    let session = session();
    stanza::set_attr(&mut el, "from", &session.to_string());
    assert_eq!(el.attr("from"), Some(session.to_string().as_str()));
    let to = match el.attr("to") {
        None => None,
        Some(t) => match jid_round_trip(t) {
            Some(j) => Some(j),
            None => {
                if let Some(r) = stanza::error_reply(&el, "modify", "jid-malformed") {
                    to_client(&r);
                }
                return;
            }
        },
    };
    let bare = session.to_bare();
    let to_self = to
        .as_ref()
        .is_none_or(|t| t.resource().is_none() && t.to_bare() == bare);
    let to_server = to.as_ref().is_some_and(|t| {
        t.node().is_none() && t.resource().is_none() && t.domain().as_str() == "example.com"
    });
    if el.name() == "iq" && to_self {
        if let Some(query) = el.get_child("query", roster::ROSTER_NS) {
            roster_set(query, &bare);
        }
    }
    if el.name() == "iq" && (to_self || to_server) {
        to_client(&stanza::iq_result(&el, None));
        if let Some(r) = stanza::error_reply(&el, "cancel", "service-unavailable") {
            to_client(&r);
        }
        match protocol::parse_push_iq(&el, &session, 4096) {
            Ok(iq) => {
                if let PushCommand::Enable(e) = &iq.command {
                    if let Ok(reg) =
                        registration(&e.jid, e.node.clone(), e.publish_options.clone(), None)
                    {
                        check_publish(&reg, &Summary::default());
                    }
                }
                to_client(&protocol::result_reply(&iq.id, &session));
            }
            Err(Some(reply)) => to_client(&reply),
            Err(None) => {}
        }
    }
    // Routed: to another user's session or storage, or to a component.
    deliver(&el);
    let to_component = stanza::rename_ns(el, CLIENT_NS, COMPONENT_NS);
    wire_round_trip(&to_component, COMPONENT_NS);
}

fn roster_set(query: &Element, user: &BareJid) {
    match roster::parse_set(query, user) {
        Ok(RosterSet::Update { contact, .. } | RosterSet::Remove { contact }) => {
            let shown = contact.to_string();
            jid_round_trip(&shown).expect("a stored contact parses");
            to_client(&roster::item_element(&shown, None));
        }
        Err(condition) => assert!(!condition.is_empty()),
    }
}

fn from_component(el: Element) {
    let el = stanza::rename_ns(el, COMPONENT_NS, CLIENT_NS);
    let from_ok = el
        .attr("from")
        .and_then(jid_round_trip)
        .is_some_and(|f| f.domain().as_str() == "push.example.net");
    if !from_ok {
        return;
    }
    let to = el.attr("to").and_then(jid_round_trip);
    let to_domain = to.as_ref().is_some_and(|t| {
        t.node().is_none() && t.resource().is_none() && t.domain().as_str() == "example.com"
    });
    if el.name() == "iq" && to_domain && matches!(el.attr("type"), Some("result" | "error")) {
        if let Some(r) = publish::read_response(&el) {
            assert_eq!(Some(r.id.as_str()), el.attr("id"));
            let _ = publish::route_of(&r.id);
            let _ = r.outcome.counts_as_error();
        }
        return;
    }
    deliver(&el);
}
