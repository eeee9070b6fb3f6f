//! The one path for every change to the user's roster: the user's roster sets and
//! subscription presence either way (RFC 6121 §2–3). Each change reads the roster,
//! decides and queues its write at the store before this actor reads its next message,
//! so the next change reads the roster with it. (Read in the session instead, the
//! user's approval was written over the contact's approval that arrived meanwhile.)

use actix::prelude::*;
use tokio::sync::oneshot;

use super::super::roster;
use super::state::User;
use crate::store::{LoadRoster, RosterItem};

/// A change the user's session asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// The user sends subscription presence of this type (`subscribe`, `subscribed`,
    /// `unsubscribe`, `unsubscribed`).
    Send(String),
    /// A roster set: the item's name and groups.
    Set {
        name: Option<String>,
        groups: Vec<String>,
    },
    /// A roster set removing the item.
    Remove,
}

/// What became of an [`Edit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edited {
    /// Nothing to change.
    Unchanged,
    /// Stored (`stored`: the store said so) and pushed; `before` is the item it replaced.
    Saved {
        before: Option<RosterItem>,
        stored: bool,
    },
    /// A new item past `roster_max_items`.
    Full,
    /// A removal of an item that is not there.
    NotFound,
    /// The roster could not be read: nothing changed.
    Unreadable,
}

/// What to do with the roster for one change; pure, so the rules are unit tested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Keep,
    Full,
    NotFound,
    Put(RosterItem),
    Delete,
}

/// The decision for `edit` of `contact`'s item in `roster`, with room for `max` items.
pub fn decide(roster: &[(String, RosterItem)], contact: &str, edit: &Edit, max: usize) -> Decision {
    let existing = roster
        .iter()
        .find(|(c, _)| c == contact)
        .map(|(_, i)| i.clone());
    let is_new = existing.is_none();
    let full = is_new && roster.len() >= max;
    match edit {
        Edit::Remove if is_new => Decision::NotFound,
        Edit::Remove => Decision::Delete,
        _ if full => Decision::Full,
        Edit::Set { name, groups } => {
            let mut item = existing.unwrap_or_default();
            item.name = name.clone();
            item.groups = groups.clone();
            item.listed = true;
            Decision::Put(item)
        }
        Edit::Send(kind) => {
            let mut item = existing.unwrap_or_default();
            match roster::outbound(&mut item, kind) {
                true => Decision::Put(item),
                false => Decision::Keep,
            }
        }
    }
}

/// A change to one contact's item, asked for by one of the user's sessions. Answered
/// once stored (the session then answers its client or sends the presence).
#[derive(Message)]
#[rtype(result = "Edited")]
pub struct EditRoster {
    pub contact: String,
    pub edit: Edit,
}

impl Handler<EditRoster> for User {
    type Result = ResponseFuture<Edited>;

    fn handle(&mut self, msg: EditRoster, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let max = self.shared.cfg.roster_max_items;
        self.with_roster(ctx, move |act, roster, ctx| {
            let Some(roster) = roster else {
                let _ = tx.send(Edited::Unreadable);
                return;
            };
            let before = roster
                .iter()
                .find(|(c, _)| *c == msg.contact)
                .map(|(_, i)| i.clone());
            let item = match decide(&roster, &msg.contact, &msg.edit, max) {
                Decision::Keep => {
                    let _ = tx.send(Edited::Unchanged);
                    return;
                }
                Decision::Full => {
                    let _ = tx.send(Edited::Full);
                    return;
                }
                Decision::NotFound => {
                    let _ = tx.send(Edited::NotFound);
                    return;
                }
                Decision::Put(item) => Some(item),
                Decision::Delete => None,
            };
            let write = act.save_roster_item(msg.contact, item);
            ctx.spawn(write.map(move |stored, _, _| {
                let _ = tx.send(Edited::Saved { before, stored });
            }));
        });
        Box::pin(async move { rx.await.unwrap_or(Edited::Unreadable) })
    }
}

impl User {
    /// Reads the roster and hands it to `then` (`None`: unreadable, logged). No other
    /// message is read until `then` has run, so a write it queues at the store is seen
    /// by the next change's read.
    pub(super) fn with_roster<F>(&mut self, ctx: &mut Context<Self>, then: F)
    where
        F: FnOnce(&mut User, Option<Vec<(String, RosterItem)>>, &mut Context<User>) + 'static,
    {
        let load = self.shared.store.send(LoadRoster {
            user: self.name.clone(),
        });
        self.in_flight += 1;
        ctx.wait(load.into_actor(self).map(move |res, act, ctx| {
            act.in_flight -= 1;
            let roster = match res {
                Ok(Ok(r)) => Some(r),
                _ => {
                    tracing::error!(user = %act.name, "cannot read the roster: roster change dropped");
                    None
                }
            };
            then(act, roster, ctx);
            act.after_store_request(ctx);
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Subscription;

    fn roster(items: &[(&str, Subscription)]) -> Vec<(String, RosterItem)> {
        items
            .iter()
            .map(|(c, s)| {
                (
                    c.to_string(),
                    RosterItem {
                        subscription: *s,
                        listed: true,
                        ..RosterItem::default()
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_change_keeps_what_the_item_already_holds() {
        let r = roster(&[("romeo@x", Subscription::From)]);
        let Decision::Put(item) = decide(&r, "romeo@x", &Edit::Send("subscribe".into()), 10) else {
            panic!("subscribe changes the item");
        };
        assert_eq!(item.subscription, Subscription::From);
        assert!(item.ask);
        let set = Edit::Set {
            name: Some("R".into()),
            groups: vec![],
        };
        let Decision::Put(item) = decide(&r, "romeo@x", &set, 10) else {
            panic!("a set stores the item");
        };
        assert_eq!(item.subscription, Subscription::From);
        assert_eq!(item.name.as_deref(), Some("R"));
    }

    #[test]
    fn limits_and_missing_items() {
        let r = roster(&[("romeo@x", Subscription::Both)]);
        let send = Edit::Send("subscribe".into());
        assert_eq!(decide(&r, "tybalt@x", &send, 1), Decision::Full);
        // An item already there is changed at the limit.
        assert_eq!(decide(&r, "romeo@x", &send, 1), Decision::Keep);
        assert_eq!(decide(&r, "tybalt@x", &Edit::Remove, 1), Decision::NotFound);
        assert_eq!(decide(&r, "romeo@x", &Edit::Remove, 1), Decision::Delete);
    }
}
