//! What XEP-0198 keeps for one session: the counters and the bounded queue of stanzas
//! the client has not acknowledged, kept serialized (bytes, not element trees).
//!
//! Counters on the wire are 32 bits and wrap (`h` mod 2^32); inside they are unwrapped to
//! 64 bits, which also gives every outgoing stanza a stable key for the push module (D13).

use std::collections::VecDeque;

/// The XEP-0198 namespace.
pub const SM_NS: &str = "urn:xmpp:sm:3";

use xmpp_parsers::minidom::Element;

/// XEP-0198 §4: the client acknowledged more than was sent.
pub fn handled_count_too_high() -> Element {
    Element::builder("error", "http://etherx.jabber.org/streams")
        .append(Element::builder(
            "undefined-condition",
            "urn:ietf:params:xml:ns:xmpp-streams",
        ))
        .append(Element::builder("handled-count-too-high", SM_NS))
        .build()
}

/// Why an ack was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("the client acknowledged {acked} stanzas but only {sent} were sent")]
    TooHigh { acked: u64, sent: u64 },
}

/// Called with `up_to` when the client has acknowledged every stanza up to it: the
/// stored copies of those (D23) can go.
pub type Release = Box<dyn FnMut(u64)>;

/// Which queued stanzas have a stored copy (D23), and how to let them go.
struct Durable {
    /// Highest sequence number stored (the stanzas at or below it that were stored).
    through: u64,
    /// Released up to here already.
    released: u64,
    release: Release,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Durable(through={}, released={})",
            self.through, self.released
        )
    }
}

#[derive(Debug)]
pub struct SmState {
    /// The resumption token (`previd`).
    pub id: String,
    /// Stanzas received from the client (what we answer in `<a h=…/>`).
    received: u32,
    /// Stanzas sent to the client, unwrapped.
    sent: u64,
    /// How many of those the client acknowledged, unwrapped.
    acked: u64,
    queue: VecDeque<(u64, Vec<u8>)>,
    /// The serialized stanzas' bytes in `queue` (for the memory figures).
    queued_bytes: usize,
    max_queue: usize,
    /// Set once some of the queue was stored (the session hibernated).
    durable: Option<Durable>,
}

impl SmState {
    pub fn new(id: String, max_queue: usize) -> Self {
        SmState {
            id,
            received: 0,
            sent: 0,
            acked: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            max_queue,
            durable: None,
        }
    }

    /// Stanzas up to `seq` have a stored copy where they should (D23). `release` is kept
    /// from the first call: it is called as acknowledgements let them go.
    pub fn stored_through(&mut self, seq: u64, release: impl FnOnce() -> Release) {
        match &mut self.durable {
            Some(d) => d.through = d.through.max(seq),
            None => {
                self.durable = Some(Durable {
                    through: seq,
                    released: self.acked,
                    release: release(),
                })
            }
        }
    }

    /// Lets every stored copy go, acknowledged or not (the session ended and its
    /// messages went elsewhere).
    pub fn release_rest(&mut self) {
        if let Some(d) = &mut self.durable {
            (d.release)(u64::MAX);
            d.released = d.through;
        }
    }

    /// Whether the stanza `seq` (still queued) may have a stored copy.
    pub fn is_stored(&self, seq: u64) -> bool {
        self.durable
            .as_ref()
            .is_some_and(|d| seq > d.released && seq <= d.through)
    }

    /// A stanza arrived from the client.
    pub fn on_received(&mut self) {
        self.received = self.received.wrapping_add(1);
    }

    /// The `h` to send in `<a/>` and `<resumed/>`.
    pub fn h(&self) -> u32 {
        self.received
    }

    /// A stanza is being sent (or queued while hibernated). Returns its sequence number,
    /// or `None` when the queue is full (the session must end).
    pub fn on_sent(&mut self, stanza: &Element) -> Option<u64> {
        if self.queue.len() >= self.max_queue {
            return None;
        }
        self.sent += 1;
        let bytes = String::from(stanza).into_bytes();
        self.queued_bytes += bytes.len();
        self.queue.push_back((self.sent, bytes));
        Some(self.sent)
    }

    /// The client acknowledged `h` (mod 2^32) stanzas in total.
    pub fn on_ack(&mut self, h: u32) -> Result<(), AckError> {
        let delta = u64::from(h.wrapping_sub(self.acked as u32));
        let acked = self.acked + delta;
        if acked > self.sent {
            return Err(AckError::TooHigh {
                acked,
                sent: self.sent,
            });
        }
        self.acked = acked;
        while self.queue.front().is_some_and(|(seq, _)| *seq <= acked) {
            if let Some((_, bytes)) = self.queue.pop_front() {
                self.queued_bytes -= bytes.len();
            }
        }
        if let Some(d) = &mut self.durable {
            let up_to = acked.min(d.through);
            if up_to > d.released {
                (d.release)(up_to);
                d.released = up_to;
            }
        }
        Ok(())
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    pub fn unacked_len(&self) -> usize {
        self.queue.len()
    }

    /// The most unacknowledged stanzas kept.
    pub fn max_queue(&self) -> usize {
        self.max_queue
    }

    /// The unacknowledged stanzas' serialized bytes.
    pub fn unacked_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// The unacknowledged stanzas, oldest first, parsed back.
    pub fn unacked(&self) -> Vec<(u64, Element)> {
        self.queue
            .iter()
            .filter_map(|(seq, bytes)| {
                let back = std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|s| s.parse::<Element>().ok());
                // The reader refuses what minidom cannot write and read again, so this
                // is a bug if it happens; say so rather than lose the stanza unseen.
                if back.is_none() {
                    tracing::error!(seq, len = bytes.len(), "a queued stanza did not read back");
                }
                back.map(|e| (*seq, e))
            })
            .collect()
    }

    /// Takes the unacknowledged stanzas out (the session is being destroyed).
    pub fn drain(&mut self) -> Vec<(u64, Element)> {
        let out = self.unacked();
        self.queue.clear();
        self.queued_bytes = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: u32) -> Element {
        format!("<message xmlns='jabber:client' id='{i}'/>")
            .parse()
            .unwrap()
    }

    #[test]
    fn queue_and_ack() {
        let mut s = SmState::new("x".into(), 10);
        for i in 0..5 {
            assert_eq!(s.on_sent(&m(i)), Some(u64::from(i) + 1));
        }
        s.on_ack(3).unwrap();
        assert_eq!(s.unacked_len(), 2);
        assert_eq!(s.unacked()[0].0, 4);
        assert_eq!(s.unacked()[0].1.attr("id"), Some("3"));
        assert_eq!(s.on_ack(9), Err(AckError::TooHigh { acked: 9, sent: 5 }));
        s.on_ack(5).unwrap();
        assert_eq!(s.unacked_len(), 0);
    }

    #[test]
    fn counters_wrap_at_32_bits() {
        let mut s = SmState::new("x".into(), 10);
        s.sent = u64::from(u32::MAX) - 1;
        s.acked = s.sent;
        s.received = u32::MAX;
        s.on_received();
        assert_eq!(s.h(), 0);
        s.on_sent(&m(1));
        s.on_sent(&m(2));
        s.on_sent(&m(3));
        // h wrapped past 2^32: 3 more than before.
        s.on_ack(1).unwrap();
        assert_eq!(s.acked(), u64::from(u32::MAX) + 2);
        assert_eq!(s.unacked_len(), 0);
    }

    #[test]
    fn acks_release_stored_copies_once() {
        use std::cell::RefCell;
        use std::rc::Rc;
        let released = Rc::new(RefCell::new(Vec::new()));
        let mut s = SmState::new("x".into(), 10);
        for i in 0..4 {
            s.on_sent(&m(i));
        }
        // Nothing stored yet: an ack releases nothing.
        s.on_ack(1).unwrap();
        let r = released.clone();
        s.stored_through(3, || Box::new(move |up_to| r.borrow_mut().push(up_to)));
        assert!(!s.is_stored(1) && s.is_stored(2) && s.is_stored(3) && !s.is_stored(4));
        s.on_ack(2).unwrap();
        s.on_ack(2).unwrap();
        // Acked past what was stored: released only up to what was.
        s.on_ack(4).unwrap();
        s.stored_through(6, || unreachable!("kept from the first call"));
        s.on_sent(&m(5));
        s.on_sent(&m(6));
        s.on_ack(6).unwrap();
        assert_eq!(*released.borrow(), [2, 3, 6]);
    }

    #[test]
    fn unacked_bytes_follow_the_queue() {
        let mut s = SmState::new("x".into(), 10);
        let one = String::from(&m(1)).len();
        s.on_sent(&m(1));
        s.on_sent(&m(2));
        assert_eq!(s.unacked_bytes(), 2 * one);
        s.on_ack(1).unwrap();
        assert_eq!(s.unacked_bytes(), one);
        s.on_sent(&m(3));
        assert_eq!(s.drain().len(), 2);
        assert_eq!(s.unacked_bytes(), 0);
    }

    #[test]
    fn queue_is_bounded() {
        let mut s = SmState::new("x".into(), 2);
        assert!(s.on_sent(&m(1)).is_some());
        assert!(s.on_sent(&m(2)).is_some());
        assert_eq!(s.on_sent(&m(3)), None);
        s.on_ack(1).unwrap();
        assert!(s.on_sent(&m(3)).is_some());
    }
}
