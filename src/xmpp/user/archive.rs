//! A message for this user goes into their archive (XEP-0313) as it arrives, named with
//! its stanza-id (XEP-0359) in every copy delivered.
//!
//! The push module hears of it (the archive path, §8.7) only while the user has an
//! online session, where the message is delivered live and has no other stored copy:
//! then the archive copy is written durably first (sharing the group commit), because a
//! phone woken by a push catches up from the archive, and a wake-up is never for a
//! message a crash could still lose. Without an online session the message goes to a
//! hibernated session's queue or to offline storage, whose own durable commits wake the
//! phones; its archive copy then rides the next durable commit, at no fsync of its own.

use actix::prelude::*;
use xmpp_parsers::minidom::Element;

use super::super::mam::{archiving, clock};
use super::record::Link;
use super::state::User;
use crate::push::machine::Event;
use crate::store::Archive;

impl User {
    /// Archives `stanza` when it is archived at all; gives back what is delivered.
    pub(super) fn archive_incoming(&mut self, stanza: Element, ctx: &mut Context<Self>) -> Element {
        if !archiving::archivable(&stanza) {
            return stanza;
        }
        let id = clock::next_id();
        let stamped = archiving::with_stanza_id(&stanza, &self.bare, id);
        let peer = stamped.attr("from").unwrap_or_default().to_string();
        let change = archiving::change(
            &self.name,
            &peer,
            false,
            &stamped,
            id,
            self.shared.cfg.archive_max_messages_per_user,
        );
        let online = self
            .sessions
            .iter()
            .any(|e| e.available() && matches!(e.link, Link::Connected(_)));
        if !online {
            archiving::save(&self.shared.store, &self.name, change);
            return stamped;
        }
        let fut = self.shared.store.send(Archive {
            change,
            durable: true,
        });
        let event = stamped.clone();
        // Read now, when the message is delivered: the presence it met decides.
        let all_away = self.all_online_away();
        self.in_flight += 1;
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.in_flight -= 1;
            match res {
                Ok(Ok(())) => act.push_event(
                    Event::Archived {
                        stanza: event,
                        user_has_sessions: true,
                        all_away,
                    },
                    ctx,
                ),
                Ok(Err(e)) => {
                    tracing::warn!(user = %act.name, error = %e, "message not archived: no archive push")
                }
                Err(_) => tracing::warn!(user = %act.name, "message not archived: the store is gone"),
            }
            act.after_store_request(ctx);
        }));
        stamped
    }
}

/// A message one of the user's sessions sent went into the archive (outgoing): the push
/// module hears of it, as its own outgoing messages never wake the user's phones (D15)
/// but a call answered here stops the other devices ringing (D17).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SentArchived {
    pub stanza: Element,
}

impl Handler<SentArchived> for User {
    type Result = ();

    fn handle(&mut self, msg: SentArchived, ctx: &mut Context<Self>) {
        self.push_event(
            Event::Archived {
                stanza: msg.stanza,
                user_has_sessions: true,
                // The user's own outgoing message never wakes their own phones (D15);
                // only a call signal goes out, and to every registration anyway.
                all_away: false,
            },
            ctx,
        );
    }
}
