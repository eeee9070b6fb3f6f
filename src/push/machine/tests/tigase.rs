//! The Tigase push extensions through the machine, on the fake clock.

use super::*;
use crate::store::EncryptSettings;

const KEY: [u8; 16] = *b"sixteen byte key";

fn encrypting() -> PushExtensions {
    PushExtensions {
        encrypt: Some(EncryptSettings {
            key: KEY,
            max_size: None,
        }),
        ..PushExtensions::default()
    }
}

/// The JSON inside a publish's `<encrypted/>`, opened with [`KEY`] (which checks the tag).
fn opened(xml: &str) -> serde_json::Value {
    use aes_gcm::aead::Aead;
    use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let iq: Element = xml
        .replacen("<iq", "<iq xmlns='jabber:component:accept'", 1)
        .parse()
        .unwrap();
    let enc = iq
        .descendants()
        .into_iter()
        .find(|e| e.is("encrypted", "tigase:push:encrypt:0"))
        .expect("an encrypted payload");
    let iv = STANDARD.decode(enc.attr("iv").unwrap()).unwrap();
    let sealed = STANDARD.decode(enc.text()).unwrap();
    let plain = Aes128Gcm::new(&KEY.into())
        .decrypt(Nonce::from_slice(&iv), sealed.as_slice())
        .expect("the tag verifies");
    serde_json::from_slice(&plain).unwrap()
}

trait Descendants {
    fn descendants(&self) -> Vec<&Element>;
}

impl Descendants for Element {
    fn descendants(&self) -> Vec<&Element> {
        let mut out = vec![self];
        let mut i = 0;
        while i < out.len() {
            out.extend(out[i].children());
            i += 1;
        }
        out
    }
}

#[test]
fn an_encrypting_registration_gets_sender_and_body_only_inside_the_payload() {
    let mut r = Rig::new(config());
    r.enable_with(1, "n1", Some(encrypting()));
    let out = r.ev(Event::Offline {
        stanza: chat("meet me at the tomb"),
        key: None,
    });
    let [xml] = publish_texts(&out).try_into().unwrap();
    assert!(!xml.contains("tomb") && !xml.contains("romeo"), "{xml}");
    assert!(!xml.contains("jabber:x:data"), "no summary form: {xml}");
    let json = opened(&xml);
    assert_eq!(json["message"], "meet me at the tomb");
    assert_eq!(json["sender"], "romeo@example.org");
    assert_eq!(json["type"], "chat");
    assert_eq!(json["unread"], 1);
}

#[test]
fn the_key_is_stored_with_the_registration_and_a_plain_re_enable_drops_it() {
    let mut r = Rig::new(config());
    let out = r.enable_with(1, "n1", Some(encrypting()));
    let stored = writes(&out).into_iter().find_map(|c| match c {
        Change::PutRegistration { record, .. } => Some(record.clone()),
        _ => None,
    });
    assert_eq!(
        stored.and_then(|r| r.extensions).map(|e| *e),
        Some(encrypting())
    );
    // The spec's way to stop encryption: enable again without <encrypt/>.
    r.enable(1, "n1");
    let out = r.ev(Event::Offline {
        stanza: chat("hi"),
        key: None,
    });
    let [xml] = publish_texts(&out).try_into().unwrap();
    assert!(
        xml.contains("jabber:x:data") && !xml.contains("encrypted"),
        "{xml}"
    );
}

#[test]
fn a_muted_sender_publishes_to_no_registration_that_muted_it() {
    let mut r = Rig::new(config());
    r.enable_with(
        1,
        "muting",
        Some(PushExtensions {
            muted: vec!["romeo@example.org".into()],
            ..PushExtensions::default()
        }),
    );
    r.enable(2, "other");
    let out = r.ev(Event::Offline {
        stanza: chat("hi"),
        key: None,
    });
    let [xml] = publish_texts(&out).try_into().unwrap();
    assert!(xml.contains("node='other'"), "{xml}");
    // Another sender still wakes both.
    let other = stanza(
        "<message xmlns='jabber:client' type='chat' from='nurse@example.org/x' to='juliet@example.com'><body>b</body></message>",
    );
    let out = r.ev(Event::Offline {
        stanza: other,
        key: None,
    });
    assert_eq!(publishes(&out).len(), 2);
}

/// A call rings every registration at once, the linked and online ones too, with the
/// jingle element, the voip type and high priority; the user's own answer from another
/// device reaches them all so they stop ringing, without either mark.
#[test]
fn a_call_rings_every_registration_and_the_answer_stops_them() {
    let mut r = Rig::new(config());
    let all = PushExtensions {
        priority: true,
        jingle: true,
        ..encrypting()
    };
    r.enable_with(1, "phone", Some(all.clone()));
    r.enable_with(2, "tablet", Some(all));
    let propose = stanza(
        "<message xmlns='jabber:client' from='romeo@example.org/phone' to='juliet@example.com'><propose xmlns='urn:xmpp:jingle-message:0' id='call1'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>",
    );
    let out = r.ev(Event::Archived {
        stanza: propose,
        user_has_sessions: true,
        all_away: false,
    });
    let texts = publish_texts(&out);
    assert_eq!(
        texts.len(),
        2,
        "both registrations, though linked to online sessions"
    );
    for xml in &texts {
        assert!(xml.contains("type='voip'"), "{xml}");
        assert!(xml.contains(">high</priority>"), "{xml}");
        assert!(xml.contains("action='propose' sid='call1'"), "{xml}");
        let json = opened(xml);
        assert_eq!(json["type"], "call");
        assert_eq!(json["sender"], "romeo@example.org/phone");
        assert_eq!(json["sid"], "call1");
        assert_eq!(json["media"], serde_json::json!(["audio"]));
    }
    let accept = stanza(
        "<message xmlns='jabber:client' from='juliet@example.com/desk' to='romeo@example.org/phone'><accept xmlns='urn:xmpp:jingle-message:0' id='call1'/></message>",
    );
    let out = r.ev(Event::Archived {
        stanza: accept,
        user_has_sessions: true,
        all_away: false,
    });
    let texts = publish_texts(&out);
    assert_eq!(texts.len(), 2);
    for xml in &texts {
        assert!(!xml.contains("voip") && !xml.contains("priority"), "{xml}");
        assert!(xml.contains("action='accept' sid='call1'"), "{xml}");
    }
    let retract = stanza(
        "<message xmlns='jabber:client' from='romeo@example.org/phone' to='juliet@example.com'><retract xmlns='urn:xmpp:jingle-message:0' id='call1'/></message>",
    );
    let out = r.ev(Event::Archived {
        stanza: retract,
        user_has_sessions: true,
        all_away: false,
    });
    assert_eq!(publishes(&out).len(), 2, "a retract is pushed too");
}

/// The ping has no stanza: an encrypting registration gets the count alone.
#[test]
fn the_ping_to_an_encrypting_registration_is_the_count_alone() {
    let mut r = Rig::new(config());
    r.enable_with(1, "n1", Some(encrypting()));
    let out = r.ev(Event::Ping);
    let [xml] = publish_texts(&out).try_into().unwrap();
    assert_eq!(opened(&xml), serde_json::json!({"unread": 1}));
}

#[test]
fn filters_naming_more_than_push_max_filter_jids_are_not_acceptable() {
    let mut r = Rig::new(Config {
        push_max_filter_jids: 2,
        ..config()
    });
    // Muted JIDs and rooms count together.
    let list = |n: usize| PushExtensions {
        muted: vec!["m@example.org".into()],
        groupchat: Some(
            (1..n)
                .map(|i| crate::store::RoomRule {
                    room: format!("r{i}@chat.example.org"),
                    mention: None,
                })
                .collect(),
        ),
        ..PushExtensions::default()
    };
    let out = r.enable_with(1, "n1", Some(list(2)));
    assert!(writes(&out).len() == 1, "two JIDs are stored");
    let request = r.request();
    let out = r.ev(Event::Enable {
        request,
        session: SessionId(1),
        jid: "juliet@example.com/r1".parse().unwrap(),
        iq_id: "m".into(),
        req: EnableRequest {
            jid: APP.parse().unwrap(),
            node: Some("n1".into()),
            publish_options: None,
            extensions: Some(list(3)),
            language: None,
        },
    });
    assert!(writes(&out).is_empty(), "nothing written");
    let [Reply::Iq(iq)] = replies(&out)[..] else {
        panic!("one IQ reply")
    };
    let text = String::from(iq);
    assert!(
        text.contains("<not-acceptable") && text.contains("Too many filter JIDs"),
        "{text}"
    );
}

/// The key lives in the registration's record only: a disable deletes that record, and
/// the removal log's entry has no place for it.
#[test]
fn a_disable_deletes_the_record_that_holds_the_key() {
    let mut r = Rig::new(config());
    r.enable_with(1, "n1", Some(encrypting()));
    let request = r.request();
    let out = r.ev(Event::Disable {
        request,
        jid: "juliet@example.com/r1".parse().unwrap(),
        iq_id: "d".into(),
        req: crate::push::protocol::DisableRequest {
            jid: APP.parse().unwrap(),
            node: crate::push::protocol::NodeFilter::Any,
        },
    });
    let changes = writes(&out);
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::DeleteRegistration { identifier, .. } if identifier.ends_with("<n1"))),
        "the record is deleted"
    );
    assert!(
        !changes
            .iter()
            .any(|c| matches!(c, Change::PutRegistration { .. })),
        "and not written again"
    );
    r.ev(Event::Written {
        request,
        result: Ok(()),
    });
    assert!(publishes(&r.ev(Event::Ping)).is_empty());
}

/// The groupchat filter, kept per registration: a listed room publishes (a `mentioned`
/// one only when the text names the nickname), an unlisted room does not, and a
/// registration without rules gets every groupchat message.
#[test]
fn groupchat_rules_decide_per_registration() {
    let mut r = Rig::new(config());
    r.enable_with(
        1,
        "filtered",
        Some(PushExtensions {
            groupchat: Some(vec![
                crate::store::RoomRule {
                    room: "coven@chat.example".into(),
                    mention: None,
                },
                crate::store::RoomRule {
                    room: "forres@chat.example".into(),
                    mention: Some("Juliet".into()),
                },
            ]),
            ..PushExtensions::default()
        }),
    );
    r.enable(2, "plain");
    let mut nodes = |room: &str, text: &str| -> Vec<String> {
        let m = stanza(&format!(
            "<message xmlns='jabber:client' type='groupchat' from='{room}/witch' to='juliet@example.com/gone'><body>{text}</body></message>"
        ));
        let out = r.ev(Event::Offline {
            stanza: m,
            key: None,
        });
        let mut v: Vec<String> = publish_texts(&out)
            .iter()
            .map(|x| {
                if x.contains("node='filtered'") {
                    "filtered".to_string()
                } else {
                    "plain".to_string()
                }
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        nodes("coven@chat.example", "double double"),
        ["filtered", "plain"]
    );
    assert_eq!(
        nodes("forres@chat.example", "hail, juliet!"),
        ["filtered", "plain"]
    );
    assert_eq!(nodes("forres@chat.example", "hail, all"), ["plain"]);
    assert_eq!(nodes("heath@chat.example", "juliet"), ["plain"]);
}

fn away() -> PushExtensions {
    PushExtensions {
        away: true,
        ..PushExtensions::default()
    }
}

fn archived(stanza: Element, all_away: bool) -> Event {
    Event::Archived {
        stanza,
        user_has_sessions: true,
        all_away,
    }
}

/// The nodes of the registrations `out` publishes to.
fn nodes(out: &[Effect]) -> Vec<String> {
    let mut nodes: Vec<String> = publish_texts(out)
        .iter()
        .filter_map(|xml| {
            let at = xml.find("node='")? + "node='".len();
            Some(xml[at..].split('\'').next()?.to_string())
        })
        .collect();
    nodes.sort();
    nodes
}

/// `tigase:push:away:0`: a registration that enabled it is published to on the archive
/// path while its session is connected, only when every online session is away or xa;
/// one without it never is while its session is connected.
#[test]
fn away_publishes_to_a_connected_registration_only_while_everyone_is_away() {
    let mut r = Rig::new(config());
    r.enable_with(1, "phone", Some(away()));
    r.enable_with(2, "desk", None);
    let out = r.ev(archived(chat("are you there"), false));
    assert_eq!(nodes(&out), Vec::<String>::new(), "someone is available");
    let out = r.ev(archived(chat("are you there"), true));
    assert_eq!(
        nodes(&out),
        ["phone"],
        "everyone away: the away registration"
    );
    // The user's own outgoing message never wakes their phones (D15), away or not.
    let own = stanza(
        "<message xmlns='jabber:client' type='chat' from='juliet@example.com/r2' to='romeo@example.org'><body>x</body></message>",
    );
    assert!(publishes(&r.ev(archived(own, true))).is_empty());
}

/// A hibernated session gets the message through its queue (D13): away does not push
/// it a second time from the archive. An absent device is pushed with or without away.
#[test]
fn away_leaves_hibernated_sessions_to_their_queue() {
    let mut r = Rig::new(config());
    r.enable_with(1, "phone", Some(away()));
    r.enable_with(2, "tablet", Some(away()));
    r.hibernate(1, Vec::new());
    r.ev(Event::Closed {
        session: SessionId(2),
    });
    let out = r.ev(archived(chat("hello"), true));
    assert_eq!(nodes(&out), ["tablet"]);
    let out = r.ev(archived(chat("hello"), false));
    assert_eq!(nodes(&out), ["tablet"]);
}

/// Away changes nothing for filters: a muted sender stays muted.
#[test]
fn away_still_obeys_the_muted_filter() {
    let mut r = Rig::new(config());
    r.enable_with(
        1,
        "phone",
        Some(PushExtensions {
            muted: vec!["romeo@example.org".into()],
            ..away()
        }),
    );
    assert!(publishes(&r.ev(archived(chat("hi"), true))).is_empty());
}

fn ignoring_unknown() -> PushExtensions {
    PushExtensions {
        ignore_unknown: true,
        ..PushExtensions::default()
    }
}

fn from(sender: &str, body: &str) -> Element {
    stanza(&format!(
        "<message xmlns='jabber:client' type='chat' from='{sender}/r' to='juliet@example.com'><body>{body}</body></message>"
    ))
}

/// `tigase:push:filter:ignore-unknown:0`: the machine asks for the contacts once a
/// registration filters, then publishes to it only for contacts (and the user); the
/// other registration is unaffected; roster changes take effect at once.
#[test]
fn ignore_unknown_publishes_only_for_contacts() {
    let mut r = Rig::new(config());
    r.enable_with(1, "plain", None);
    assert!(!r.m.wants_contacts(), "nobody filters");
    r.enable_with(2, "picky", Some(ignoring_unknown()));
    assert!(r.m.wants_contacts() && !r.m.knows_contacts());
    r.ev(Event::Contacts(vec!["romeo@example.org".into()]));
    assert!(!r.m.wants_contacts() && r.m.knows_contacts());
    r.ev(Event::Closed {
        session: SessionId(1),
    });
    r.ev(Event::Closed {
        session: SessionId(2),
    });
    let offline = |s| Event::Offline {
        stanza: s,
        key: None,
    };
    assert_eq!(
        nodes(&r.ev(offline(from("romeo@example.org", "hi")))),
        ["picky", "plain"]
    );
    assert_eq!(
        nodes(&r.ev(offline(from("stranger@example.net", "buy")))),
        ["plain"]
    );
    r.ev(Event::Contact {
        jid: "stranger@example.net".into(),
        contact: true,
    });
    assert_eq!(
        nodes(&r.ev(offline(from("stranger@example.net", "friend now")))),
        ["picky", "plain"]
    );
    r.ev(Event::Contact {
        jid: "romeo@example.org".into(),
        contact: false,
    });
    assert_eq!(
        nodes(&r.ev(offline(from("romeo@example.org", "gone")))),
        ["plain"]
    );
}

/// A stanza without a known sender, and the user's own call answer (D17), are never
/// kept out by ignore-unknown; before the contacts are known nothing is.
#[test]
fn ignore_unknown_lets_the_user_and_unknown_rosters_through() {
    let mut r = Rig::new(config());
    r.enable_with(
        1,
        "picky",
        Some(PushExtensions {
            jingle: true,
            ..ignoring_unknown()
        }),
    );
    let out = r.ev(archived(from("stranger@example.net", "x"), false));
    assert!(
        publishes(&out).is_empty(),
        "linked and online: not this path"
    );
    r.ev(Event::Closed {
        session: SessionId(1),
    });
    let offline = |s| Event::Offline {
        stanza: s,
        key: None,
    };
    assert_eq!(
        nodes(&r.ev(offline(from("stranger@example.net", "before")))),
        ["picky"],
        "contacts not told yet: let through"
    );
    r.ev(Event::Contacts(Vec::new()));
    assert!(nodes(&r.ev(offline(from("stranger@example.net", "after")))).is_empty());
    let accept = stanza(
        "<message xmlns='jabber:client' from='juliet@example.com/desk' to='romeo@example.org/phone'><accept xmlns='urn:xmpp:jingle-message:0' id='call1'/></message>",
    );
    assert_eq!(nodes(&r.ev(archived(accept, false))), ["picky"]);
}

/// D17: the device that answered a call is not pushed its own answer; the others are.
#[test]
fn the_answering_device_is_not_pushed_its_own_answer() {
    let mut r = Rig::new(config());
    let jingle = PushExtensions {
        jingle: true,
        ..PushExtensions::default()
    };
    r.enable_with(1, "phone", Some(jingle.clone()));
    r.enable_with(2, "tablet", Some(jingle));
    // Session 1 is juliet@example.com/r1, whose enable made "phone".
    let accept = stanza(
        "<message xmlns='jabber:client' from='juliet@example.com/r1' to='romeo@example.org/desk'><accept xmlns='urn:xmpp:jingle-message:0' id='call1'/></message>",
    );
    assert_eq!(nodes(&r.ev(archived(accept.clone(), false))), ["tablet"]);
    // Once that session is gone, its registration is just another device.
    r.ev(Event::Closed {
        session: SessionId(1),
    });
    assert_eq!(nodes(&r.ev(archived(accept, false))), ["phone", "tablet"]);
}
