//! Roster get and set from the user's own session (RFC 6121 §2).

use xmpp_parsers::minidom::Element;

use super::bound::Bound;
use super::presence::load_roster;
use super::roster::{self, RosterSet};
use super::stanza::{self, CLIENT_NS};
use super::user::{Edit, EditRoster, Edited};
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

/// An update or a removal: stored (and pushed to every session) before the result, by
/// the user's actor, the one path for roster changes.
async fn set_item(iq: &Element, set: RosterSet, st: &Bound) -> Element {
    let (contact, edit) = match set {
        RosterSet::Update {
            contact,
            name,
            groups,
        } => (contact.to_string(), Edit::Set { name, groups }),
        RosterSet::Remove { contact } => (contact.to_string(), Edit::Remove),
    };
    let removing = edit == Edit::Remove;
    let edited = st
        .owner
        .send(EditRoster {
            contact: contact.clone(),
            edit,
        })
        .await
        .unwrap_or(Edited::Unreadable);
    match edited {
        Edited::Saved {
            before,
            stored: true,
        } => {
            if removing && let Some(before) = before {
                unsubscribe_both_ways(&contact, &before, st);
            }
            stanza::iq_result(iq, None)
        }
        Edited::Unchanged => stanza::iq_result(iq, None),
        Edited::Full => error(iq, "wait", "resource-constraint"),
        Edited::NotFound => error(iq, "cancel", "item-not-found"),
        Edited::Saved { stored: false, .. } | Edited::Unreadable => {
            error(iq, "wait", "internal-server-error")
        }
    }
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
