//! A message for this user goes into their archive (XEP-0313) as it arrives, named with
//! its stanza-id (XEP-0359) in every copy delivered; the push module hears of it, so a
//! phone without a session is woken even while another device of the user is online.

use xmpp_parsers::minidom::Element;

use super::super::mam::{archiving, clock};
use super::state::User;
use crate::push::MessageArchived;

impl User {
    /// Archives `stanza` when it is archived at all; gives back what is delivered.
    pub(super) fn archive_incoming(&self, stanza: Element) -> Element {
        if !archiving::archivable(&stanza) {
            return stanza;
        }
        let id = clock::next_id();
        let stamped = archiving::with_stanza_id(&stanza, &self.bare, id);
        let peer = stamped.attr("from").unwrap_or_default().to_string();
        archiving::save(
            &self.shared.store,
            &self.name,
            &peer,
            false,
            &stamped,
            id,
            self.shared.cfg.archive_max_messages_per_user,
        );
        self.shared.hub.do_send(MessageArchived {
            user: self.name.clone(),
            stanza: stamped.clone(),
            user_has_sessions: !self.sessions.is_empty(),
        });
        stamped
    }
}
