//! XEP-0030 service discovery: what the server and an account offer.

use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;

use super::mam::{MAM_EXTENDED, MAM_NS};
use super::ping::PING_NS;
use super::sm::SM_NS;
use super::stanza;
use super::user::CARBONS_NS;
use crate::config::Config;

pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

/// The answer to a disco query in `iq` (to the server when `server`), or `None` when
/// `iq` is not one.
pub fn answer(iq: &Element, server: bool, cfg: &Config) -> Option<Element> {
    let p = iq.children().next()?;
    if !(p.is("query", DISCO_INFO) || p.is("query", DISCO_ITEMS)) {
        return None;
    }
    if iq.attr("type") != Some("get") || p.attr("node").is_some() {
        return stanza::error_reply(iq, "cancel", "item-not-found");
    }
    let q = if p.is("query", DISCO_INFO) {
        info(server)
    } else {
        items(server, cfg)
    };
    Some(stanza::iq_result(iq, Some(q)))
}

/// The server's items are its components (the push app servers); an account has none
/// to list.
fn items(server: bool, cfg: &Config) -> Element {
    let mut q = Element::builder("query", DISCO_ITEMS).build();
    if server {
        for c in &cfg.components {
            let mut item = Element::builder("item", DISCO_ITEMS).build();
            stanza::set_attr(&mut item, "jid", &c.jid);
            q.append_child(item);
        }
    }
    q
}

/// B01/B02: the push feature is the account's, not the server's; so is the archive
/// (XEP-0313 §7).
fn info(server: bool) -> Element {
    let identity = |category: &str, kind: &str| {
        let mut e = Element::builder("identity", DISCO_INFO).build();
        stanza::set_attr(&mut e, "category", category);
        stanza::set_attr(&mut e, "type", kind);
        e
    };
    let feature = |var: &str| {
        let mut e = Element::builder("feature", DISCO_INFO).build();
        stanza::set_attr(&mut e, "var", var);
        e
    };
    let mut q = Element::builder("query", DISCO_INFO).build();
    if server {
        q.append_child(identity("server", "im"));
        q.append_child(feature(DISCO_INFO));
        q.append_child(feature(DISCO_ITEMS));
        q.append_child(feature(PING_NS));
        q.append_child(feature(SM_NS));
        q.append_child(feature(CARBONS_NS));
    } else {
        q.append_child(identity("account", "registered"));
        q.append_child(feature(DISCO_INFO));
        q.append_child(feature(ns::PUSH));
        // The Tigase extensions built in push::tigase, which Siskin and Snikket iOS look
        // for here before they enable them.
        for var in crate::push::tigase::FEATURES {
            q.append_child(feature(var));
        }
        q.append_child(feature(MAM_NS));
        q.append_child(feature(MAM_EXTENDED));
    }
    q
}
