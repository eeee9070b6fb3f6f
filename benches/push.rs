//! Micro benchmarks of the push module: the pure decisions on the hot path, and enables
//! through the actors and the store (where the fsync, and group commit, show).
//!
//! Run: `cargo bench --bench push`

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;

use cloud_notify::config::{Config, NotifyOn};
use cloud_notify::push::publish::{self as wire, Summary};
use cloud_notify::push::registration::Registration;
use cloud_notify::push::rules::{self, Path};
use cloud_notify::push::{
    self, PushHub, PushRequest, RoutePublish, Session, SessionControl, SessionId,
};
use cloud_notify::store::{self, RegistrationRecord, Store};

const CHAT: &str = "<message xmlns='jabber:client' type='chat' from='romeo@example.org/desk' to='juliet@example.com' id='m1'><body>Wherefore art thou?</body><active xmlns='http://jabber.org/protocol/chatstates'/><request xmlns='urn:xmpp:receipts'/></message>";
const CARBON: &str = "<message xmlns='jabber:client' from='juliet@example.com' to='juliet@example.com/phone'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat' from='romeo@example.org/desk'><encrypted xmlns='eu.siacs.conversations.axolotl'><payload>AAAA</payload></encrypted></message></forwarded></received></message>";
const OPTIONS: &str = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>eruio234vzxc2kla-91</value></field></x>";

fn classify(c: &mut Criterion) {
    let chat: Element = CHAT.parse().unwrap();
    let carbon: Element = CARBON.parse().unwrap();
    c.bench_function("classify/chat", |b| {
        b.iter(|| {
            let s = black_box(&chat);
            (
                rules::wakes(s, Path::Smacks, NotifyOn::All),
                rules::is_important(s),
            )
        })
    });
    c.bench_function("classify/carbon_omemo", |b| {
        b.iter(|| {
            let s = black_box(&carbon);
            (
                rules::wakes(s, Path::Smacks, NotifyOn::All),
                rules::is_important(s),
            )
        })
    });
}

fn build_publish(c: &mut Criterion) {
    let reg = Registration::from_record(
        "push-5.client.example<yxs32uqsflafdk3iuqo".into(),
        RegistrationRecord {
            jid: "push-5.client.example".into(),
            node: Some("yxs32uqsflafdk3iuqo".into()),
            publish_options: Some(OPTIONS.into()),
            enabled_at_us: 1,
            client: "phone".into(),
            language: None,
            error_count: 0,
            last_success: None,
            last_error: None,
            last_timeout: None,
            extensions: None,
            last_s2s_failure: None,
        },
    )
    .unwrap();
    let cfg = Config::default();
    let chat: Element = CHAT.parse().unwrap();
    c.bench_function("publish/build_and_serialize", |b| {
        b.iter(|| {
            let summary = Summary::of(Some(black_box(&chat)), true, &cfg);
            let id = wire::new_publish_id(42);
            wire::publish_xml("example.com", &reg, &summary, &id)
        })
    });
}

/// Swallows publishes and session instructions.
struct Sink;
impl Actor for Sink {
    type Context = Context<Self>;
}
impl Handler<RoutePublish> for Sink {
    type Result = ();
    fn handle(&mut self, _: RoutePublish, _: &mut Context<Self>) {}
}
impl Handler<SessionControl> for Sink {
    type Result = ();
    fn handle(&mut self, _: SessionControl, _: &mut Context<Self>) {}
}

struct Module {
    hub: Addr<PushHub>,
    store: Addr<Store>,
    sink: Addr<Sink>,
    _dir: tempfile::TempDir,
}

async fn module() -> Module {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        domain: "example.com".into(),
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let db = store::open_database(&cfg.data_dir, cfg.store_cache_size).unwrap();
    let store = Store::start(db, cfg.store_max_pending);
    let sink = Sink.start();
    let hub = push::start(
        Arc::new(cfg),
        Store::client(&store),
        sink.clone().recipient(),
    );
    Module {
        hub,
        store,
        sink,
        _dir: dir,
    }
}

fn enable_request(m: &Module, user: usize, node: usize) -> PushRequest {
    let jid: FullJid = format!("user{user}@example.com/phone").parse().unwrap();
    let iq = format!(
        "<iq xmlns='jabber:client' type='set' id='e{node}'><enable xmlns='urn:xmpp:push:0' jid='push.example.net' node='n{node}'>{OPTIONS}</enable></iq>"
    );
    PushRequest {
        session: Session {
            id: SessionId(user as u64),
            jid,
            control: m.sink.clone().recipient(),
        },
        iq: iq.parse().unwrap(),
    }
}

fn enables(c: &mut Criterion) {
    let sys = System::new();
    let m = sys.block_on(module());
    // Load the user once so the round trip measures the enable, not the first read.
    sys.block_on(m.hub.send(enable_request(&m, 0, 0))).unwrap();

    let mut g = c.benchmark_group("enable");
    g.sample_size(30).measurement_time(Duration::from_secs(8));
    g.bench_function("one_round_trip_durable", |b| {
        b.iter(|| sys.block_on(m.hub.send(enable_request(&m, 0, 1))).unwrap())
    });

    // 100 users enabling at once: group commit turns 100 fsyncs into a few.
    let mut round = 0usize;
    g.bench_function("100_concurrent_users", |b| {
        b.iter_batched(
            || {
                round += 1;
                (0..100)
                    .map(|u| enable_request(&m, 1000 + u, round))
                    .collect::<Vec<_>>()
            },
            |reqs| {
                sys.block_on(async {
                    let pending: Vec<_> = reqs.into_iter().map(|r| m.hub.send(r)).collect();
                    for p in pending {
                        p.await.unwrap();
                    }
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("100_sequential_users", |b| {
        b.iter_batched(
            || {
                round += 1;
                (0..100)
                    .map(|u| enable_request(&m, 1000 + u, round))
                    .collect::<Vec<_>>()
            },
            |reqs| {
                sys.block_on(async {
                    for r in reqs {
                        m.hub.send(r).await.unwrap();
                    }
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    // How many commits 100 concurrent enables of fresh users cost (load + write each).
    let before = sys.block_on(m.store.send(store::Probe)).unwrap().batches;
    let start = Instant::now();
    sys.block_on(async {
        let pending: Vec<_> = (0..100)
            .map(|u| m.hub.send(enable_request(&m, 5000 + u, 1)))
            .collect();
        for p in pending {
            p.await.unwrap();
        }
    });
    let elapsed = start.elapsed();
    let after = sys.block_on(m.store.send(store::Probe)).unwrap().batches;
    println!(
        "group commit: 100 concurrent enables of new users (200 store requests) took {} commits in {elapsed:?}",
        after - before
    );
}

/// PLAIN costs the same for a known and an unknown user (one PBKDF2 each, at the
/// configured 10,000 iterations), so a failed login does not tell who exists.
fn plain_login(c: &mut Criterion) {
    use cloud_notify::credentials::Hash;
    use cloud_notify::store::Account;
    use cloud_notify::xmpp::sasl::plain_credential;
    let iterations = Config::default().scram_iterations;
    let account = Account::from_password("juliet-pw", iterations).unwrap();
    let secret = [7u8; 32];
    c.bench_function("plain/known_user_wrong_password", |b| {
        b.iter(|| {
            plain_credential(Some(&account), "juliet", iterations, &secret)
                .verify_password(Hash::Sha256, black_box("nope"))
        })
    });
    c.bench_function("plain/unknown_user", |b| {
        b.iter(|| {
            plain_credential(None, "nobody", iterations, &secret)
                .verify_password(Hash::Sha256, black_box("nope"))
        })
    });
}

criterion_group!(benches, classify, build_publish, enables, plain_login);
criterion_main!(benches);
