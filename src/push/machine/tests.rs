//! The machine on a fake clock: time moves only when a test says so, and timers fire
//! only when a test feeds them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;

use super::*;
use crate::metrics::PublishOutcome;
use crate::push::interface::{QueuedStanza, Selector, StanzaKey, TestOutcome, TimerOwner};
use crate::push::protocol::EnableRequest;
use crate::push::publish::{Outcome, Response};
use crate::store::{Change, PushExtensions};

const APP: &str = "push.example.net";
const NORMAL: Duration = Duration::from_secs(300);

fn config() -> Config {
    Config {
        domain: "example.com".into(),
        push_max_hibernation_timeout: Duration::from_secs(3600),
        push_batch_window: Duration::from_secs(1),
        push_response_timeout: Duration::from_secs(60),
        ..Config::default()
    }
}

fn stanza(xml: &str) -> Element {
    match xml.parse() {
        Ok(e) => e,
        Err(e) => panic!("bad test xml {xml}: {e}"),
    }
}

fn chat(body: &str) -> Element {
    stanza(&format!(
        "<message xmlns='jabber:client' type='chat' from='romeo@example.org/desk' to='juliet@example.com'><body>{body}</body></message>"
    ))
}

fn presence() -> Element {
    stanza("<presence xmlns='jabber:client' from='romeo@example.org/desk'/>")
}

/// A machine, its fake clock and a fake host's bookkeeping.
struct Rig {
    m: PushMachine,
    clock: Clock,
    next_request: u64,
    seq: u64,
}

impl Rig {
    fn new(cfg: Config) -> Rig {
        let user_jid = "juliet@example.com".parse().unwrap();
        let mut rig = Rig {
            m: PushMachine::new("juliet".into(), user_jid, Arc::new(cfg), 7),
            clock: Clock {
                now: Instant::now(),
                wall_us: 1_700_000_000_000_000,
            },
            next_request: 0,
            seq: 0,
        };
        assert!(rig.ev(Event::Loaded(Ok(Vec::new()))).is_empty());
        rig
    }

    fn advance(&mut self, d: Duration) {
        self.clock = self.clock.advanced(d);
    }

    fn ev(&mut self, e: Event) -> Vec<Effect> {
        self.m.handle(self.clock, e)
    }

    fn request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// An enable of `node` by `session`, with the store's answer; every effect of both.
    fn enable(&mut self, session: u64, node: &str) -> Vec<Effect> {
        self.enable_with(session, node, None)
    }

    /// An enable with the Tigase extensions `extensions`.
    fn enable_with(
        &mut self,
        session: u64,
        node: &str,
        extensions: Option<PushExtensions>,
    ) -> Vec<Effect> {
        let request = self.request();
        let jid: FullJid = format!("juliet@example.com/r{session}").parse().unwrap();
        let mut out = self.ev(Event::Enable {
            request,
            session: SessionId(session),
            jid,
            iq_id: "en1".into(),
            req: EnableRequest {
                jid: APP.parse().unwrap(),
                node: Some(node.into()),
                publish_options: None,
                extensions,
                language: None,
            },
        });
        assert!(
            replies(&out).is_empty(),
            "no reply before the write is durable"
        );
        out.extend(self.ev(Event::Written {
            request,
            result: Ok(()),
        }));
        out
    }

    fn queued(&mut self, session: u64, stanza: Element) -> QueuedStanza {
        self.seq += 1;
        QueuedStanza {
            key: StanzaKey {
                session: SessionId(session),
                seq: self.seq,
            },
            stanza,
        }
    }

    fn hibernate(&mut self, session: u64, queue: Vec<QueuedStanza>) -> (TimerOwner, Vec<Effect>) {
        let request = self.request();
        let out = self.ev(Event::Hibernated {
            request,
            session: SessionId(session),
            normal_timeout: NORMAL,
            queue,
        });
        let owner = out.iter().find_map(|e| match e {
            Effect::Reply {
                reply: Reply::TimerOwner(o),
                ..
            } => Some(*o),
            _ => None,
        });
        (owner.expect("a hibernation is answered"), out)
    }

    fn queue(&mut self, session: u64, stanza: Element) -> Vec<Effect> {
        let qs = self.queued(session, stanza);
        self.ev(Event::StanzaQueued(qs))
    }

    fn answer(&mut self, id: &str, outcome: Outcome) -> Vec<Effect> {
        self.ev(Event::Response(Response {
            id: id.into(),
            from: Some(APP.parse::<Jid>().unwrap()),
            outcome,
        }))
    }
}

/// The publish IQs' text, in order.
fn publish_texts(out: &[Effect]) -> Vec<String> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Publish { xml, .. } => Some(xml.clone()),
            _ => None,
        })
        .collect()
}

fn publishes(out: &[Effect]) -> Vec<String> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Publish { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

fn replies(out: &[Effect]) -> Vec<&Reply> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Reply { reply, .. } => Some(reply),
            _ => None,
        })
        .collect()
}

fn hibernation_deadline(out: &[Effect], session: u64) -> Option<Instant> {
    out.iter().rev().find_map(|e| match e {
        Effect::Arm {
            timer: Timer::Hibernation(s),
            at,
        } if *s == SessionId(session) => Some(*at),
        _ => None,
    })
}

fn writes(out: &[Effect]) -> Vec<&Change> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Write { changes, .. } => Some(changes),
            _ => None,
        })
        .flatten()
        .collect()
}

fn cancelled(out: &[Effect], timer: &Timer) -> bool {
    out.iter()
        .any(|e| matches!(e, Effect::Cancel(t) if t == timer))
}

fn error_outcome(error_type: &str) -> Outcome {
    Outcome::Error {
        error_type: error_type.into(),
        condition: "item-not-found".into(),
        text: None,
    }
}

#[test]
fn enable_replies_only_after_the_write_and_not_at_all_on_failure() {
    let mut r = Rig::new(config());
    let request = r.request();
    let out = r.ev(Event::Enable {
        request,
        session: SessionId(1),
        jid: "juliet@example.com/phone".parse().unwrap(),
        iq_id: "x".into(),
        req: EnableRequest {
            jid: APP.parse().unwrap(),
            node: Some("n1".into()),
            publish_options: None,
            extensions: None,
            language: None,
        },
    });
    assert!(matches!(
        out.as_slice(),
        [Effect::Write { durable: true, request: Some(q), .. }] if *q == request
    ));
    let out = r.ev(Event::Written {
        request,
        result: Err(crate::store::StoreError::Failed("disk".into())),
    });
    match replies(&out).as_slice() {
        [Reply::Iq(iq)] => assert_eq!(iq.attr("type"), Some("error")),
        other => panic!("expected one error reply, got {other:?}"),
    }
    assert_eq!(r.m.stats(r.clock.now).registrations, 0);
    assert!(!r.m.has_link(SessionId(1)));
}

#[test]
fn d20_window_publishes_at_once_then_only_the_upgrade_until_it_closes() {
    let mut r = Rig::new(config());
    r.enable(1, "n1");
    assert_eq!(r.hibernate(1, Vec::new()).0, TimerOwner::Module);
    assert_eq!(publishes(&r.queue(1, presence())).len(), 1, "at once");
    r.advance(Duration::from_millis(100));
    assert!(publishes(&r.queue(1, presence())).is_empty());
    assert_eq!(publishes(&r.queue(1, chat("a"))).len(), 1, "the upgrade");
    assert!(publishes(&r.queue(1, chat("b"))).is_empty());
    assert_eq!(r.m.stats(r.clock.now).open_batch_windows, 1);
    // The window opened at 0 and lasts push_batch_window: at 1 s it is over.
    r.advance(Duration::from_millis(900));
    assert_eq!(r.m.stats(r.clock.now).open_batch_windows, 0);
    assert_eq!(publishes(&r.queue(1, chat("c"))).len(), 1, "a new window");
}

#[test]
fn hibernation_is_held_to_the_extended_timeout() {
    let cfg = config();
    let mut r = Rig::new(cfg.clone());
    r.enable(1, "n1");
    let start = r.clock.now;
    let (owner, out) = r.hibernate(1, vec![]);
    assert_eq!(owner, TimerOwner::Module);
    assert_eq!(
        hibernation_deadline(&out, 1),
        Some(start + cfg.push_max_hibernation_timeout)
    );
    // Unimportant pushes do not touch the timer.
    r.advance(Duration::from_secs(10));
    let out = r.queue(1, presence());
    assert_eq!(publishes(&out).len(), 1);
    assert_eq!(hibernation_deadline(&out, 1), None);
    r.advance(cfg.push_max_hibernation_timeout);
    let out = r.ev(Event::TimerFired(Timer::Hibernation(SessionId(1))));
    assert!(matches!(out.as_slice(), [Effect::Expire(SessionId(1))]));
    assert_eq!(r.m.stats(r.clock.now).hibernations_held, 0);
}

#[test]
fn first_important_push_cuts_the_hibernation_back_once() {
    let mut r = Rig::new(config());
    r.enable(1, "n1");
    r.hibernate(1, vec![]);
    r.advance(Duration::from_secs(5));
    let out = r.queue(1, chat("hi"));
    assert_eq!(publishes(&out).len(), 1);
    assert_eq!(hibernation_deadline(&out, 1), Some(r.clock.now + NORMAL));
    // A later important push, in a new window, leaves the cut-back deadline alone.
    r.advance(Duration::from_secs(5));
    let out = r.queue(1, chat("again"));
    assert_eq!(publishes(&out).len(), 1);
    assert_eq!(hibernation_deadline(&out, 1), None);
    // A resume forgets the hold; the next hibernation is extended afresh.
    let out = r.ev(Event::Resumed {
        session: SessionId(1),
        acked: r.seq,
    });
    assert!(cancelled(&out, &Timer::Hibernation(SessionId(1))));
    let (_, out) = r.hibernate(1, vec![]);
    assert_eq!(
        hibernation_deadline(&out, 1),
        Some(r.clock.now + config().push_max_hibernation_timeout)
    );
}

#[test]
fn hibernation_queue_publishes_one_important_and_one_unimportant() {
    let mut r = Rig::new(config());
    r.enable(1, "n1");
    let queue = vec![
        r.queued(1, presence()),
        r.queued(1, chat("a")),
        r.queued(1, chat("b")),
        r.queued(1, presence()),
    ];
    let (_, out) = r.hibernate(1, queue);
    assert_eq!(publishes(&out).len(), 2);
    assert_eq!(hibernation_deadline(&out, 1), Some(r.clock.now + NORMAL));
}

#[test]
fn unanswered_publish_times_out_into_the_ledger_without_counting() {
    let cfg = Config {
        push_max_errors: 1,
        ..config()
    };
    let mut r = Rig::new(cfg.clone());
    r.enable(1, "n1");
    r.ev(Event::Closed {
        session: SessionId(1),
    });
    let out = r.ev(Event::Offline {
        stanza: chat("hi"),
        key: None,
    });
    let [id] = publishes(&out).try_into().unwrap();
    let timer = Timer::Response(id.clone());
    let deadline = out.iter().find_map(|e| match e {
        Effect::Arm { timer: t, at } if *t == timer => Some(*at),
        _ => None,
    });
    assert_eq!(deadline, Some(r.clock.now + cfg.push_response_timeout));
    assert_eq!(r.m.pending_publishes(), 1);
    r.advance(cfg.push_response_timeout);
    let out = r.ev(Event::TimerFired(timer));
    assert!(out.contains_metric(&Metric::Pending(-1)));
    assert!(!r.m.is_pending(&id));
    // A late error answer is ignored: the registration survives push_max_errors = 1.
    assert!(r.answer(&id, error_outcome("cancel")).is_empty());
    let out = r.ev(Event::Unload { flush: true });
    match writes(&out).as_slice() {
        [Change::PutRegistration { record, .. }] => {
            assert_eq!(record.error_count, 0);
            assert_eq!(record.last_timeout, Some(r.clock.wall_secs()));
        }
        other => panic!("expected the ledger flushed, got {other:?}"),
    }
}

/// D21: our server-to-server layer's failure goes into the ledger with its reason; a
/// held publish stays awaited and, unanswered, ends as that failure (not as a timeout);
/// one given up ends at once. Neither counts towards `push_max_errors`.
#[test]
fn s2s_failures_go_into_the_ledger_without_counting() {
    let cfg = Config {
        push_max_errors: 1,
        ..config()
    };
    let mut r = Rig::new(cfg.clone());
    r.enable(1, "n1");
    r.ev(Event::Closed {
        session: SessionId(1),
    });
    let offline = |r: &mut Rig| {
        let out = r.ev(Event::Offline {
            stanza: chat("hi"),
            key: None,
        });
        let [id]: [String; 1] = publishes(&out).try_into().unwrap();
        id
    };
    let undelivered = |id: &str, given_up| {
        Event::Undelivered(crate::push::interface::PublishUndelivered {
            id: id.into(),
            condition: "remote-server-not-found".into(),
            reason: "connection failed: refused".into(),
            given_up,
        })
    };
    let ended = |out: &[Effect], outcome| {
        out.iter().any(|e| {
            matches!(e, Effect::Metric(Metric::PublishEnded { outcome: o, .. }) if *o == outcome)
        })
    };
    let held = offline(&mut r);
    let out = r.ev(undelivered(&held, false));
    assert!(out.is_empty(), "held for a retry: {out:?}");
    assert!(r.m.is_pending(&held));
    r.advance(cfg.push_response_timeout);
    let out = r.ev(Event::TimerFired(Timer::Response(held.clone())));
    assert!(ended(&out, PublishOutcome::S2sFailure), "{out:?}");
    assert!(!ended(&out, PublishOutcome::Timeout), "{out:?}");
    assert!(!r.m.is_pending(&held));
    let gone = offline(&mut r);
    let out = r.ev(undelivered(&gone, true));
    assert!(ended(&out, PublishOutcome::S2sFailure), "{out:?}");
    assert!(out.contains_metric(&Metric::Pending(-1)));
    assert!(!r.m.is_pending(&gone));
    let out = r.ev(Event::Unload { flush: true });
    match writes(&out).as_slice() {
        [Change::PutRegistration { record, .. }] => {
            assert_eq!(record.error_count, 0);
            assert_eq!(record.last_timeout, None);
            let f = record
                .last_s2s_failure
                .as_ref()
                .expect("the failure recorded");
            assert_eq!(f.condition, "remote-server-not-found");
            assert_eq!(f.reason, "connection failed: refused");
            assert_eq!(f.at, r.clock.wall_secs());
        }
        other => panic!("expected the ledger flushed, got {other:?}"),
    }
}

trait HasMetric {
    fn contains_metric(&self, m: &Metric) -> bool;
}

impl HasMetric for Vec<Effect> {
    fn contains_metric(&self, m: &Metric) -> bool {
        self.iter()
            .any(|e| matches!(e, Effect::Metric(x) if x == m))
    }
}

/// An app server's error text goes into the ledger cut to the note's bound: the peer
/// chooses its length, and the record is written again at every change.
#[test]
fn an_error_text_is_kept_cut_to_the_notes_bound() {
    let mut r = Rig::new(config());
    r.enable(1, "n1");
    r.ev(Event::Closed {
        session: SessionId(1),
    });
    let out = r.ev(Event::Offline {
        stanza: chat("hi"),
        key: None,
    });
    let [id]: [String; 1] = publishes(&out).try_into().unwrap();
    let out = r.answer(
        &id,
        Outcome::Error {
            error_type: "cancel".into(),
            condition: "item-not-found".into(),
            text: Some("t".repeat(10_000)),
        },
    );
    match writes(&out).as_slice() {
        [.., Change::PutRegistration { record, .. }] => {
            let note = record.last_error.as_ref().expect("the error recorded");
            assert_eq!(
                note.text.as_deref(),
                Some("t".repeat(crate::store::MAX_NOTE_TEXT).as_str())
            );
        }
        other => panic!("expected the error written, got {other:?}"),
    }
}

#[test]
fn errors_count_to_push_max_errors_and_remove_the_registration() {
    let mut r = Rig::new(Config {
        push_max_errors: 3,
        ..config()
    });
    r.enable(1, "n1");
    r.ev(Event::Closed {
        session: SessionId(1),
    });
    let offline = |r: &mut Rig| {
        let out = r.ev(Event::Offline {
            stanza: chat("hi"),
            key: None,
        });
        publishes(&out)
    };
    // `wait` errors never count.
    for _ in 0..5 {
        let [id] = offline(&mut r).try_into().unwrap();
        r.answer(&id, error_outcome("wait"));
    }
    for n in 1..=2 {
        let [id] = offline(&mut r).try_into().unwrap();
        let out = r.answer(&id, error_outcome("cancel"));
        match writes(&out).as_slice() {
            [.., Change::PutRegistration { record, .. }] => assert_eq!(record.error_count, n),
            other => panic!("expected the count written, got {other:?}"),
        }
    }
    let [id] = offline(&mut r).try_into().unwrap();
    let out = r.answer(&id, error_outcome("auth"));
    let changes = writes(&out);
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::DeleteRegistration { .. }))
    );
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::LogRemoval { .. }))
    );
    assert!(offline(&mut r).is_empty(), "nothing left to publish to");
}

#[test]
fn a_success_resets_the_error_count() {
    let mut r = Rig::new(Config {
        push_max_errors: 2,
        ..config()
    });
    r.enable(1, "n1");
    for outcome in [
        error_outcome("cancel"),
        Outcome::Success,
        error_outcome("cancel"),
    ] {
        let out = r.ev(Event::Offline {
            stanza: chat("hi"),
            key: None,
        });
        let [id] = publishes(&out).try_into().unwrap();
        r.answer(&id, outcome);
    }
    assert_eq!(r.m.stats(r.clock.now).registrations, 1);
}

#[test]
fn an_answer_from_another_jid_changes_nothing() {
    let mut r = Rig::new(config());
    r.enable(1, "n1");
    let out = r.ev(Event::Offline {
        stanza: chat("hi"),
        key: None,
    });
    let [id] = publishes(&out).try_into().unwrap();
    let out = r.ev(Event::Response(Response {
        id: id.clone(),
        from: Some("evil.example".parse::<Jid>().unwrap()),
        outcome: Outcome::Success,
    }));
    assert!(out.is_empty());
    assert!(r.m.is_pending(&id));
}

#[test]
fn pending_publishes_are_bounded_oldest_given_up_first() {
    let mut r = Rig::new(Config {
        push_max_pending_publishes: 2,
        ..config()
    });
    r.enable(1, "n1");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let out = r.ev(Event::Offline {
            stanza: chat("hi"),
            key: None,
        });
        ids.extend(publishes(&out));
    }
    assert_eq!(r.m.pending_publishes(), 2);
    assert!(!r.m.is_pending(&ids[0]));
    assert!(r.m.is_pending(&ids[1]) && r.m.is_pending(&ids[2]));
}

#[test]
fn d13_marks_keep_a_stanza_from_publishing_twice_to_one_registration() {
    let mut r = Rig::new(config());
    r.enable(1, "n1");
    r.enable(2, "n2");
    let a = r.queued(1, chat("a"));
    let out = r.ev(Event::AckOverdue {
        session: SessionId(1),
        queue: vec![a.clone()],
    });
    assert_eq!(publishes(&out).len(), 1);
    let (_, out) = r.hibernate(1, vec![a.clone()]);
    assert!(
        publishes(&out).is_empty(),
        "pushed on the ack-overdue path already"
    );
    // At the offline fallback only the other registration hears of it.
    let out = r.ev(Event::Offline {
        stanza: a.stanza.clone(),
        key: Some(a.key),
    });
    assert_eq!(publishes(&out).len(), 1);
    let to_n2 = out
        .iter()
        .any(|e| matches!(e, Effect::Publish { xml, .. } if xml.contains("node='n2'")));
    assert!(to_n2);
}

#[test]
fn push_max_devices_evicts_the_registration_enabled_longest_ago() {
    let mut r = Rig::new(Config {
        push_max_devices: 2,
        ..config()
    });
    r.enable(1, "n1");
    r.advance(Duration::from_secs(1));
    r.enable(2, "n2");
    r.advance(Duration::from_secs(1));
    let out = r.enable(3, "n3");
    let deleted: Vec<&str> = writes(&out)
        .iter()
        .filter_map(|c| match c {
            Change::DeleteRegistration { identifier, .. } => Some(identifier.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, [format!("{APP}<n1").as_str()]);
    let stats = r.m.stats(r.clock.now);
    assert_eq!((stats.registrations, stats.linked_sessions), (2, 2));
    // The evicted device's session is unlinked: its hibernation is the host's.
    assert_eq!(r.hibernate(1, vec![]).0, TimerOwner::Host);
    assert_eq!(r.hibernate(3, vec![]).0, TimerOwner::Module);
}

#[test]
fn d8_removing_a_registration_returns_a_held_session_to_its_normal_timeout() {
    let mut r = Rig::new(config());
    r.enable(1, "n1");
    r.hibernate(1, vec![]);
    r.advance(Duration::from_secs(30));
    let request = r.request();
    r.ev(Event::Disable {
        request,
        jid: "juliet@example.com/tablet".parse().unwrap(),
        iq_id: "d".into(),
        req: crate::push::protocol::DisableRequest {
            jid: APP.parse().unwrap(),
            node: crate::push::protocol::NodeFilter::Any,
        },
    });
    let out = r.ev(Event::Written {
        request,
        result: Ok(()),
    });
    assert_eq!(hibernation_deadline(&out, 1), Some(r.clock.now + NORMAL));
    assert!(publishes(&r.queue(1, chat("after"))).is_empty());
}

#[test]
fn a_stanza_whose_publish_was_not_routed_publishes_on_the_next_path() {
    let mut r = Rig::new(config());
    r.enable(1, "n1");
    let a = r.queued(1, chat("a"));
    let out = r.ev(Event::AckOverdue {
        session: SessionId(1),
        queue: vec![a.clone()],
    });
    let [id] = publishes(&out).try_into().unwrap();
    r.ev(Event::NotRouted { id });
    let (_, out) = r.hibernate(1, vec![a]);
    assert_eq!(publishes(&out).len(), 1, "not marked as pushed");
}

#[test]
fn a_publish_the_host_could_not_route_is_not_awaited() {
    let mut r = Rig::new(config());
    r.enable(1, "n1");
    let out = r.ev(Event::Ping);
    let [id] = publishes(&out).try_into().unwrap();
    let out = r.ev(Event::NotRouted { id: id.clone() });
    assert!(cancelled(&out, &Timer::Response(id.clone())));
    assert_eq!(r.m.pending_publishes(), 0);
}

#[test]
fn a_test_push_hears_each_publish_end_with_its_round_trip() {
    let mut r = Rig::new(config());
    r.enable(1, "n1");
    r.enable(2, "n2");
    let request = r.request();
    let out = r.ev(Event::TestPush {
        request,
        selector: Selector {
            node: None,
            jid: None,
        },
    });
    let targets = match replies(&out).as_slice() {
        [Reply::TestPush(Ok(t))] => t.clone(),
        other => panic!("expected the targets, got {other:?}"),
    };
    assert_eq!(targets.len(), 2);
    let first = targets[0].publish.clone().expect("sent");
    let second = targets[1].publish.clone().expect("sent");
    r.advance(Duration::from_millis(250));
    let out = r.answer(&first, Outcome::Success);
    assert!(out.iter().any(|e| matches!(
        e,
        Effect::Ended { id, outcome: TestOutcome::Success, round_trip: Some(rt) }
            if *id == first && *rt == Duration::from_millis(250)
    )));
    // The other registration goes before it answers.
    let request = r.request();
    r.ev(Event::Remove {
        request,
        selector: Selector {
            node: targets[1].node.clone(),
            jid: None,
        },
    });
    let out = r.ev(Event::Written {
        request,
        result: Ok(()),
    });
    assert!(out.iter().any(|e| matches!(
        e,
        Effect::Ended { id, outcome: TestOutcome::Gone, .. } if *id == second
    )));
}

#[test]
fn unloading_a_deleted_user_ends_its_held_hibernations() {
    let mut r = Rig::new(config());
    r.enable(1, "n1");
    r.hibernate(1, vec![]);
    let out = r.ev(Event::Unload { flush: false });
    assert!(cancelled(&out, &Timer::Hibernation(SessionId(1))));
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::Expire(SessionId(1))))
    );
    // A host that keeps the machine (the user actor, while the sessions end) finds
    // nothing of the account left, and no flush writes any of it back.
    let stats = r.m.stats(r.clock.now);
    assert_eq!((stats.registrations, stats.linked_sessions), (0, 0));
    assert!(r.ev(Event::Unload { flush: true }).is_empty());
}

mod tigase;
