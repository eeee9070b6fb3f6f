//! XEP-0199 ping: the server's keepalive to a silent client.

use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;

use super::stanza::{self, CLIENT_NS};

pub const PING_NS: &str = "urn:xmpp:ping";

/// A ping from the server: a live client answers before the read timeout ends it.
pub fn keepalive(to: &FullJid, domain: &str) -> Element {
    let mut ping = Element::builder("iq", CLIENT_NS)
        .append(Element::builder("ping", PING_NS))
        .build();
    stanza::set_attr(&mut ping, "type", "get");
    stanza::set_attr(&mut ping, "id", "keepalive");
    stanza::set_attr(&mut ping, "to", &to.to_string());
    stanza::set_attr(&mut ping, "from", domain);
    ping
}

/// Whether `iq` is a ping to answer with an empty result.
pub fn is_ping(iq: &Element) -> bool {
    iq.attr("type") == Some("get") && iq.children().next().is_some_and(|p| p.is("ping", PING_NS))
}
