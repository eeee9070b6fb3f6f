//! Leading-edge batching of a session's publishes (decision D20, replacing spec §8.5's
//! trailing 1-second batch).
//!
//! Prosody holds every stanza for a hibernated session for a second and then publishes at
//! most one important and one unimportant notification. That costs every phone a second
//! on every wake-up. Here the first stanza that would publish does so at once and opens a
//! window of `push_batch_window`; inside it a stanza publishes only as the upgrade (an
//! important stanza after a window that has published only an unimportant notification).
//! The windows start at the same stanzas as Prosody's batches and last as long, and each
//! publishes a subset of what Prosody's batch would, so the count can only be lower; the
//! tests below replay generated traffic against a model of Prosody's batching to hold
//! that true.

use std::time::{Duration, Instant};

/// The open window of one session link, if any.
#[derive(Debug, Default, Clone)]
pub struct Window {
    open: Option<Open>,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    until: Instant,
    published_important: bool,
}

impl Window {
    /// Whether a stanza of this importance, arriving at `now`, publishes at once. A
    /// stanza that does not publish is not lost: it waits in the session's queue for the
    /// phone the earlier publish woke.
    pub fn admit(&mut self, now: Instant, length: Duration, important: bool) -> bool {
        match &mut self.open {
            Some(open) if now < open.until => {
                if important && !open.published_important {
                    open.published_important = true;
                    true
                } else {
                    false
                }
            }
            _ => {
                self.open = Some(Open {
                    until: now + length,
                    published_important: important,
                });
                true
            }
        }
    }

    /// Whether a window is open at `now`: a stanza now would not start a new one.
    pub fn is_open(&self, now: Instant) -> bool {
        self.open.is_some_and(|o| now < o.until)
    }

    /// Forgets the window: after a resume (D12) or a new hibernation, the next stanza
    /// publishes at once.
    pub fn reset(&mut self) {
        self.open = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(1000);

    /// Offsets in milliseconds from the first stanza, with importance.
    type Traffic = [(u64, bool)];

    fn leading_edge(traffic: &Traffic) -> Vec<(u64, bool)> {
        let base = Instant::now();
        let mut w = Window::default();
        traffic
            .iter()
            .copied()
            .filter(|&(t, imp)| w.admit(base + Duration::from_millis(t), W, imp))
            .collect()
    }

    /// Prosody's batching (spec §8.5): the first stanza starts a timer of W; when it
    /// fires, one important and one unimportant publish, for the first of each kind in
    /// the batch; the next stanza after that starts a new batch. Returns the publishes
    /// as (time sent, importance).
    fn prosody(traffic: &Traffic) -> Vec<(u64, bool)> {
        let w = W.as_millis() as u64;
        let mut out = Vec::new();
        let mut batch: Option<(u64, bool, bool)> = None; // (fires at, any important, any unimportant)
        let flush = |b: (u64, bool, bool), out: &mut Vec<(u64, bool)>| {
            if b.1 {
                out.push((b.0, true));
            }
            if b.2 {
                out.push((b.0, false));
            }
        };
        for &(t, imp) in traffic {
            if let Some(b) = batch
                && t >= b.0
            {
                flush(b, &mut out);
                batch = None;
            }
            let b = batch.get_or_insert((t + w, false, false));
            if imp {
                b.1 = true;
            } else {
                b.2 = true;
            }
        }
        if let Some(b) = batch {
            flush(b, &mut out);
        }
        out
    }

    /// SplitMix64: a fixed, dependency-free source of many traffic patterns.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Bursts, trickles, gaps of exactly W, and mixed importance: the shapes that could
    /// separate the two policies at their window boundaries.
    fn traffic(g: &mut Gen) -> Vec<(u64, bool)> {
        let len = 1 + g.below(40);
        let mut t = 0;
        let mut out = Vec::new();
        for _ in 0..len {
            t += match g.below(6) {
                0 => 0,
                1 => g.below(50),
                2 => g.below(1000),
                3 => 1000,
                4 => 999 + g.below(3),
                _ => g.below(4000),
            };
            let important = match g.below(3) {
                0 => true,
                1 => false,
                _ => g.below(10) == 0,
            };
            out.push((t, important));
        }
        out
    }

    #[test]
    fn d20_never_more_publishes_than_prosody_and_never_later() {
        let mut g = Gen(0x00C0_FFEE);
        for case in 0..20_000 {
            let tr = traffic(&mut g);
            let ours = leading_edge(&tr);
            let theirs = prosody(&tr);
            assert!(
                ours.len() <= theirs.len(),
                "case {case}: {} publishes against Prosody's {} for {tr:?}",
                ours.len(),
                theirs.len()
            );
            // Every batch Prosody publishes for is published for here too, a whole window
            // earlier: the phone is never woken later than Prosody would wake it.
            assert_eq!(ours.first().map(|p| p.0), tr.first().map(|p| p.0));
            for &(fired, _) in &theirs {
                let opened = fired - W.as_millis() as u64;
                assert!(
                    ours.iter().any(|&(t, _)| t == opened),
                    "case {case}: no publish at {opened} for {tr:?}"
                );
            }
            // An important stanza is never left behind an unimportant notification.
            for &(fired, imp) in &theirs {
                if imp {
                    let opened = fired - W.as_millis() as u64;
                    assert!(
                        ours.iter().any(|&(t, i)| i && t >= opened && t < fired),
                        "case {case}: important publish missing in window at {opened} for {tr:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn first_stanza_publishes_at_once_and_a_burst_publishes_once() {
        let tr = [(0, true), (10, true), (20, true), (999, true)];
        assert_eq!(leading_edge(&tr), [(0, true)]);
        assert_eq!(prosody(&tr), [(1000, true)]);
    }

    #[test]
    fn an_important_stanza_upgrades_an_unimportant_window_once() {
        let tr = [(0, false), (5, false), (10, true), (20, true)];
        assert_eq!(leading_edge(&tr), [(0, false), (10, true)]);
    }

    #[test]
    fn nothing_after_an_important_publish_in_the_same_window() {
        let tr = [(0, true), (5, false), (10, true)];
        assert_eq!(leading_edge(&tr), [(0, true)]);
    }

    #[test]
    fn the_next_stanza_after_the_window_opens_a_new_one() {
        let tr = [(0, true), (999, true), (1000, false), (1500, true)];
        assert_eq!(leading_edge(&tr), [(0, true), (1000, false), (1500, true)]);
    }

    #[test]
    fn reset_opens_a_new_window() {
        let base = Instant::now();
        let mut w = Window::default();
        assert!(!w.is_open(base));
        assert!(w.admit(base, W, true));
        assert!(w.is_open(base) && !w.is_open(base + W));
        assert!(!w.admit(base, W, true));
        w.reset();
        assert!(!w.is_open(base));
        assert!(w.admit(base, W, true));
    }
}
