//! The queue a session hibernates with (spec §8.3 step 3): at most one important and one
//! unimportant publish for its registration, the first of each kind, in queue order. Only
//! what the publish needs is kept, never the stanza itself. Stanzas queued later go through
//! the leading-edge [`window`](super::window) instead (D20).

use crate::push::publish::Summary;

/// A stanza that will publish when the batch fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub seq: u64,
    pub important: bool,
    pub summary: Summary,
}

#[derive(Debug, Default)]
pub struct Batch {
    important: Option<Candidate>,
    unimportant: Option<Candidate>,
}

impl Batch {
    /// Whether a stanza of this kind would still take a slot (so its publish is worth
    /// building).
    pub fn wants(&self, important: bool) -> bool {
        if important {
            self.important.is_none()
        } else {
            self.unimportant.is_none()
        }
    }

    /// Offers a stanza; the first of each kind wins.
    pub fn offer(&mut self, c: Candidate) {
        let slot = if c.important {
            &mut self.important
        } else {
            &mut self.unimportant
        };
        if slot.is_none() {
            *slot = Some(c);
        }
    }

    /// Empties the batch, returning its publishes in queue order.
    pub fn take(&mut self) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = [self.important.take(), self.unimportant.take()]
            .into_iter()
            .flatten()
            .collect();
        out.sort_by_key(|c| c.seq);
        out
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.important.is_none() && self.unimportant.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(seq: u64, important: bool) -> Candidate {
        Candidate {
            seq,
            important,
            summary: Summary::default(),
        }
    }

    #[test]
    fn first_of_each_kind_in_queue_order() {
        let mut b = Batch::default();
        for (seq, imp) in [(1, false), (2, true), (3, true), (4, false), (5, true)] {
            b.offer(c(seq, imp));
        }
        assert!(!b.wants(true) && !b.wants(false));
        let out = b.take();
        assert_eq!(out.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2]);
        assert!(b.is_empty());
    }

    #[test]
    fn only_important() {
        let mut b = Batch::default();
        b.offer(c(7, true));
        b.offer(c(8, true));
        assert!(b.wants(false) && !b.wants(true));
        assert_eq!(b.take(), vec![c(7, true)]);
    }
}
