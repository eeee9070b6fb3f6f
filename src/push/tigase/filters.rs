//! Whether a registration's filters let a stanza publish: `tigase:push:filter:muted:0`
//! (never from these JIDs), `tigase:push:filter:groupchat:0` (groupchat messages only
//! from listed rooms, some only when they mention the user's nickname) and
//! `tigase:push:filter:ignore-unknown:0` (never from a sender who is not a contact).

use super::notice::{Kind, Notice};
use crate::store::PushExtensions;

/// Whether `notice` may publish to a registration with `ext`. `contact` says whether its
/// sender is one of the user's contacts (the caller knows the roster; the user's own
/// JID counts as one), `None` when that is not known: then ignore-unknown lets it
/// through, as a notification too many is better than a wake-up missed.
pub fn allows(ext: &PushExtensions, notice: &Notice, contact: Option<bool>) -> bool {
    let from = notice.from_bare.as_deref();
    if from.is_some_and(|f| ext.muted.binary_search_by(|m| m.as_str().cmp(f)).is_ok()) {
        return false;
    }
    if ext.ignore_unknown && contact == Some(false) {
        return false;
    }
    let Some(rooms) = &ext.groupchat else {
        return true;
    };
    if notice.kind != Some(Kind::Groupchat) {
        return true;
    }
    let Some(rule) = from.and_then(|f| {
        rooms
            .binary_search_by(|r| r.room.as_str().cmp(f))
            .ok()
            .map(|i| &rooms[i])
    }) else {
        return false;
    };
    match &rule.mention {
        None => true,
        Some(nick) => notice
            .groupchat_text
            .as_deref()
            .is_some_and(|text| mentions(text, nick)),
    }
}

/// Whether `text` names `nick`: as a whole word, ignoring case, as clients highlight a
/// mention ("juliet:" and "@Juliet" do; "Julietta" does not).
pub fn mentions(text: &str, nick: &str) -> bool {
    let text = text.to_lowercase();
    let nick = nick.to_lowercase();
    if nick.is_empty() {
        return false;
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut from = 0;
    while let Some(at) = text[from..].find(&nick) {
        let start = from + at;
        let end = start + nick.len();
        if !word(text[..start].chars().next_back()) && !word(text[end..].chars().next()) {
            return true;
        }
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RoomRule;

    fn groupchat(room: &str, text: &str) -> Notice {
        Notice {
            kind: Some(Kind::Groupchat),
            from_bare: Some(room.into()),
            groupchat_text: Some(text.into()),
            ..Notice::default()
        }
    }

    fn chat(from: &str) -> Notice {
        Notice {
            kind: Some(Kind::Chat),
            from_bare: Some(from.into()),
            ..Notice::default()
        }
    }

    fn without_roster(ext: &PushExtensions, notice: &Notice) -> bool {
        allows(ext, notice, None)
    }

    #[test]
    fn unknown_senders_with_ignore_unknown() {
        let ext = PushExtensions {
            ignore_unknown: true,
            ..PushExtensions::default()
        };
        assert!(!allows(&ext, &chat("stranger@x"), Some(false)));
        assert!(allows(&ext, &chat("romeo@x"), Some(true)));
        assert!(allows(&ext, &chat("romeo@x"), None), "unknown: let through");
        // Without the extension the roster does not matter.
        assert!(allows(
            &PushExtensions::default(),
            &chat("stranger@x"),
            Some(false)
        ));
        // Muted wins over being a contact.
        let both = PushExtensions {
            muted: vec!["romeo@x".into()],
            ..ext
        };
        assert!(!allows(&both, &chat("romeo@x"), Some(true)));
    }

    #[test]
    fn muted_senders() {
        let ext = PushExtensions {
            muted: vec!["a@x".into(), "bot@x".into()],
            ..PushExtensions::default()
        };
        assert!(!without_roster(&ext, &chat("bot@x")));
        assert!(without_roster(&ext, &chat("romeo@x")));
        assert!(!without_roster(&ext, &groupchat("a@x", "hi")));
    }

    #[test]
    fn without_rules_every_room_publishes() {
        assert!(without_roster(
            &PushExtensions::default(),
            &groupchat("r@c", "hi")
        ));
    }

    #[test]
    fn rooms_always_mentioned_and_unlisted() {
        let ext = PushExtensions {
            groupchat: Some(vec![
                RoomRule {
                    room: "coven@c".into(),
                    mention: None,
                },
                RoomRule {
                    room: "forres@c".into(),
                    mention: Some("Juliet".into()),
                },
            ]),
            ..PushExtensions::default()
        };
        assert!(without_roster(&ext, &groupchat("coven@c", "anything")));
        assert!(without_roster(
            &ext,
            &groupchat("forres@c", "@juliet, come")
        ));
        assert!(!without_roster(
            &ext,
            &groupchat("forres@c", "julietta is here")
        ));
        assert!(!without_roster(&ext, &groupchat("heath@c", "juliet")));
        // The rules are for rooms: a chat message is not filtered by them.
        assert!(without_roster(&ext, &chat("romeo@x")));
        // An encrypted groupchat message has no text to mention anyone in.
        let mut omemo = groupchat("forres@c", "");
        omemo.groupchat_text = None;
        assert!(!without_roster(&ext, &omemo));
    }

    #[test]
    fn mention_is_a_whole_word_ignoring_case() {
        assert!(mentions("Juliet: hi", "juliet"));
        assert!(mentions("hi JULIET", "Juliet"));
        assert!(mentions("julietta and juliet", "juliet"));
        assert!(!mentions("julietta", "juliet"));
        assert!(!mentions("romeojuliet", "juliet"));
        assert!(mentions("ça va, Éloïse ?", "éloïse"));
        assert!(!mentions("anything", ""));
    }
}
