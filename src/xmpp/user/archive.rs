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

use xmpp_parsers::minidom::Element;

use super::super::mam::{archiving, clock};
use super::record::Link;
use super::state::User;
use crate::push::MessageArchived;
use crate::store::Archive;

impl User {
    /// Archives `stanza` when it is archived at all; gives back what is delivered.
    pub(super) fn archive_incoming(&self, stanza: Element) -> Element {
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
        let (hub, user, event) = (self.shared.hub.clone(), self.name.clone(), stamped.clone());
        actix::spawn(async move {
            match fut.await {
                Ok(Ok(())) => hub.do_send(MessageArchived {
                    user,
                    stanza: event,
                    user_has_sessions: true,
                }),
                Ok(Err(e)) => {
                    tracing::warn!(%user, error = %e, "message not archived: no archive push")
                }
                Err(_) => tracing::warn!(%user, "message not archived: the store is gone"),
            }
        });
        stamped
    }
}
