//! The user's contacts, for registrations that filter unknown senders
//! (`tigase:push:filter:ignore-unknown:0`). The push machine decides without I/O, so
//! this actor reads the roster for it, once, when a registration first needs it (at
//! load, or when one is enabled), and then tells it every roster change, which all pass
//! through this actor ([`EditRoster`](super::EditRoster)). So it costs a user
//! nothing unless one of their devices asked for the filter, and then at most
//! `roster_max_items` bare JIDs in memory, against a roster read for every message.

use actix::prelude::*;

use super::state::User;
use crate::push::machine::Event;
use crate::store::{LoadRoster, RosterItem, Subscription};

/// Whether a roster item makes its JID a contact: the user put it on the roster, or a
/// subscription joins them. An item that only holds someone's pending request does
/// not: a stranger asking to subscribe is still unknown.
pub fn is_contact(item: &RosterItem) -> bool {
    item.listed || item.subscription != Subscription::None
}

impl User {
    /// Reads the roster into the push machine when it asks for it. Every other message
    /// waits until then, so no stanza is decided before the contacts are known.
    pub(super) fn read_contacts_if_wanted(&mut self, ctx: &mut Context<Self>) {
        if !self.push.machine().wants_contacts() {
            return;
        }
        let load = self.shared.store.send(LoadRoster {
            user: self.name.clone(),
        });
        ctx.wait(load.into_actor(self).map(|res, act, ctx| match res {
            Ok(Ok(rows)) => {
                let jids = rows
                    .into_iter()
                    .filter(|(_, item)| is_contact(item))
                    .map(|(jid, _)| jid)
                    .collect();
                act.push_event(Event::Contacts(jids), ctx);
            }
            _ => {
                tracing::error!(user = %act.name, "cannot read the roster: ignore-unknown lets every sender through until it is read");
            }
        }));
    }

    /// Reads the roster once the push machine has its registrations. Called from
    /// `started` *before* the registrations' load is started: actix runs the futures it
    /// waits for last-in first, so the load completes first and this then sees the
    /// registrations (a wire test restarts the server to check it).
    pub(super) fn read_contacts_after_load(&mut self, ctx: &mut Context<Self>) {
        ctx.wait(fut::ready(()).map(|_, act: &mut User, ctx| act.read_contacts_if_wanted(ctx)));
    }

    /// A roster item was stored (`None`: removed); the machine hears of it when it
    /// holds the contacts.
    pub(super) fn contact_changed(
        &mut self,
        jid: &str,
        item: Option<&RosterItem>,
        ctx: &mut Context<Self>,
    ) {
        if self.push.machine().knows_contacts() {
            let contact = item.is_some_and(is_contact);
            self.push_event(
                Event::Contact {
                    jid: jid.to_string(),
                    contact,
                },
                ctx,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_request_alone_is_not_a_contact() {
        let pending = RosterItem {
            pending_in: Some("<presence/>".into()),
            ..RosterItem::new()
        };
        assert!(!is_contact(&pending));
        let listed = RosterItem {
            listed: true,
            ..RosterItem::new()
        };
        assert!(is_contact(&listed));
        let from = RosterItem {
            subscription: Subscription::From,
            ..RosterItem::new()
        };
        assert!(is_contact(&from));
    }
}
