//! Bytes held by items waiting in queues that no user actor owns: the outbound
//! server-to-server queues (stanzas and publishes waiting while a link connects, or held
//! for a retry) and the components' queues. Each item carries a [`Charge`] from the
//! moment it is queued; the charge gives its bytes back when it is dropped, whichever
//! way the item leaves (written, bounced, given up, dropped with its queue), so the sum
//! is kept as items come and go and reading it walks over nothing.

use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use xmpp_parsers::minidom::{Element, Node};

/// The sum of every live [`Charge`], in bytes.
#[derive(Debug, Clone, Default)]
pub struct HeldBytes(Arc<AtomicU64>);

impl HeldBytes {
    /// `bytes` held from now until the returned charge is dropped.
    pub fn charge(&self, bytes: usize) -> Charge {
        let bytes = bytes as u64;
        self.0.fetch_add(bytes, Ordering::Relaxed);
        Charge {
            bytes,
            sum: self.0.clone(),
        }
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One queued item's share of [`HeldBytes`].
#[derive(Debug)]
pub struct Charge {
    bytes: u64,
    sum: Arc<AtomicU64>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        let bytes = self.bytes;
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(bytes))
            });
    }
}

/// An estimate of the heap and inline size of a parsed stanza: each element's struct,
/// name, attributes and text (namespaces are left out). Taken once, as the stanza is queued (it is about
/// to be serialized anyway); its depth is bounded by the stream reader's limits.
pub fn element_bytes(e: &Element) -> usize {
    let own = size_of::<Element>()
        + e.name().len()
        + e.attrs()
            .into_iter()
            .map(|((_, name), value)| name.len() + value.len())
            .sum::<usize>();
    own + e
        .nodes()
        .map(|n| {
            size_of::<Node>()
                + match n {
                    Node::Element(child) => element_bytes(child),
                    Node::Text(t) => t.len(),
                }
        })
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_add_up_and_leave_when_dropped() {
        let held = HeldBytes::default();
        let a = held.charge(100);
        let b = held.clone().charge(50);
        assert_eq!(held.get(), 150);
        drop(a);
        assert_eq!(held.get(), 50);
        drop(b);
        assert_eq!(held.get(), 0);
    }

    #[test]
    fn a_stanza_counts_at_least_its_text_and_grows_with_it() {
        let stanza = |body: &str| -> Element {
            format!("<message xmlns='jabber:client' to='a@b'><body>{body}</body></message>")
                .parse()
                .unwrap()
        };
        let short = element_bytes(&stanza("x"));
        let long = element_bytes(&stanza(&"x".repeat(1000)));
        assert!(short > 2 * size_of::<Element>(), "{short}");
        assert_eq!(long - short, 999);
    }
}
