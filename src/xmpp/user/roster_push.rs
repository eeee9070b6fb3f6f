//! Roster changes of the user: stored, then pushed to every session (RFC 6121 §2.1.6).

use actix::prelude::*;
use xmpp_parsers::minidom::Element;

use super::super::roster;
use super::super::stanza;
use super::record::Entry;
use super::state::User;
use crate::store::{Change, RosterItem, Write};

/// A roster item changed (by one of the user's sessions, or by a contact's
/// subscription presence): store it and push it to all the user's sessions. Answered
/// once stored (the session then answers its client's roster set).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct SaveRosterItem {
    pub contact: String,
    /// `None` removes the item.
    pub item: Option<RosterItem>,
}

impl Handler<SaveRosterItem> for User {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: SaveRosterItem, _: &mut Context<Self>) -> Self::Result {
        let push = roster::item_element(&msg.contact, msg.item.as_ref());
        let changed = (msg.contact.clone(), msg.item.clone());
        let user = self.name.clone();
        let change = match msg.item {
            Some(item) => Change::PutRosterItem {
                user,
                contact: msg.contact,
                item,
            },
            None => Change::DeleteRosterItem {
                user,
                contact: msg.contact,
            },
        };
        // Told as it is sent, in order with the archive writes that follow it.
        self.archive_filter
            .roster_changed(&changed.0, changed.1.is_some());
        let write = self.shared.store.send(Write {
            changes: vec![change],
            durable: true,
        });
        self.in_flight += 1;
        Box::pin(write.into_actor(self).map(move |res, act, ctx| {
            act.in_flight -= 1;
            let ok = matches!(res, Ok(Ok(())));
            if ok {
                act.roster_push(push, ctx);
                act.contact_changed(&changed.0, changed.1.as_ref(), ctx);
            } else {
                tracing::error!(user = %act.name, "roster change not stored");
            }
            act.after_store_request(ctx);
            ok
        }))
    }
}

impl User {
    fn roster_push(&mut self, item: Element, ctx: &mut Context<Self>) {
        let ids = self.session_ids(Entry::live);
        for id in ids {
            let mut iq = Element::builder("iq", stanza::CLIENT_NS)
                .append(
                    Element::builder("query", roster::ROSTER_NS)
                        .append(item.clone())
                        .build(),
                )
                .build();
            stanza::set_attr(&mut iq, "type", "set");
            stanza::set_attr(&mut iq, "id", &format!("push-{}", stanza::random_id()));
            // A session that cannot take it reads the roster again when it next asks.
            let _ = self.write(id, iq, ctx);
        }
    }
}
