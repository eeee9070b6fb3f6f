//! Whether the user is away on every online session, for `tigase:push:away:0`: a device
//! that enabled it is pushed on the archive path while every online client shows `away`
//! or `xa`, since nobody may be looking at the message delivered to them.

use xmpp_parsers::minidom::Element;

use super::record::Link;
use super::state::User;

/// Whether a stored available presence shows `away` or `xa` (RFC 6121 §4.7.2.1). A
/// presence that cannot be read counts as not away: then no extra push is sent, which
/// is the behaviour without the extension.
pub fn shows_away(presence: &str) -> bool {
    let Ok(p) = presence.parse::<Element>() else {
        return false;
    };
    p.children()
        .find(|c| c.name() == "show")
        .is_some_and(|s| matches!(s.text().trim(), "away" | "xa"))
}

impl User {
    /// The user has an online session and each of them is away or xa.
    pub(super) fn all_online_away(&self) -> bool {
        let mut online = self
            .sessions
            .iter()
            .filter(|e| e.available() && matches!(e.link, Link::Connected(_)))
            .peekable();
        online.peek().is_some() && online.all(|e| e.presence.as_deref().is_some_and(shows_away))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn away_and_xa_are_away() {
        assert!(shows_away(
            "<presence xmlns='jabber:client'><show>away</show></presence>"
        ));
        assert!(shows_away(
            "<presence xmlns='jabber:client'><show>xa</show><status>zzz</status></presence>"
        ));
    }

    #[test]
    fn available_chat_dnd_and_garbage_are_not() {
        for p in [
            "<presence xmlns='jabber:client'/>",
            "<presence xmlns='jabber:client'><show>chat</show></presence>",
            "<presence xmlns='jabber:client'><show>dnd</show></presence>",
            "<presence xmlns='jabber:client'><status>away</status></presence>",
            "not xml",
        ] {
            assert!(!shows_away(p), "{p}");
        }
    }
}
