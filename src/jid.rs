//! JIDs read from peers, the store and files, accepted only in a form that reads back
//! as itself.
//!
//! The jid crate prepares each part with stringprep's tables, which stop at Unicode 3.2,
//! but normalises with NFKC of today's Unicode. A code point unassigned in 3.2 can so
//! normalise into a character that the next parse maps again: U+1D40 (MODIFIER LETTER
//! CAPITAL T) becomes `T`, which a second parse lowercases to `t`. Such a JID would be
//! routed, stored and compared under one form and read back under another (a roster
//! contact, an archive peer or an app server that no longer matches after a restart).
//! Wherever a JID enters, it is refused as malformed instead (found by fuzzing).

use std::fmt::Display;
use std::str::FromStr;

/// `text` as a JID of kind `J` (`Jid`, `BareJid`, `FullJid`) when it parses and its
/// printed form parses to the same JID; `None` otherwise.
///
/// This runs on every stanza's addresses, so the second parse is spent only where it
/// can differ: on ASCII, stringprep's only mapping is lowercasing (node and domain),
/// which a second parse leaves as it is.
pub fn parse<J: FromStr + Display + PartialEq>(text: &str) -> Option<J> {
    if text.is_ascii() {
        return text.parse::<J>().ok();
    }
    read_back::<J>(text)
}

fn read_back<J: FromStr + Display + PartialEq>(text: &str) -> Option<J> {
    let jid = text.parse::<J>().ok()?;
    let again = jid.to_string().parse::<J>().ok()?;
    (again == jid).then_some(jid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::jid::{BareJid, FullJid, Jid};

    #[test]
    fn a_jid_is_kept_normalised() {
        let j: Jid = parse("Juliet@Example.COM/Phone").unwrap();
        assert_eq!(j.to_string(), "juliet@example.com/Phone");
        let b: BareJid = parse("push.example.net").unwrap();
        assert_eq!(b.to_string(), "push.example.net");
        for kept in ["münchen.de", "user@[::1]", "éloïse@例え.jp/Téléphone ☎"] {
            let j: Jid = parse(kept).unwrap_or_else(|| panic!("{kept} refused"));
            assert_eq!(j.to_string().parse::<Jid>().unwrap(), j);
        }
        assert!(parse::<FullJid>("juliet@example.com").is_none());
        assert!(parse::<Jid>("@example.com").is_none());
    }

    /// The ASCII shortcut gives what the full check gives, for every printable ASCII
    /// character in each part.
    #[test]
    fn ascii_needs_no_second_parse() {
        for c in (0x20u8..0x7f).map(char::from) {
            for text in [
                format!("a{c}b@example.com/r"),
                format!("ab@exa{c}mple.com/r"),
                format!("ab@example.com/r{c}s"),
                format!("A{c}B@EXAMPLE.com/R{c}"),
            ] {
                assert_eq!(parse::<Jid>(&text), read_back::<Jid>(&text), "{text:?}");
            }
        }
    }

    /// The input the `stanza` fuzz target found: `ᵀ` prints as `T`, which reads back
    /// as `t`.
    #[test]
    fn a_jid_that_reads_back_otherwise_is_refused() {
        let text = "example.c\u{1D40}om";
        let once: Jid = text.parse().unwrap();
        assert_ne!(once.to_string().parse::<Jid>().unwrap(), once);
        assert!(parse::<Jid>(text).is_none());
        assert!(parse::<BareJid>(&format!("romeo@{text}")).is_none());
        assert!(parse::<Jid>("r\u{1D40}meo@example.com").is_none());
    }
}
