//! `<enable/>` and `<disable/>`: what a client may ask, and the exact error replies
//! (spec §3–§4, with decisions D2 and D3).
//!
//! The request is read from the raw element rather than through xmpp-parsers'
//! `push::Enable`: that type parses `jid` as a `BareJid` and the form as a `DataForm`, so a
//! full-JID `jid` would come back as `jid-malformed` instead of Prosody's "JID must be
//! different from ours" (B05), and the publish-options form would be re-serialized instead
//! of kept verbatim (B10). The namespace constant and the reply types do come from it.

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::tigase::enable::{self as extensions, ExtensionError};
use crate::store::PushExtensions;

/// A validated push request.
#[derive(Debug, Clone, PartialEq)]
pub enum PushCommand {
    Enable(EnableRequest),
    Disable(DisableRequest),
}

/// A validated `<enable/>`.
#[derive(Debug, Clone, PartialEq)]
pub struct EnableRequest {
    /// The app server, parsed and normalised.
    pub jid: Jid,
    /// `None` for a missing node and for `node=''` (D2).
    pub node: Option<String>,
    /// The first `jabber:x:data` child, serialized verbatim (D3).
    pub publish_options: Option<String>,
    /// The IQ's `xml:lang`, if any.
    pub language: Option<String>,
    /// The Tigase extensions inside the enable, if any (it holds the encryption key:
    /// never log it; its `Debug` does not show the key).
    pub extensions: Option<PushExtensions>,
}

/// A validated `<disable/>`.
#[derive(Debug, Clone, PartialEq)]
pub struct DisableRequest {
    pub jid: Jid,
    pub node: NodeFilter,
}

/// Which registrations of a JID a `<disable/>` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFilter {
    /// No `node` attribute: every node of the JID (§4).
    Any,
    /// `node=''`: the registration without a node, which `node=''` created (D2); a
    /// shared app server's other devices are left alone.
    NoNode,
    /// That node only.
    Node(String),
}

impl NodeFilter {
    pub fn matches(&self, node: Option<&str>) -> bool {
        match self {
            NodeFilter::Any => true,
            NodeFilter::NoNode => node.is_none(),
            NodeFilter::Node(n) => node == Some(n.as_str()),
        }
    }
}

/// A push IQ that was understood: its id (for the reply) and the command.
#[derive(Debug, Clone, PartialEq)]
pub struct PushIq {
    pub id: String,
    pub command: PushCommand,
}

/// Reads a push IQ sent by `session` (a c2s session of the user).
///
/// `Err` holds the complete error reply, ready to send to the session, or `None` for an
/// IQ `result` or `error`, which is never answered (RFC 6120 §8.3.1). Addressing and
/// type rules follow Prosody's `iq-set/self/...` routing (§3.1): only `type='set'` to the
/// user's own bare JID (or without `to`) is handled; anything else is
/// `cancel/service-unavailable`, as the router would answer (B07, B08).
pub fn parse_push_iq(
    iq: &Element,
    session: &FullJid,
    max_publish_options: usize,
) -> Result<PushIq, Option<Element>> {
    if matches!(iq.attr("type"), Some("result") | Some("error")) {
        return Err(None);
    }
    let Some(id) = iq.attr("id").filter(|id| !id.is_empty()) else {
        // Without an id there is nothing to answer to; RFC 6120 makes it a bad request.
        return Err(Some(error_reply(
            "",
            session,
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            Some("Missing id"),
        )));
    };
    let reply = |t, c, text: Option<&str>| Some(error_reply(id, session, t, c, text));

    let addressed_to_self = match iq.attr("to") {
        None => true,
        Some(to) => crate::jid::parse::<Jid>(to)
            .map(|to| {
                to.node().is_some() && to.to_bare() == session.to_bare() && to.resource().is_none()
            })
            .unwrap_or(false),
    };
    let mut children = iq.children();
    let (Some(payload), None) = (children.next(), children.next()) else {
        return Err(reply(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            Some("An IQ must have exactly one child"),
        ));
    };
    let is_push = payload.has_ns(ns::PUSH) && matches!(payload.name(), "enable" | "disable");
    if iq.attr("type") != Some("set") || !addressed_to_self || !is_push {
        return Err(reply(
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            None,
        ));
    }

    let Some(raw_jid) = payload.attr("jid") else {
        return Err(reply(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            Some("Missing jid"),
        ));
    };
    let Some(jid) = crate::jid::parse::<Jid>(raw_jid) else {
        return Err(reply(
            ErrorType::Modify,
            DefinedCondition::JidMalformed,
            Some("Invalid jid"),
        ));
    };
    let node = payload
        .attr("node")
        .filter(|n| !n.is_empty())
        .map(str::to_string);

    let command = if payload.name() == "disable" {
        let filter = match payload.attr("node") {
            None => NodeFilter::Any,
            Some("") => NodeFilter::NoNode,
            Some(n) => NodeFilter::Node(n.to_string()),
        };
        PushCommand::Disable(DisableRequest { jid, node: filter })
    } else {
        // D2: the app server cannot be the user themself, bare or full.
        if jid.to_bare() == session.to_bare() {
            return Err(reply(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                Some("JID must be different from ours"),
            ));
        }
        let publish_options = match payload.children().find(|c| c.is("x", ns::DATA_FORMS)) {
            None => None,
            Some(form) => {
                let xml = String::from(form);
                if xml.len() > max_publish_options {
                    return Err(reply(
                        ErrorType::Modify,
                        DefinedCondition::NotAcceptable,
                        Some("Publish options too large"),
                    ));
                }
                Some(xml)
            }
        };
        let extensions = extensions::parse(payload).map_err(|e| {
            let condition = match e {
                ExtensionError::Algorithm => DefinedCondition::FeatureNotImplemented,
                _ => DefinedCondition::BadRequest,
            };
            reply(ErrorType::Modify, condition, Some(&e.to_string()))
        })?;
        PushCommand::Enable(EnableRequest {
            jid,
            node,
            extensions,
            publish_options,
            language: iq
                .attr_ns(&xmpp_parsers::minidom::rxml::Namespace::XML, "lang")
                .map(str::to_string),
        })
    };
    Ok(PushIq {
        id: id.to_string(),
        command,
    })
}

/// `<iq type='result' id=…/>` to the session.
pub fn result_reply(id: &str, session: &FullJid) -> Element {
    Iq::Result {
        from: None,
        to: Some(Jid::from(session.clone())),
        id: id.to_string(),
        payload: None,
    }
    .into()
}

/// An error reply in Prosody's shape: `to` the session, no `from`, payload not echoed.
pub fn error_reply(
    id: &str,
    session: &FullJid,
    error_type: ErrorType,
    condition: DefinedCondition,
    text: Option<&str>,
) -> Element {
    let mut error = StanzaError::new(error_type, condition, "en", text.unwrap_or_default());
    if text.is_none() {
        error.texts.clear();
    }
    Iq::Error {
        from: None,
        to: Some(Jid::from(session.clone())),
        id: id.to_string(),
        error,
        payload: None,
    }
    .into()
}

/// The user's own bare JID, for comparisons.
pub fn user_jid(user: &str, domain: &str) -> Option<BareJid> {
    crate::jid::parse::<BareJid>(&format!("{user}@{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> FullJid {
        "juliet@example.com/phone".parse().unwrap()
    }

    fn parse(xml: &str) -> Result<PushIq, String> {
        let el: Element = xml.parse().unwrap();
        parse_push_iq(&el, &session(), 4096)
            .map_err(|e| e.map(|e| String::from(&e)).unwrap_or_default())
    }

    const C: &str = "xmlns='jabber:client'";

    #[test]
    fn enable_with_form_keeps_it_verbatim() {
        let form = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>s3</value></field><extra xmlns='urn:example'/></x>";
        let r = parse(&format!(
            "<iq {C} type='set' id='x42'><enable xmlns='urn:xmpp:push:0' jid='push.example.net' node='n1'>{form}</enable></iq>"
        ))
        .unwrap();
        let PushCommand::Enable(e) = r.command else {
            panic!()
        };
        assert_eq!(r.id, "x42");
        assert_eq!(e.node.as_deref(), Some("n1"));
        let kept: Element = e.publish_options.unwrap().parse().unwrap();
        assert_eq!(kept, form.parse::<Element>().unwrap());
    }

    #[test]
    fn tigase_extensions_are_read_and_bad_ones_refused() {
        let r = parse(&format!(
            "<iq {C} type='set' id='a'><enable xmlns='urn:xmpp:push:0' jid='p.example'><encrypt xmlns='tigase:push:encrypt:0' alg='aes-128-gcm'>AAECAwQFBgcICQoLDA0ODw==</encrypt><priority xmlns='tigase:push:priority:0'/></enable></iq>"
        ))
        .unwrap();
        let PushCommand::Enable(e) = r.command else {
            panic!()
        };
        let ext = e.extensions.unwrap();
        assert!(ext.priority && ext.encrypt.is_some());
        let err = parse(&format!(
            "<iq {C} type='set' id='a'><enable xmlns='urn:xmpp:push:0' jid='p.example'><encrypt xmlns='tigase:push:encrypt:0' alg='rot13'>AAECAwQFBgcICQoLDA0ODw==</encrypt></enable></iq>"
        ))
        .unwrap_err();
        assert!(err.contains("<feature-not-implemented"), "{err}");
        assert!(err.contains(">Unknown encryption algorithm<"), "{err}");
        let err = parse(&format!(
            "<iq {C} type='set' id='a'><enable xmlns='urn:xmpp:push:0' jid='p.example'><encrypt xmlns='tigase:push:encrypt:0' alg='aes-128-gcm'>c2hvcnQ=</encrypt></enable></iq>"
        ))
        .unwrap_err();
        assert!(
            err.contains("<bad-request") && err.contains(">Invalid encryption key<"),
            "{err}"
        );
        // The key never comes back in the reply.
        assert!(!err.contains("c2hvcnQ"), "{err}");
    }

    #[test]
    fn missing_jid() {
        let err = parse(&format!(
            "<iq {C} type='set' id='a'><enable xmlns='urn:xmpp:push:0'/></iq>"
        ))
        .unwrap_err();
        assert!(err.contains("type='modify'"), "{err}");
        assert!(err.contains("<bad-request"), "{err}");
        assert!(
            err.contains(">Missing jid</text>") && err.contains("xml:lang='en'"),
            "{err}"
        );
    }

    #[test]
    fn own_full_and_bare_jid_refused() {
        for jid in [
            "juliet@example.com/phone",
            "juliet@example.com",
            "JULIET@example.com",
        ] {
            let err = parse(&format!(
                "<iq {C} type='set' id='a'><enable xmlns='urn:xmpp:push:0' jid='{jid}'/></iq>"
            ))
            .unwrap_err();
            assert!(err.contains("JID must be different from ours"), "{err}");
        }
    }

    #[test]
    fn malformed_jid() {
        let err = parse(&format!(
            "<iq {C} type='set' id='a'><enable xmlns='urn:xmpp:push:0' jid='a@@b'/></iq>"
        ))
        .unwrap_err();
        assert!(err.contains("<jid-malformed"), "{err}");
    }

    #[test]
    fn empty_node_is_no_node() {
        let r = parse(&format!(
            "<iq {C} type='set' id='a'><enable xmlns='urn:xmpp:push:0' jid='p.example' node=''/></iq>"
        ))
        .unwrap();
        assert!(matches!(
            r.command,
            PushCommand::Enable(EnableRequest { node: None, .. })
        ));
    }

    #[test]
    fn oversized_options_not_acceptable() {
        let big = "v".repeat(5000);
        let err = parse(&format!(
            "<iq {C} type='set' id='a'><enable xmlns='urn:xmpp:push:0' jid='p.example'><x xmlns='jabber:x:data' type='submit'><field var='secret'><value>{big}</value></field></x></enable></iq>"
        ))
        .unwrap_err();
        assert!(err.contains("<not-acceptable"), "{err}");
        assert!(err.contains("type='modify'"), "{err}");
    }

    #[test]
    fn get_and_wrong_address_are_service_unavailable() {
        for head in [
            "type='get' id='a'",
            "type='set' id='a' to='example.com'",
            "type='set' id='a' to='romeo@example.com'",
        ] {
            let err = parse(&format!(
                "<iq {C} {head}><enable xmlns='urn:xmpp:push:0' jid='p.example'/></iq>"
            ))
            .unwrap_err();
            assert!(err.contains("<service-unavailable"), "{head}: {err}");
            assert!(err.contains("type='cancel'"), "{err}");
        }
    }

    #[test]
    fn to_own_bare_jid_is_handled() {
        assert!(
            parse(&format!(
                "<iq {C} type='set' id='a' to='juliet@example.com'><disable xmlns='urn:xmpp:push:0' jid='p.example'/></iq>"
            ))
            .is_ok()
        );
    }

    #[test]
    fn disable_missing_jid() {
        let err = parse(&format!(
            "<iq {C} type='set' id='a'><disable xmlns='urn:xmpp:push:0' node='n1'/></iq>"
        ))
        .unwrap_err();
        assert!(
            err.contains(">Missing jid</text>") && err.contains("xml:lang='en'"),
            "{err}"
        );
    }

    #[test]
    fn two_children_bad_request() {
        let err = parse(&format!(
            "<iq {C} type='set' id='a'><enable xmlns='urn:xmpp:push:0' jid='p'/><enable xmlns='urn:xmpp:push:0' jid='q'/></iq>"
        ))
        .unwrap_err();
        assert!(err.contains("<bad-request"), "{err}");
    }

    #[test]
    fn results_and_errors_are_never_answered() {
        for t in ["result", "error"] {
            let el: Element =
                format!("<iq {C} type='{t}' id='a'><enable xmlns='urn:xmpp:push:0' jid='p'/></iq>")
                    .parse()
                    .unwrap();
            assert_eq!(parse_push_iq(&el, &session(), 4096), Err(None));
        }
    }

    #[test]
    fn result_reply_shape() {
        let r = String::from(&result_reply("x42", &session()));
        assert!(r.contains("type='result'"));
        assert!(r.contains("id='x42'"));
        assert!(r.contains("to='juliet@example.com/phone'"));
    }
}
