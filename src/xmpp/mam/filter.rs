//! The user actor's copy of what the store decides at each archive write (the archive
//! preferences, XEP-0441, and for the `roster` default the roster's JIDs), so that a
//! delivered message is stamped with a stanza-id only when the archive will hold it:
//! an id that names nothing in the archive would send a client's MAM catch-up looking
//! for a message that is not there.
//!
//! The store stays the judge of what is written; this copy agrees with it because the
//! user actor sends every change to either (preferences set, roster items) to the
//! store itself, in order with its archive writes, and updates this copy as it sends.

use std::collections::HashSet;

use crate::store::archive::{ArchivePrefs, PrefsDefault, bare};

#[derive(Debug, Default)]
pub struct ArchiveFilter {
    /// `None`: never set, everything is archived.
    prefs: Option<ArchivePrefs>,
    /// Every JID with a roster item, held only while the default is `roster` (at most
    /// `roster_max_items`); `None` then means it could not be read.
    roster: Option<HashSet<String>>,
}

impl ArchiveFilter {
    /// Whether a message with `peer` (any JID) goes into the archive, as the store
    /// decides it. With a `roster` default and no roster read, it says yes: the store
    /// then decides alone, as before this copy existed.
    pub fn archives(&self, peer: &str) -> bool {
        let Some(p) = &self.prefs else {
            return true;
        };
        let peer = bare(peer);
        let in_roster = self.roster.as_ref().is_none_or(|r| r.contains(peer));
        p.archives(peer, in_roster)
    }

    /// New preferences; `true` when the roster must now be read (`roster` default and
    /// no roster held).
    pub fn set_prefs(&mut self, prefs: Option<ArchivePrefs>) -> bool {
        let by_roster = matches!(
            prefs.as_ref().map(|p| &p.default),
            Some(PrefsDefault::Roster)
        );
        self.prefs = prefs;
        if !by_roster {
            self.roster = None;
            return false;
        }
        self.roster.is_none()
    }

    /// The roster's JIDs as read (only kept while the default is `roster`).
    pub fn set_roster(&mut self, jids: impl IntoIterator<Item = String>) {
        if self.wants_roster() {
            self.roster = Some(jids.into_iter().collect());
        }
    }

    /// A roster item was stored (`present`) or removed for `jid`.
    pub fn roster_changed(&mut self, jid: &str, present: bool) {
        if let Some(r) = &mut self.roster {
            if present {
                r.insert(jid.to_string());
            } else {
                r.remove(jid);
            }
        }
    }

    fn wants_roster(&self) -> bool {
        matches!(
            self.prefs.as_ref().map(|p| &p.default),
            Some(PrefsDefault::Roster)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefs(default: PrefsDefault, always: &[&str], never: &[&str]) -> Option<ArchivePrefs> {
        Some(ArchivePrefs {
            default,
            always: always.iter().map(|s| s.to_string()).collect(),
            never: never.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn without_preferences_everything_is_archived() {
        let f = ArchiveFilter::default();
        assert!(f.archives("romeo@x/garden"));
    }

    #[test]
    fn lists_and_defaults_decide_by_bare_jid() {
        let mut f = ArchiveFilter::default();
        assert!(!f.set_prefs(prefs(PrefsDefault::Never, &["romeo@x"], &[])));
        assert!(f.archives("romeo@x/garden"));
        assert!(!f.archives("tybalt@x/street"));
        f.set_prefs(prefs(PrefsDefault::Always, &[], &["tybalt@x"]));
        assert!(f.archives("romeo@x"));
        assert!(!f.archives("tybalt@x/street"));
    }

    #[test]
    fn the_roster_default_follows_the_roster_it_is_told() {
        let mut f = ArchiveFilter::default();
        assert!(f.set_prefs(prefs(PrefsDefault::Roster, &[], &[])));
        // Not read yet: the store decides alone.
        assert!(f.archives("tybalt@x"));
        f.set_roster(["romeo@x".to_string()]);
        assert!(f.archives("romeo@x/garden"));
        assert!(!f.archives("tybalt@x"));
        f.roster_changed("tybalt@x", true);
        f.roster_changed("romeo@x", false);
        assert!(f.archives("tybalt@x"));
        assert!(!f.archives("romeo@x"));
        // Still held: no second read for a new roster default.
        assert!(!f.set_prefs(prefs(PrefsDefault::Roster, &[], &["tybalt@x"])));
        assert!(!f.archives("tybalt@x"));
    }

    #[test]
    fn the_roster_is_dropped_when_the_default_no_longer_needs_it() {
        let mut f = ArchiveFilter::default();
        f.set_prefs(prefs(PrefsDefault::Roster, &[], &[]));
        f.set_roster(["romeo@x".to_string()]);
        f.set_prefs(prefs(PrefsDefault::Always, &[], &[]));
        assert!(f.roster.is_none());
        // A roster told while not wanted is not kept.
        f.set_roster(["romeo@x".to_string()]);
        assert!(f.roster.is_none());
    }
}
