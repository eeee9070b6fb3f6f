//! A user's registrations: at most `push_max_devices`, evicting the one enabled longest
//! ago (D4). The order is by `enabled_at_us`, which is stored, so it is the same after a
//! restart (Prosody's LRU forgets it, §3.6).

use std::mem::size_of;

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use crate::config::MAX_DEVICES_CAP;
use crate::store::RegistrationRecord;

/// Prosody's registration identifier: `jid<node` (`jid<` without a node).
pub fn identifier(jid: &Jid, node: Option<&str>) -> String {
    format!("{jid}<{}", node.unwrap_or(""))
}

/// One registration: the stored record plus the app server's JID, parsed once.
///
/// The publish-options form stays the stored text and is parsed for each publish: as a
/// minidom tree it cost 4 KB per registration in memory, against a few microseconds per
/// publish to parse (measured with the load benchmark).
#[derive(Debug, Clone)]
pub struct Registration {
    pub identifier: String,
    pub jid: Jid,
    pub record: RegistrationRecord,
}

/// Why a stored record cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("registration {0}: stored jid is not a JID")]
    Jid(String),
    #[error("registration {0}: stored publish-options are not XML")]
    Options(String),
}

impl Registration {
    /// Its bytes in memory, boxed in the set with its strings, for the memory figures
    /// (`users`): at most `push_max_devices` of them per user, so summing them when the
    /// set changes costs little.
    pub fn bytes(&self) -> usize {
        let r = &self.record;
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let extensions = r.extensions.as_deref().map_or(0, |e| {
            size_of::<crate::store::PushExtensions>()
                + e.muted.iter().map(String::len).sum::<usize>()
                + e.groupchat.as_ref().map_or(0, |rooms| {
                    rooms
                        .iter()
                        .map(|room| {
                            size_of::<crate::store::RoomRule>()
                                + room.room.len()
                                + text(&room.mention)
                        })
                        .sum()
                })
        });
        size_of::<Registration>()
            + self.identifier.len()
            + self.jid.as_str().len()
            + r.jid.len()
            + text(&r.node)
            + text(&r.publish_options)
            + r.client.len()
            + text(&r.language)
            + r.last_error.as_ref().map_or(0, |e| {
                size_of::<crate::store::ErrorNote>()
                    + e.error_type.len()
                    + e.condition.len()
                    + text(&e.text)
            })
            + r.last_s2s_failure.as_ref().map_or(0, |f| {
                size_of::<crate::store::S2sFailureNote>() + f.condition.len() + f.reason.len()
            })
            + extensions
    }

    pub fn from_record(
        identifier: String,
        record: RegistrationRecord,
    ) -> Result<Self, RecordError> {
        let jid = record
            .jid
            .parse::<Jid>()
            .map_err(|_| RecordError::Jid(identifier.clone()))?;
        if let Some(xml) = &record.publish_options
            && xml.parse::<Element>().is_err()
        {
            return Err(RecordError::Options(identifier));
        }
        Ok(Registration {
            identifier,
            jid,
            record,
        })
    }

    /// The publish-options form, as the client sent it (validated when loaded).
    pub fn publish_options(&self) -> Option<Element> {
        self.record.publish_options.as_deref()?.parse().ok()
    }

    pub fn node(&self) -> Option<&str> {
        self.record.node.as_deref()
    }
}

/// The registrations of one user. The capacity is the compile-time cap; the configured
/// `push_max_devices` (never above it, checked at start) is the limit that evicts.
/// Entries are boxed so a loaded user costs 8 bytes per slot plus what it really holds,
/// not the full capacity of inline records.
#[derive(Debug, Clone, Default)]
pub struct RegistrationSet {
    items: heapless::Vec<Box<Registration>, MAX_DEVICES_CAP>,
}

impl RegistrationSet {
    /// Builds the set from stored rows. When storage holds more than `max` (the limit was
    /// lowered), the ones enabled longest ago are returned as evicted.
    pub fn from_rows(mut rows: Vec<Registration>, max: usize) -> (Self, Vec<Registration>) {
        rows.sort_by_key(|r| r.record.enabled_at_us);
        let keep_from = rows.len().saturating_sub(max.min(MAX_DEVICES_CAP));
        let kept = rows.split_off(keep_from);
        let mut set = RegistrationSet::default();
        for r in kept {
            // Cannot fail: `kept` has at most MAX_DEVICES_CAP entries.
            let _ = set.items.push(Box::new(r));
        }
        (set, rows)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Registration> {
        self.items.iter().map(|r| &**r)
    }

    pub fn get(&self, identifier: &str) -> Option<&Registration> {
        self.iter().find(|r| r.identifier == identifier)
    }

    pub fn get_mut(&mut self, identifier: &str) -> Option<&mut Registration> {
        self.items
            .iter_mut()
            .map(|r| &mut **r)
            .find(|r| r.identifier == identifier)
    }

    /// An `enabled_at_us` later than every existing one, so eviction order is total even
    /// for enables within the same microsecond or after the clock stepped back.
    pub fn next_enabled_at(&self, now_us: u64) -> u64 {
        let newest = self.items.iter().map(|r| r.record.enabled_at_us).max();
        match newest {
            Some(n) if n >= now_us => n + 1,
            _ => now_us,
        }
    }

    /// Inserts or replaces by identifier. Returns the registration evicted to make room.
    pub fn upsert(&mut self, reg: Registration, max: usize) -> Option<Registration> {
        if let Some(slot) = self.get_mut(&reg.identifier) {
            *slot = reg;
            return None;
        }
        let mut evicted = None;
        if self.items.len() >= max.min(MAX_DEVICES_CAP) {
            evicted = self.oldest().map(|i| *self.items.remove(i));
        }
        // Cannot fail: one slot was freed above when the set was full.
        let _ = self.items.push(Box::new(reg));
        evicted
    }

    /// The identifier that `upsert` of a new registration would evict.
    pub fn would_evict(&self, identifier: &str, max: usize) -> Option<&Registration> {
        if self.get(identifier).is_some() || self.items.len() < max.min(MAX_DEVICES_CAP) {
            return None;
        }
        self.oldest().map(|i| &*self.items[i])
    }

    fn oldest(&self) -> Option<usize> {
        self.items
            .iter()
            .enumerate()
            .min_by_key(|(_, r)| r.record.enabled_at_us)
            .map(|(i, _)| i)
    }

    /// Removes and returns the registrations for `jid` (and `node`, when given).
    pub fn remove_matching(&mut self, jid: &Jid, node: Option<&str>) -> Vec<Registration> {
        let mut removed = Vec::new();
        let mut i = 0;
        while i < self.items.len() {
            let r = &self.items[i];
            if &r.jid == jid && node.is_none_or(|n| r.node() == Some(n)) {
                removed.push(*self.items.remove(i));
            } else {
                i += 1;
            }
        }
        removed
    }

    pub fn remove(&mut self, identifier: &str) -> Option<Registration> {
        let i = self.items.iter().position(|r| r.identifier == identifier)?;
        Some(*self.items.remove(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(node: &str, at: u64) -> Registration {
        let jid: Jid = "push.example".parse().unwrap();
        Registration {
            identifier: identifier(&jid, Some(node)),
            jid,
            record: RegistrationRecord {
                jid: "push.example".into(),
                node: Some(node.into()),
                publish_options: None,
                enabled_at_us: at,
                client: "phone".into(),
                language: None,
                error_count: 0,
                last_success: None,
                last_error: None,
                last_timeout: None,
                extensions: None,
                last_s2s_failure: None,
            },
        }
    }

    #[test]
    fn a_registration_counts_its_strings() {
        let plain = reg("n", 1);
        let mut with_form = reg("n", 1);
        with_form.record.publish_options = Some("x".repeat(500));
        assert!(plain.bytes() > size_of::<Registration>());
        assert_eq!(with_form.bytes() - plain.bytes(), 500);
    }

    fn nodes(set: &RegistrationSet) -> Vec<String> {
        let mut v: Vec<_> = set.iter().map(|r| r.node().unwrap().to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn identifier_shape() {
        let jid: Jid = "push-5.client.example".parse().unwrap();
        assert_eq!(identifier(&jid, Some("n1")), "push-5.client.example<n1");
        assert_eq!(identifier(&jid, None), "push-5.client.example<");
    }

    #[test]
    fn evicts_enabled_longest_ago() {
        let mut set = RegistrationSet::default();
        assert!(set.upsert(reg("n1", 1), 2).is_none());
        assert!(set.upsert(reg("n2", 2), 2).is_none());
        assert_eq!(
            set.would_evict("push.example<n3", 2).unwrap().node(),
            Some("n1")
        );
        let out = set.upsert(reg("n3", 3), 2).unwrap();
        assert_eq!(out.node(), Some("n1"));
        assert_eq!(nodes(&set), ["n2", "n3"]);
    }

    #[test]
    fn re_enable_refreshes() {
        let mut set = RegistrationSet::default();
        set.upsert(reg("n1", 1), 2);
        set.upsert(reg("n2", 2), 2);
        assert!(set.upsert(reg("n1", 3), 2).is_none());
        assert_eq!(set.upsert(reg("n3", 4), 2).unwrap().node(), Some("n2"));
    }

    #[test]
    fn loading_more_than_max_keeps_newest() {
        let (set, evicted) =
            RegistrationSet::from_rows(vec![reg("c", 3), reg("a", 1), reg("b", 2)], 2);
        assert_eq!(nodes(&set), ["b", "c"]);
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].node(), Some("a"));
    }

    #[test]
    fn next_enabled_at_is_strictly_increasing() {
        let mut set = RegistrationSet::default();
        set.upsert(reg("a", 100), 5);
        assert_eq!(set.next_enabled_at(50), 101);
        assert_eq!(set.next_enabled_at(200), 200);
    }

    #[test]
    fn remove_matching_by_jid_and_node() {
        let mut set = RegistrationSet::default();
        set.upsert(reg("n1", 1), 5);
        set.upsert(reg("n2", 2), 5);
        let jid: Jid = "push.example".parse().unwrap();
        assert_eq!(set.remove_matching(&jid, Some("n1")).len(), 1);
        assert_eq!(nodes(&set), ["n2"]);
        let other: Jid = "other.example".parse().unwrap();
        assert!(set.remove_matching(&other, None).is_empty());
        assert_eq!(set.remove_matching(&jid, None).len(), 1);
        assert!(set.is_empty());
    }
}
