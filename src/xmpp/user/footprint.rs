//! A user actor's memory by kind, for `status` and the metrics endpoint
//! (`cloud_notify_memory_bytes`): an estimate made of sizes the records already know
//! (the unacknowledged queues keep their stanzas serialized and count the bytes), so it
//! is recomputed after each change without walking over any stanza. No figure is kept
//! per user outside the actor: each actor adds the change of its own to the server's
//! sums (`Gauges`), and takes its share back when it stops.

use std::mem::size_of;

use xmpp_parsers::minidom::Element;

use super::record::{Entry, Hibernation, Link, Pending};

/// One user's sessions and queues, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// The session records: each record with its JID, presence and resumption id, and
    /// a hibernated session's state.
    pub sessions: u64,
    /// What waits for the sessions: the unacknowledged stanzas (serialized), the
    /// stanzas held for an inactive client (their size, taken as each was held), those
    /// queued while hibernated and those spilled past the queue's limit. The last two
    /// are counted as their element only, not their tree's contents: a queued stanza's
    /// serialized copy is in the unacknowledged queue already.
    pub queues: u64,
    /// The push registrations in memory, with their strings (counted under `users`).
    pub registrations: u64,
}

/// The footprint of `sessions`.
pub(super) fn of(sessions: &[Entry]) -> Footprint {
    let mut f = Footprint::default();
    for e in sessions {
        let sm = e.sm.as_ref();
        let (hibernation, pending) = match &e.link {
            Link::Hibernated(h) => (size_of::<Hibernation>(), h.pending.len()),
            _ => (0, 0),
        };
        f.sessions += (size_of::<Entry>()
            + e.jid.as_str().len()
            + e.presence.as_ref().map_or(0, |p| p.len())
            + sm.map_or(0, |sm| sm.id.len())
            + hibernation) as u64;
        f.queues += (sm.map_or(0, |sm| {
            sm.unacked_bytes() + sm.unacked_len() * size_of::<(u64, Vec<u8>)>()
        }) + pending * size_of::<Pending>()
            + e.flags.csi.held_bytes()
            + e.spill.len() * size_of::<Element>()) as u64;
    }
    f
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::super::sm::SmState;
    use super::super::record::Socket;
    use super::*;
    use crate::push::SessionId;

    fn entry(sm: Option<SmState>) -> Entry {
        let (tx, _rx) = flume::bounded(1);
        Entry {
            id: SessionId(1),
            jid: "juliet@localhost/phone".parse().unwrap(),
            presence: None,
            sm,
            link: Link::Connected(Socket {
                tx,
                received: Arc::default(),
                conn: 1,
            }),
            spill: Vec::new(),
            ack_timer: None,
            ack_overdue_sent: false,
            flags: Default::default(),
        }
    }

    fn message(body: &str) -> Element {
        format!("<message xmlns='jabber:client'><body>{body}</body></message>")
            .parse()
            .unwrap()
    }

    #[test]
    fn unacked_stanzas_count_with_their_bytes_and_leave_with_the_ack() {
        let mut sessions = vec![entry(Some(SmState::new("id".into(), 10)))];
        let idle = of(&sessions);
        assert!(idle.sessions >= size_of::<Entry>() as u64);
        assert_eq!(idle.queues, 0);
        let sm = sessions[0].sm.as_mut().unwrap();
        sm.on_sent(&message(&"x".repeat(1000)));
        sm.on_sent(&message(&"y".repeat(1000)));
        let queued = of(&sessions);
        assert!(queued.queues > 2000, "{queued:?}");
        assert_eq!(queued.sessions, idle.sessions);
        sessions[0].sm.as_mut().unwrap().on_ack(2).unwrap();
        assert_eq!(of(&sessions), idle);
    }

    #[test]
    fn each_session_and_each_held_stanza_counts() {
        let one = of(&[entry(None)]);
        let mut two = vec![entry(None), entry(None)];
        assert_eq!(of(&two).sessions, 2 * one.sessions);
        let composing = message("composing");
        let size = crate::metrics::held::element_bytes(&composing) as u64;
        two[1].flags.csi.hold(composing);
        assert_eq!(of(&two).queues, size);
        two[1].flags.csi.hold(message(&"x".repeat(1000)));
        assert!(of(&two).queues >= size + 1000);
        two[1].flags.csi.take();
        assert_eq!(of(&two).queues, 0);
        assert_eq!(of(&[]), Footprint::default());
    }
}
