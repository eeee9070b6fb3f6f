//! Roster get and set from the user's own session (RFC 6121 §2).

use xmpp_parsers::minidom::Element;

use super::bound::Bound;
use super::presence::load_roster;
use super::roster::{self, RosterSet};
use super::stanza::{self, CLIENT_NS};
use super::user::SaveRosterItem;
use crate::store::RosterItem;

/// The answer to a roster get or set (`None` for any other type: no answer).
pub(super) async fn answer(iq: &Element, st: &Bound) -> Option<Element> {
    let query = iq.get_child("query", roster::ROSTER_NS)?;
    match iq.attr("type") {
        Some("get") => Some(get(iq, st).await),
        Some("set") => match roster::parse_set(query, &st.bare) {
            Ok(set) => Some(set_item(iq, set, st).await),
            Err(condition) => stanza::error_reply(iq, "modify", condition),
        },
        _ => None,
    }
}

async fn get(iq: &Element, st: &Bound) -> Element {
    let roster = load_roster(&st.user, &st.shared.store).await;
    let mut q = Element::builder("query", roster::ROSTER_NS).build();
    for (contact, item) in roster.iter().filter(|(_, i)| i.listed) {
        q.append_child(roster::item_element(contact, Some(item)));
    }
    stanza::iq_result(iq, Some(q))
}

/// An update or a removal: stored (and pushed to every session) before the result.
async fn set_item(iq: &Element, set: RosterSet, st: &Bound) -> Element {
    let roster = load_roster(&st.user, &st.shared.store).await;
    let change = match set {
        RosterSet::Update {
            contact,
            name,
            groups,
        } => {
            let contact = contact.to_string();
            let existing = find(&roster, &contact);
            if existing.is_none() && roster.len() >= st.shared.cfg.roster_max_items {
                return error(iq, "wait", "resource-constraint");
            }
            let mut item = existing.unwrap_or_default();
            item.name = name;
            item.groups = groups;
            item.listed = true;
            (contact, Some(item))
        }
        RosterSet::Remove { contact } => {
            let contact = contact.to_string();
            let Some(item) = find(&roster, &contact) else {
                return error(iq, "cancel", "item-not-found");
            };
            unsubscribe_both_ways(&contact, &item, st);
            (contact, None)
        }
    };
    let (contact, item) = change;
    let saved = st
        .owner
        .send(SaveRosterItem { contact, item })
        .await
        .unwrap_or(false);
    if saved {
        stanza::iq_result(iq, None)
    } else {
        error(iq, "wait", "internal-server-error")
    }
}

fn find(roster: &[(String, RosterItem)], contact: &str) -> Option<RosterItem> {
    roster
        .iter()
        .find(|(c, _)| c == contact)
        .map(|(_, i)| i.clone())
}

/// Removing a contact ends the subscriptions both ways (§2.5.2).
fn unsubscribe_both_ways(contact: &str, item: &RosterItem, st: &Bound) {
    for (kind, wanted) in [
        ("unsubscribe", item.subscription.to() || item.ask),
        ("unsubscribed", item.subscription.from()),
    ] {
        if wanted {
            let mut p = Element::builder("presence", CLIENT_NS).build();
            stanza::set_attr(&mut p, "type", kind);
            stanza::set_attr(&mut p, "from", &st.bare.to_string());
            stanza::set_attr(&mut p, "to", contact);
            st.route(p);
        }
    }
}

/// An error reply to a set (which is never itself an error, so there always is one).
fn error(iq: &Element, kind: &str, condition: &str) -> Element {
    stanza::error_reply(iq, kind, condition).unwrap_or_else(|| stanza::iq_result(iq, None))
}
