//! Rosters and presence subscriptions (RFC 6121): the pure part. Parsing a roster set,
//! building items, and the subscription state changes of §3 for outbound (sent by the
//! user) and inbound (received for the user) subscription presence.

use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;

use super::stanza;
use crate::store::{RosterItem, Subscription};

pub const ROSTER_NS: &str = "jabber:iq:roster";

/// Longest roster item name and group name accepted, and groups per item.
const MAX_TEXT: usize = 1024;
const MAX_GROUPS: usize = 32;

/// A validated roster set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterSet {
    Update {
        contact: BareJid,
        name: Option<String>,
        groups: Vec<String>,
    },
    Remove {
        contact: BareJid,
    },
}

/// Reads `<query xmlns='jabber:iq:roster'><item …/></query>` of a set (RFC 6121 §2.1.5).
/// `Err` is the stanza error condition.
pub fn parse_set(query: &Element, user: &BareJid) -> Result<RosterSet, &'static str> {
    let mut items = query.children().filter(|c| c.is("item", ROSTER_NS));
    let (Some(item), None) = (items.next(), items.next()) else {
        return Err("bad-request");
    };
    let contact = item
        .attr("jid")
        .and_then(crate::jid::parse::<Jid>)
        .ok_or("jid-malformed")?
        .to_bare();
    if &contact == user {
        return Err("not-allowed");
    }
    if item.attr("subscription") == Some("remove") {
        return Ok(RosterSet::Remove { contact });
    }
    let name = item.attr("name").map(str::to_string);
    if name.as_ref().is_some_and(|n| n.len() > MAX_TEXT) {
        return Err("not-acceptable");
    }
    let mut groups: Vec<String> = item
        .children()
        .filter(|c| c.is("group", ROSTER_NS))
        .map(|g| g.text())
        .collect();
    groups.sort();
    groups.dedup();
    if groups.len() > MAX_GROUPS || groups.iter().any(|g| g.is_empty() || g.len() > MAX_TEXT) {
        return Err("not-acceptable");
    }
    Ok(RosterSet::Update {
        contact,
        name,
        groups,
    })
}

/// The `<item/>` for a contact, as in a roster result or push.
pub fn item_element(contact: &str, item: Option<&RosterItem>) -> Element {
    let mut el = Element::builder("item", ROSTER_NS).build();
    stanza::set_attr(&mut el, "jid", contact);
    let Some(item) = item else {
        stanza::set_attr(&mut el, "subscription", "remove");
        return el;
    };
    if let Some(n) = &item.name {
        stanza::set_attr(&mut el, "name", n);
    }
    stanza::set_attr(&mut el, "subscription", item.subscription.as_str());
    if item.ask {
        stanza::set_attr(&mut el, "ask", "subscribe");
    }
    for g in &item.groups {
        el.append_child(
            Element::builder("group", ROSTER_NS)
                .append(g.as_str())
                .build(),
        );
    }
    el
}

fn add(s: Subscription, to: bool, from: bool) -> Subscription {
    match (s.to() || to, s.from() || from) {
        (true, true) => Subscription::Both,
        (true, false) => Subscription::To,
        (false, true) => Subscription::From,
        (false, false) => Subscription::None,
    }
}

fn remove(s: Subscription, to: bool, from: bool) -> Subscription {
    add(
        match (s.to() && !to, s.from() && !from) {
            (true, true) => Subscription::Both,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (false, false) => Subscription::None,
        },
        false,
        false,
    )
}

/// Subscription presence the user sends (§3.1.2, §3.2.2, §3.3.2, §3.4.2). Returns whether
/// the item changed (so it is stored and pushed).
pub fn outbound(item: &mut RosterItem, kind: &str) -> bool {
    let before = item.clone();
    match kind {
        "subscribe" if !item.subscription.to() => {
            item.ask = true;
            item.listed = true;
        }
        "subscribed" if item.pending_in.is_some() || !item.subscription.from() => {
            item.subscription = add(item.subscription, false, true);
            item.pending_in = None;
            item.listed = true;
        }
        "unsubscribe" => {
            item.subscription = remove(item.subscription, true, false);
            item.ask = false;
        }
        "unsubscribed" => {
            item.subscription = remove(item.subscription, false, true);
            item.pending_in = None;
        }
        _ => {}
    }
    *item != before
}

/// Subscription presence received for the user (§3.1.3, §3.2.3, §3.3.3, §3.4.3). Returns
/// (the item changed, the presence is delivered to the user).
pub fn inbound(item: &mut RosterItem, kind: &str, presence: &Element) -> (bool, bool) {
    let before = item.clone();
    let deliver = match kind {
        // Already subscribed: nothing to ask the user.
        "subscribe" if item.subscription.from() => false,
        "subscribe" => {
            item.pending_in = Some(String::from(presence));
            true
        }
        "subscribed" if item.ask => {
            item.subscription = add(item.subscription, true, false);
            item.ask = false;
            true
        }
        "unsubscribe" if item.subscription.from() || item.pending_in.is_some() => {
            item.subscription = remove(item.subscription, false, true);
            item.pending_in = None;
            true
        }
        "unsubscribed" if item.subscription.to() || item.ask => {
            item.subscription = remove(item.subscription, true, false);
            item.ask = false;
            true
        }
        _ => false,
    };
    (*item != before, deliver)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kind: &str) -> Element {
        format!("<presence xmlns='jabber:client' type='{kind}' from='romeo@example.org' to='juliet@example.com'/>")
            .parse()
            .unwrap()
    }

    #[test]
    fn full_subscription_handshake() {
        // Juliet subscribes to Romeo; Romeo approves; Romeo subscribes back.
        let mut juliet_view = RosterItem::new();
        let mut romeo_view = RosterItem::new();
        assert!(outbound(&mut juliet_view, "subscribe"));
        assert!(juliet_view.ask && juliet_view.listed);
        assert_eq!(
            inbound(&mut romeo_view, "subscribe", &p("subscribe")),
            (true, true)
        );
        assert!(romeo_view.pending_in.is_some());
        assert!(outbound(&mut romeo_view, "subscribed"));
        assert_eq!(romeo_view.subscription, Subscription::From);
        assert_eq!(
            inbound(&mut juliet_view, "subscribed", &p("subscribed")),
            (true, true)
        );
        assert_eq!(juliet_view.subscription, Subscription::To);
        assert!(!juliet_view.ask);
        assert!(outbound(&mut romeo_view, "subscribe"));
        assert_eq!(
            inbound(&mut juliet_view, "subscribe", &p("subscribe")),
            (true, true)
        );
        assert!(outbound(&mut juliet_view, "subscribed"));
        assert_eq!(juliet_view.subscription, Subscription::Both);
        assert_eq!(
            inbound(&mut romeo_view, "subscribed", &p("subscribed")),
            (true, true)
        );
        assert_eq!(romeo_view.subscription, Subscription::Both);
        // Juliet withdraws her subscription to Romeo.
        assert!(outbound(&mut juliet_view, "unsubscribe"));
        assert_eq!(juliet_view.subscription, Subscription::From);
        assert_eq!(
            inbound(&mut romeo_view, "unsubscribe", &p("unsubscribe")),
            (true, true)
        );
        assert_eq!(romeo_view.subscription, Subscription::To);
    }

    #[test]
    fn unsolicited_answers_change_nothing() {
        let mut item = RosterItem::new();
        assert_eq!(
            inbound(&mut item, "subscribed", &p("subscribed")),
            (false, false)
        );
        assert_eq!(
            inbound(&mut item, "unsubscribed", &p("unsubscribed")),
            (false, false)
        );
        item.subscription = Subscription::From;
        assert_eq!(
            inbound(&mut item, "subscribe", &p("subscribe")),
            (false, false)
        );
    }

    #[test]
    fn roster_set_parsing() {
        let user: BareJid = "juliet@example.com".parse().unwrap();
        let q: Element = "<query xmlns='jabber:iq:roster'><item jid='romeo@example.org/x' name='Romeo'><group>Friends</group><group>Friends</group></item></query>".parse().unwrap();
        assert_eq!(
            parse_set(&q, &user),
            Ok(RosterSet::Update {
                contact: "romeo@example.org".parse().unwrap(),
                name: Some("Romeo".into()),
                groups: vec!["Friends".into()]
            })
        );
        let rm: Element = "<query xmlns='jabber:iq:roster'><item jid='romeo@example.org' subscription='remove'/></query>".parse().unwrap();
        assert!(matches!(
            parse_set(&rm, &user),
            Ok(RosterSet::Remove { .. })
        ));
        let two: Element =
            "<query xmlns='jabber:iq:roster'><item jid='a@b'/><item jid='c@d'/></query>"
                .parse()
                .unwrap();
        assert_eq!(parse_set(&two, &user), Err("bad-request"));
        let me: Element =
            "<query xmlns='jabber:iq:roster'><item jid='juliet@example.com'/></query>"
                .parse()
                .unwrap();
        assert_eq!(parse_set(&me, &user), Err("not-allowed"));
    }

    #[test]
    fn item_shape() {
        let mut item = RosterItem::new();
        item.name = Some("R".into());
        item.ask = true;
        item.groups = vec!["g".into()];
        let el = item_element("romeo@example.org", Some(&item));
        assert_eq!(el.attr("subscription"), Some("none"));
        assert_eq!(el.attr("ask"), Some("subscribe"));
        assert!(el.has_child("group", ROSTER_NS));
        assert_eq!(
            item_element("x@y", None).attr("subscription"),
            Some("remove")
        );
    }
}
