//! Which stanzas already caused a publish to which registration (D13).
//!
//! Prosody marks the Lua stanza object, and the mark is lost on every copy; here the mark
//! is the stanza's stable key, so a stanza pushed on the ack-overdue path is not pushed
//! again at hibernation nor at the offline fallback. Kept per session and bounded: the
//! oldest marks go first (at worst a very old stanza is pushed once more; nothing is lost).

use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

/// Marks kept per session. A hibernated queue holds at most `smacks_max_queue_size`
/// (500) stanzas and each marks one registration on the smacks paths.
pub const MAX_MARKS: usize = 1024;

#[derive(Debug, Default)]
pub struct Marks {
    set: HashSet<(u64, u64)>,
    order: VecDeque<(u64, u64)>,
}

fn reg_key(identifier: &str) -> u64 {
    let mut h = DefaultHasher::new();
    identifier.hash(&mut h);
    h.finish()
}

impl Marks {
    pub fn contains(&self, seq: u64, identifier: &str) -> bool {
        self.set.contains(&(seq, reg_key(identifier)))
    }

    pub fn insert(&mut self, seq: u64, identifier: &str) {
        let k = (seq, reg_key(identifier));
        if !self.set.insert(k) {
            return;
        }
        self.order.push_back(k);
        if self.order.len() > MAX_MARKS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
    }

    /// Forgets one mark: the publish it stood for never left.
    pub fn remove(&mut self, seq: u64, identifier: &str) {
        let k = (seq, reg_key(identifier));
        if self.set.remove(&k) {
            self.order.retain(|o| *o != k);
        }
    }

    /// Forgets marks of stanzas the client acknowledged: they can take no other path.
    pub fn prune_acked(&mut self, acked: u64) {
        self.order.retain(|k| k.0 > acked);
        self.set.retain(|k| k.0 > acked);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_per_registration() {
        let mut m = Marks::default();
        m.insert(1, "a<n1");
        assert!(m.contains(1, "a<n1"));
        assert!(!m.contains(1, "a<n2"));
        assert!(!m.contains(2, "a<n1"));
    }

    #[test]
    fn bounded_oldest_first() {
        let mut m = Marks::default();
        for seq in 0..(MAX_MARKS as u64 + 10) {
            m.insert(seq, "r");
        }
        assert_eq!(m.len(), MAX_MARKS);
        assert!(!m.contains(0, "r"));
        assert!(m.contains(MAX_MARKS as u64 + 9, "r"));
    }

    #[test]
    fn remove_one() {
        let mut m = Marks::default();
        m.insert(1, "r");
        m.insert(2, "r");
        m.remove(1, "r");
        assert!(!m.contains(1, "r") && m.contains(2, "r"));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn prune() {
        let mut m = Marks::default();
        for seq in 1..=5 {
            m.insert(seq, "r");
        }
        m.prune_acked(3);
        assert_eq!(m.len(), 2);
        assert!(m.contains(4, "r") && !m.contains(3, "r"));
    }
}
