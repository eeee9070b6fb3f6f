//! Small stanza operations shared by sessions, components and the router.

use xmpp_parsers::minidom::rxml::{Namespace, NcName};
use xmpp_parsers::minidom::{Element, Node};

pub const CLIENT_NS: &str = "jabber:client";
pub const COMPONENT_NS: &str = "jabber:component:accept";
pub const STANZAS_NS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

fn name(s: &str) -> Option<NcName> {
    NcName::try_from(s).ok()
}

/// Sets (or replaces) an attribute.
pub fn set_attr(el: &mut Element, key: &str, value: &str) {
    if let Some(n) = name(key) {
        el.set_attr(Namespace::NONE, n, value.to_string());
    }
}

/// The same element with its own name and `xmlns` changed to `to` (and those of its
/// children that were in `from`, recursively). Children in other namespaces (a forwarded
/// message inside `urn:xmpp:forward:0`) keep theirs.
pub fn rename_ns(el: Element, from: &str, to: &str) -> Element {
    if !el.has_ns(from) {
        return el;
    }
    let mut b = Element::builder(el.name(), to);
    for ((ns, key), value) in el.attrs().iter() {
        if ns == &Namespace::NONE {
            b = b.attr(key.clone(), value.clone());
        }
    }
    let mut el = el;
    for node in el.take_nodes() {
        b = match node {
            Node::Element(child) => b.append(Node::Element(rename_ns(child, from, to))),
            other => b.append(other),
        };
    }
    b.build()
}

/// The error reply to a stanza (from and to swapped), or `None` when the stanza is itself
/// an error, or an IQ result (which must never be answered).
pub fn error_reply(stanza: &Element, error_type: &str, condition: &str) -> Option<Element> {
    let t = stanza.attr("type");
    if t == Some("error") || (stanza.name() == "iq" && t == Some("result")) {
        return None;
    }
    let mut reply = Element::builder(stanza.name(), stanza.ns()).build();
    set_attr(&mut reply, "type", "error");
    if let Some(id) = stanza.attr("id") {
        set_attr(&mut reply, "id", id);
    }
    if let Some(from) = stanza.attr("from") {
        set_attr(&mut reply, "to", from);
    }
    if let Some(to) = stanza.attr("to") {
        set_attr(&mut reply, "from", to);
    }
    let mut error = Element::builder("error", stanza.ns()).build();
    set_attr(&mut error, "type", error_type);
    error.append_child(Element::builder(condition, STANZAS_NS).build());
    reply.append_child(error);
    Some(reply)
}

/// An empty IQ result to `iq`.
/// A random id for stream ids, resumption ids and our own stanzas (72 bits).
pub fn random_id() -> String {
    use base64::Engine;
    let mut b = [0u8; 12];
    let _ = getrandom::fill(&mut b);
    base64::engine::general_purpose::STANDARD
        .encode(b)
        .replace(['+', '/'], "x")
}

/// A copy of `s` with the XEP-0203 delay stamp of now, as offline storage keeps it.
pub fn delay_stamped(s: &Element, domain: &str) -> Element {
    let mut stamped = s.clone();
    let mut delay = Element::builder("delay", "urn:xmpp:delay").build();
    set_attr(&mut delay, "from", domain);
    set_attr(
        &mut delay,
        "stamp",
        &chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string(),
    );
    stamped.append_child(delay);
    stamped
}

pub fn iq_result(iq: &Element, payload: Option<Element>) -> Element {
    let mut reply = Element::builder("iq", iq.ns()).build();
    set_attr(&mut reply, "type", "result");
    if let Some(id) = iq.attr("id") {
        set_attr(&mut reply, "id", id);
    }
    if let Some(from) = iq.attr("from") {
        set_attr(&mut reply, "to", from);
    }
    if let Some(to) = iq.attr("to") {
        set_attr(&mut reply, "from", to);
    }
    if let Some(p) = payload {
        reply.append_child(p);
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_swaps_addresses() {
        let m: Element = "<message xmlns='jabber:client' from='a@x/r' to='b@y' id='1' type='chat'><body>hi</body></message>".parse().unwrap();
        let r = error_reply(&m, "cancel", "service-unavailable").unwrap();
        assert_eq!(r.attr("to"), Some("a@x/r"));
        assert_eq!(r.attr("from"), Some("b@y"));
        assert_eq!(r.attr("type"), Some("error"));
        assert!(
            r.get_child("error", CLIENT_NS)
                .unwrap()
                .has_child("service-unavailable", STANZAS_NS)
        );
        let e: Element = "<message xmlns='jabber:client' type='error'/>"
            .parse()
            .unwrap();
        assert!(error_reply(&e, "cancel", "x").is_none());
        let res: Element = "<iq xmlns='jabber:client' type='result' id='1'/>"
            .parse()
            .unwrap();
        assert!(error_reply(&res, "cancel", "x").is_none());
    }

    #[test]
    fn rename_keeps_foreign_children() {
        let m: Element = "<message xmlns='jabber:client' to='p.example'><body>x</body><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'/></forwarded></message>".parse().unwrap();
        let c = rename_ns(m, CLIENT_NS, COMPONENT_NS);
        assert!(c.is("message", COMPONENT_NS));
        assert_eq!(c.attr("to"), Some("p.example"));
        assert!(c.has_child("body", COMPONENT_NS));
        let fwd = c.get_child("forwarded", "urn:xmpp:forward:0").unwrap();
        assert!(fwd.has_child("message", CLIENT_NS));
    }
}
