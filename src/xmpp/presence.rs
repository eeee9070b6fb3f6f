//! A user's own presence (RFC 6121 §4): broadcast to the user's resources and to the
//! contacts allowed to see it, probes on the initial presence; and the user's
//! subscription requests and answers (§3).

use actix::{Addr, Recipient};
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

use super::bound::Bound;
use super::route::Route;
use super::stanza::{self, CLIENT_NS};
use super::user::{Edit, EditRoster, Edited, PresencesTo};
use crate::store::{LoadRoster, RosterItem, Store};

/// The user's roster, or nothing (logged) when it cannot be read.
pub async fn load_roster(user: &str, store: &Addr<Store>) -> Vec<(String, RosterItem)> {
    match store
        .send(LoadRoster {
            user: user.to_string(),
        })
        .await
    {
        Ok(Ok(r)) => r,
        _ => {
            tracing::error!("cannot read the roster");
            Vec::new()
        }
    }
}

/// Where the user's presence goes (RFC 6121 §4): to the user's own resources and to
/// every contact allowed to see it; an initial presence also probes the contacts the
/// user sees, and brings back the subscription requests that wait for the user's answer.
pub struct Broadcast {
    /// Presences and probes to route.
    pub out: Vec<Element>,
    /// Subscription requests for the user's session.
    pub pending: Vec<Element>,
}

pub fn plan(
    presence: &Element,
    initial: bool,
    bare: &str,
    roster: &[(String, RosterItem)],
) -> Broadcast {
    let mut own = presence.clone();
    stanza::set_attr(&mut own, "to", bare);
    let mut b = Broadcast {
        out: vec![own],
        pending: Vec::new(),
    };
    for (contact, item) in roster {
        if item.subscription.from() {
            let mut copy = presence.clone();
            stanza::set_attr(&mut copy, "to", contact);
            b.out.push(copy);
        }
        if initial && item.subscription.to() {
            let mut probe = Element::builder("presence", CLIENT_NS).build();
            stanza::set_attr(&mut probe, "type", "probe");
            stanza::set_attr(&mut probe, "from", bare);
            stanza::set_attr(&mut probe, "to", contact);
            b.out.push(probe);
        }
        if initial
            && let Some(request) = item
                .pending_in
                .as_deref()
                .and_then(|x| x.parse::<Element>().ok())
        {
            b.pending.push(request);
        }
    }
    b
}

/// A session's unavailable presence at its end, to whoever saw it available.
pub async fn unavailable(
    presence: &Element,
    user: &str,
    bare: &str,
    store: &Addr<Store>,
    route: &Recipient<Route>,
) {
    let roster = load_roster(user, store).await;
    for el in plan(presence, false, bare, &roster).out {
        route.do_send(Route(el));
    }
}

/// A subscription request or answer from the user (RFC 6121 §3): the user's roster item
/// changes and is pushed, then the presence goes out from the bare JID.
pub(super) async fn subscribe_out(mut el: Element, contact: BareJid, st: &Bound) {
    let kind = el.attr("type").unwrap_or_default().to_string();
    let contact = contact.to_string();
    let edited = st
        .owner
        .send(EditRoster {
            contact: contact.clone(),
            edit: Edit::Send(kind.clone()),
        })
        .await
        .unwrap_or(Edited::Unreadable);
    let changed = match edited {
        Edited::Full => {
            tracing::info!("roster_max_items reached: subscription request not sent");
            return;
        }
        Edited::Unreadable => {
            tracing::error!("roster unreadable: subscription presence not sent");
            return;
        }
        Edited::Saved { .. } => true,
        Edited::Unchanged | Edited::NotFound => false,
    };
    stanza::set_attr(&mut el, "from", &st.bare.to_string());
    stanza::set_attr(&mut el, "to", &contact);
    st.route(el);
    // The user approved: the user's current presence follows the approval (RFC 6121
    // §3.1.5). A local contact's actor probes for it on the approval, but a remote
    // server (Prosody) waits for it unasked.
    let local = crate::jid::parse::<BareJid>(&contact)
        .is_some_and(|c| c.domain().as_str() == st.shared.cfg.domain);
    if changed && kind == "subscribed" && !local {
        st.owner.do_send(PresencesTo { to: contact });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Subscription;

    fn item(subscription: Subscription, pending_in: Option<&str>) -> RosterItem {
        RosterItem {
            subscription,
            pending_in: pending_in.map(str::to_string),
            ..RosterItem::default()
        }
    }

    #[test]
    fn initial_presence_goes_to_who_may_see_it_and_probes_who_the_user_sees() {
        let p: Element = "<presence xmlns='jabber:client' from='j@l/p'/>"
            .parse()
            .unwrap();
        let roster = vec![
            ("from@l".to_string(), item(Subscription::From, None)),
            ("to@l".to_string(), item(Subscription::To, None)),
            (
                "asks@l".to_string(),
                item(
                    Subscription::None,
                    Some(
                        "<presence xmlns='jabber:client' type='subscribe' from='asks@l' to='j@l'/>",
                    ),
                ),
            ),
        ];
        let b = plan(&p, true, "j@l", &roster);
        let out: Vec<(String, Option<String>)> = b
            .out
            .iter()
            .map(|e| {
                (
                    e.attr("to").unwrap_or("").to_string(),
                    e.attr("type").map(str::to_string),
                )
            })
            .collect();
        assert_eq!(
            out,
            [
                ("j@l".to_string(), None),
                ("from@l".to_string(), None),
                ("to@l".to_string(), Some("probe".to_string())),
            ]
        );
        assert_eq!(b.pending.len(), 1);
        // Not initial: no probes, no pending requests.
        let b = plan(&p, false, "j@l", &roster);
        assert_eq!(b.out.len(), 2);
        assert!(b.pending.is_empty());
    }
}
