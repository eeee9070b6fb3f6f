//! `<enable/>`/`<disable/>` validation (src/push/protocol.rs `parse_push_iq`) on IQs
//! read from a client stream, and what the push module builds from an accepted enable.
//!
//! Input: byte 0 picks `push_max_publish_options_size` (64..=8192, the config allows
//! 64..=65536); the rest follows a client stream header.
//!
//! Asserts, besides no panic: results and errors are never answered, everything else is
//! answered; an error reply is an `iq type='error'` to the session with the request's id
//! and is writable to the client; an accepted request has a non-empty id, a JID that
//! round-trips, and (enable) a JID other than the user's, a non-empty node or none,
//! publish-options within the size limit that parse back unchanged; the registration
//! built from it is accepted and survives the store's encoding; its publish is one
//! well-formed element with the node and publish-options the client gave.
#![no_main]

use cloud_notify::push::protocol::{PushCommand, parse_push_iq};
use cloud_notify::push::publish::Summary;
use cloud_notify::xmpp::xml::Limits;
use cloud_notify_fuzz::*;
use libfuzzer_sys::fuzz_target;
use xmpp_parsers::minidom::Element;

fuzz_target!(|data: &[u8]| {
    let [size, body @ ..] = data else {
        return;
    };
    let max_options = 64 + usize::from(*size) * 32;
    let session = session();
    let (els, _) = elements(CLIENT_HEAD, body, Limits::default());
    for mut iq in els {
        if !iq.is("iq", CLIENT_NS) {
            continue;
        }
        // As session.rs does before the push module sees it.
        cloud_notify::xmpp::stanza::set_attr(&mut iq, "from", &session.to_string());
        let t = iq.attr("type");
        match parse_push_iq(&iq, &session, max_options) {
            Err(None) => assert!(
                matches!(t, Some("result" | "error")),
                "{t:?} left unanswered"
            ),
            Err(Some(reply)) => {
                assert!(!matches!(t, Some("result" | "error")), "{t:?} answered");
                assert!(reply.is("iq", CLIENT_NS), "{reply:?}");
                assert_eq!(reply.attr("type"), Some("error"));
                assert_eq!(reply.attr("to"), Some(session.to_string().as_str()));
                assert_eq!(
                    reply.attr("id"),
                    Some(iq.attr("id").filter(|i| !i.is_empty()).unwrap_or("")),
                );
                wire_round_trip(&reply, CLIENT_NS);
                text_round_trip(&reply);
            }
            Ok(req) => {
                assert_eq!(t, Some("set"));
                assert!(!req.id.is_empty());
                assert_eq!(iq.attr("id"), Some(req.id.as_str()));
                match req.command {
                    PushCommand::Disable(d) => {
                        jid_round_trip(&d.jid.to_string()).expect("the jid parses again");
                    }
                    PushCommand::Enable(e) => {
                        jid_round_trip(&e.jid.to_string()).expect("the jid parses again");
                        assert!(e.jid.to_bare() != session.to_bare(), "own JID accepted");
                        assert!(e.node.as_deref() != Some(""));
                        if let Some(o) = &e.publish_options {
                            assert!(o.len() <= max_options, "{} > {max_options}", o.len());
                            let form: Element = o.parse().unwrap_or_else(|err| {
                                panic!("stored publish-options do not parse: {err}\n{o}")
                            });
                            assert!(form.is("x", "jabber:x:data"));
                            text_round_trip(&form);
                        }
                        let reg = registration(
                            &e.jid,
                            e.node.clone(),
                            e.publish_options.clone(),
                            e.language.clone(),
                        )
                        .unwrap_or_else(|err| panic!("accepted enable refused: {err}"));
                        let stored = reg.record.encode().expect("record encodes");
                        let back = cloud_notify::store::RegistrationRecord::decode(&stored)
                            .expect("record decodes");
                        assert_eq!(back, reg.record);
                        check_publish(&reg, &Summary::default());
                    }
                }
            }
        }
    }
});
