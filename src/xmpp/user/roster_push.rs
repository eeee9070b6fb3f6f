//! Roster changes of the user: stored, then pushed to every session (RFC 6121 §2.1.6).

use actix::prelude::*;
use xmpp_parsers::minidom::Element;

use super::super::roster;
use super::super::stanza;
use super::record::Entry;
use super::state::User;
use crate::store::{Change, RosterItem, Write};

impl User {
    /// A roster item changed (decided in [`roster_edit`](super::roster_edit), the one
    /// path for every change): queued at the store now, pushed to all the user's
    /// sessions once stored. Resolves to whether it was stored.
    pub(super) fn save_roster_item(
        &mut self,
        contact: String,
        item: Option<RosterItem>,
    ) -> impl ActorFuture<Self, Output = bool> + use<> {
        let push = roster::item_element(&contact, item.as_ref());
        let changed = (contact.clone(), item.clone());
        let user = self.name.clone();
        let change = match item {
            Some(item) => Change::PutRosterItem {
                user,
                contact,
                item,
            },
            None => Change::DeleteRosterItem { user, contact },
        };
        // Told as it is sent, in order with the archive writes that follow it.
        self.archive_filter
            .roster_changed(&changed.0, changed.1.is_some());
        let write = self.shared.store.send(Write {
            changes: vec![change],
            durable: true,
        });
        self.in_flight += 1;
        write.into_actor(self).map(move |res, act, ctx| {
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
        })
    }
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
