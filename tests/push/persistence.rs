//! B70–B73 and D4, D6, D7: what survives a restart, what a failing disk does, and the
//! store's own promises (durable before answered, group commit, schema version).

use crate::harness::*;
use cloud_notify::config::Config;
use cloud_notify::push::{DeleteUser, TimerOwner};
use cloud_notify::store::{self, Change, RegistrationRecord, Store, StoreError, Write, schema};

#[actix_rt::test]
async fn b70_registration_survives_restart() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    assert_result(&h.enable(&s, Some("n1"), Some(&form("kept"))).await);
    let mut h = h.restart(config()).await;
    h.offline(&chat("hi"));
    let ps = h.settled_publishes().await;
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].node.as_deref(), Some("n1"));
    assert_eq!(ps[0].options, Some(form("kept").parse().unwrap()));
}

#[actix_rt::test]
async fn b71_re_enable_relinks_and_unenabled_sessions_get_nothing() {
    let mut h = Harness::start(config()).await;
    let mut phone = h.session("phone");
    h.enable_ok(&phone, "n1").await;
    h.enable_ok(&phone, "n2").await;
    h.hibernate(&mut phone, &[&chat("a")]).await;
    assert_eq!(
        nodes(&h.settled_publishes().await),
        ["n2"],
        "linked to the last enable"
    );
    h.resume(&phone);
    // A newly bound session that never sent <enable/>.
    let mut fresh = h.session("laptop");
    assert_eq!(
        h.hibernate(&mut fresh, &[&chat("b")]).await,
        TimerOwner::Host
    );
    assert!(h.settled_publishes().await.is_empty());
}

#[actix_rt::test]
async fn b72_each_registration_gets_its_own_to_node_and_options() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    assert_result(
        &h.enable_at(&s, "push.example.net", Some("n1"), Some(&form("s1")))
            .await,
    );
    assert_result(
        &h.enable_at(&s, "push.other.org", Some("n2"), Some(&form("s2")))
            .await,
    );
    h.close(&s);
    h.offline(&chat("hi"));
    let mut ps = h.settled_publishes().await;
    ps.sort_by(|a, b| a.to.cmp(&b.to));
    let got: Vec<_> = ps
        .iter()
        .map(|p| (p.to.as_str(), p.node.as_deref(), p.options.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "push.example.net",
                Some("n1"),
                Some(form("s1").parse().unwrap())
            ),
            (
                "push.other.org",
                Some("n2"),
                Some(form("s2").parse().unwrap())
            ),
        ]
    );
}

#[actix_rt::test]
async fn b73_ping_publishes_once_per_registration_without_sender_or_body() {
    let mut h = Harness::start(Config {
        push_notification_with_body: true,
        push_notification_with_sender: true,
        ..config()
    })
    .await;
    let s = h.session("phone");
    h.enable_ok(&s, "n1").await;
    h.enable_ok(&s, "n2").await;
    assert_eq!(h.ping().await, 2);
    let ps = h.settled_publishes().await;
    assert_eq!(nodes(&ps), ["n1", "n2"]);
    for p in ps {
        assert_eq!(p.field("message-count").as_deref(), Some("1"));
        assert_eq!((p.sender(), p.body()), (None, None));
    }
}

/// D4: the registration enabled longest ago is evicted, the same after a restart.
#[actix_rt::test]
async fn d4_eviction_order_survives_restart() {
    let two = || Config {
        push_max_devices: 2,
        ..config()
    };
    let mut h = Harness::start(two()).await;
    let s = h.session("phone");
    for n in ["n2", "n1"] {
        h.enable_ok(&s, n).await;
    }
    let mut h = h.restart(two()).await;
    let s = h.session("phone");
    h.enable_ok(&s, "n3").await;
    h.offline(&chat("hi"));
    assert_eq!(
        nodes(&h.settled_publishes().await),
        ["n1", "n3"],
        "n2 was the oldest"
    );
}

/// D4: when the limit is lowered, the newest registrations are kept and the others are
/// removed from disk too.
#[actix_rt::test]
async fn d4_lowered_limit_keeps_the_newest() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    for n in ["n1", "n2", "n3"] {
        h.enable_ok(&s, n).await;
    }
    let two = Config {
        push_max_devices: 2,
        ..config()
    };
    let mut h = h.restart(two.clone()).await;
    h.offline(&chat("hi"));
    assert_eq!(nodes(&h.settled_publishes().await), ["n2", "n3"]);
    let h = h.restart(two).await;
    assert_eq!(h.probe.committed_registrations(USER).unwrap().len(), 2);
}

/// D6: a failed read answers wait/internal-server-error and overwrites nothing.
#[actix_rt::test]
async fn d6_failed_read_is_an_error_and_overwrites_nothing() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    h.enable_ok(&s, "n1").await;
    let mut h = h.restart(config()).await;
    h.probe.faults.set_fail_reads(true);
    let s = h.session("phone");
    let r = h.enable(&s, Some("n2"), None).await;
    assert_error(&r, "wait", "internal-server-error", None);
    h.probe.faults.set_fail_reads(false);
    h.offline(&chat("hi"));
    assert_eq!(
        nodes(&h.settled_publishes().await),
        ["n1"],
        "n1 kept, n2 never written"
    );
}

/// A failed write (a full disk) answers wait/internal-server-error and changes nothing.
#[actix_rt::test]
async fn failed_write_is_an_error_and_changes_nothing() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    h.enable_ok(&s, "n1").await;
    h.probe.faults.set_fail_writes(true);
    let r = h.enable(&s, Some("n2"), None).await;
    assert_error(&r, "wait", "internal-server-error", None);
    let r = h.disable(&s, APP, Some("n1")).await;
    assert_error(&r, "wait", "internal-server-error", None);
    h.probe.faults.set_fail_writes(false);
    h.offline(&chat("hi"));
    assert_eq!(nodes(&h.settled_publishes().await), ["n1"]);
}

/// Nothing is answered before it is durable: when the enable's result arrives, a read
/// transaction (which sees only committed data; commits are fsynced) already has it.
#[actix_rt::test]
async fn reply_only_after_the_write_is_durable() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    for n in ["n1", "n2", "n3"] {
        h.enable_ok(&s, n).await;
        let stored = h.probe.committed_registrations(USER).unwrap();
        assert!(
            stored.iter().any(|(id, _)| id.ends_with(&format!("<{n}"))),
            "{n} committed before the reply"
        );
    }
    assert_result(&h.disable(&s, APP, Some("n2")).await);
    assert_eq!(h.probe.committed_registrations(USER).unwrap().len(), 2);
}

/// D7: deleting the account deletes its registrations.
#[actix_rt::test]
async fn d7_deleting_the_account_deletes_registrations() {
    let mut h = Harness::start(config()).await;
    let s = h.session("phone");
    h.enable_ok(&s, "n1").await;
    let romeo = h.session_of("romeo", "phone");
    h.enable_ok(&romeo, "r1").await;
    h.hub
        .send(DeleteUser { user: USER.into() })
        .await
        .unwrap()
        .unwrap();
    assert!(h.probe.committed_registrations(USER).unwrap().is_empty());
    assert_eq!(h.probe.committed_registrations("romeo").unwrap().len(), 1);
    h.offline(&chat("hi"));
    assert!(h.settled_publishes().await.is_empty());
}

#[actix_rt::test]
async fn idle_users_unload_and_reload_from_the_store() {
    let mut h = Harness::start(Config {
        push_user_idle_time: std::time::Duration::from_millis(100),
        ..config()
    })
    .await;
    let s = h.session("phone");
    h.enable_ok(&s, "n1").await;
    h.close(&s);
    h.offline(&chat("hi"));
    assert_eq!(h.settled_publishes().await.len(), 1);
    h.wait_unloaded().await;
    assert_eq!(h.user_stats().await, None);
    h.offline(&chat("again"));
    assert_eq!(nodes(&h.settled_publishes().await), ["n1"]);
}

// ------------------------------------------------------------------ the store itself

fn record(node: &str) -> RegistrationRecord {
    RegistrationRecord {
        jid: APP.into(),
        node: Some(node.into()),
        publish_options: None,
        enabled_at_us: 1,
        client: "phone".into(),
        language: None,
        error_count: 0,
        last_success: None,
        last_error: None,
        last_timeout: None,
        extensions: None,
        last_s2s_failure: None,
    }
}

fn put(user: &str, node: &str) -> Write {
    Write {
        changes: vec![Change::PutRegistration {
            user: user.into(),
            identifier: format!("{APP}<{node}"),
            record: record(node),
        }],
        durable: true,
    }
}

/// Writes that arrive while a commit runs share the next one.
#[actix_rt::test]
async fn group_commit_shares_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let db = store::open_database(dir.path(), 1 << 20).unwrap();
    let store = Store::start(db, 1000);
    let writes: Vec<_> = (0..100)
        .map(|i| store.send(put(&format!("u{i}"), "n1")))
        .collect();
    for w in writes {
        w.await.unwrap().unwrap();
    }
    let probe = store.send(store::Probe).await.unwrap();
    assert!(
        probe.batches < 100,
        "100 writes took {} commits",
        probe.batches
    );
    for i in 0..100 {
        assert_eq!(
            probe
                .committed_registrations(&format!("u{i}"))
                .unwrap()
                .len(),
            1
        );
    }
}

/// Past store_max_pending, requests fail at once with Busy instead of queueing.
#[actix_rt::test]
async fn store_queue_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = store::open_database(dir.path(), 1 << 20).unwrap();
    let store = Store::start(db, 1);
    let writes: Vec<_> = (0..3)
        .map(|i| store.send(put(&format!("u{i}"), "n1")))
        .collect();
    let mut results = Vec::new();
    for w in writes {
        results.push(w.await.unwrap());
    }
    assert!(results[0].is_ok(), "the first runs");
    assert!(results[1].is_ok(), "the second waits");
    assert_eq!(results[2], Err(StoreError::Busy), "the third is refused");
}

/// A data file from a newer version is refused with a clear message.
#[actix_rt::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = store::open_database(dir.path(), 1 << 20).unwrap();
    schema::force_version(&db, schema::SCHEMA_VERSION + 1).unwrap();
    drop(db);
    let Err(err) = store::open_database(dir.path(), 1 << 20) else {
        panic!("a newer file must be refused");
    };
    let msg = err.to_string();
    assert!(msg.contains("newer cloud-notify"), "{msg}");
}

/// After a close the file is released and reopens with its data.
#[actix_rt::test]
async fn close_flushes_and_releases_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = store::open_database(dir.path(), 1 << 20).unwrap();
    let store = Store::start(db, 16);
    let mut w = put("u", "n1");
    w.durable = false;
    // Not awaited: the close must still commit it first.
    let pending = store.send(w);
    store.send(store::Close).await.unwrap();
    pending.await.unwrap().unwrap();
    let db = store::open_database(dir.path(), 1 << 20).expect("reopened after close");
    let store = Store::start(db, 16);
    let rows = store
        .send(store::LoadRegistrations { user: "u".into() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rows.len(),
        1,
        "a non-durable write made durable by the close"
    );
}

/// D23: the queued copies of a hibernated session's messages, through the store: put,
/// released by an acknowledgement, moved to offline storage in the same commit that
/// stores (or refuses) each, and deleted with their account (D7).
#[actix_rt::test]
async fn queued_copies_are_put_released_moved_and_deleted() {
    use redb::{ReadableDatabase, ReadableTable};
    let dir = tempfile::tempdir().unwrap();
    let db = store::open_database(dir.path(), 1 << 20).unwrap();
    for u in ["juliet", "romeo"] {
        store::admin::add_user(&db, u, "pw", 4096).unwrap();
    }
    let store = Store::start(db, 64);
    let put = |user: &str, session: &str, seq: u64| Change::PutQueued {
        user: user.into(),
        session: session.into(),
        seq,
        stanza: format!("<message id='{user}{seq}'/>"),
    };
    let write = |changes, durable| Write { changes, durable };
    let changes = (1..=6).map(|seq| put("juliet", "s1", seq)).collect();
    store.send(write(changes, true)).await.unwrap().unwrap();
    let changes = vec![put("juliet", "s2", 1), put("romeo", "s3", 1)];
    store.send(write(changes, true)).await.unwrap().unwrap();
    // Acknowledged up to 2.
    let release = Change::DeleteQueued {
        user: "juliet".into(),
        session: "s1".into(),
        up_to: 2,
    };
    store
        .send(write(vec![release], false))
        .await
        .unwrap()
        .unwrap();
    // 3 is stored offline, 4 refused (full): both leave the queue.
    let offline = |seq, max| store::PushOffline {
        user: "juliet".into(),
        stanza: format!("<message id='juliet{seq}'/>"),
        max,
        max_bytes: 1 << 20,
        release: Some(store::QueuedKey {
            session: "s1".into(),
            seq,
        }),
    };
    assert_eq!(store.send(offline(3, 10)).await.unwrap(), Ok(1));
    assert_eq!(
        store.send(offline(4, 1)).await.unwrap(),
        Err(StoreError::Full)
    );
    store.send(store::Close).await.unwrap();
    let keys = |dir: &std::path::Path| {
        let db = store::open_database(dir, 1 << 20).unwrap();
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(schema::SM_QUEUE).unwrap();
        t.iter()
            .unwrap()
            .map(|e| {
                let (k, _) = e.unwrap();
                let (u, s, q) = k.value();
                format!("{u}/{s}/{q}")
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(dir.path()),
        ["juliet/s1/5", "juliet/s1/6", "juliet/s2/1", "romeo/s3/1"]
    );
    let db = store::open_database(dir.path(), 1 << 20).unwrap();
    let store = Store::start(db, 64);
    let delete = Change::DeleteUser {
        user: "juliet".into(),
    };
    store
        .send(write(vec![delete], true))
        .await
        .unwrap()
        .unwrap();
    store.send(store::Close).await.unwrap();
    assert_eq!(keys(dir.path()), ["romeo/s3/1"]);
    // And the command line's way (no server running).
    let db = store::open_database(dir.path(), 1 << 20).unwrap();
    store::admin::delete_user(&db, "romeo").unwrap();
    drop(db);
    assert!(keys(dir.path()).is_empty());
}
