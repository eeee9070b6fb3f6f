//! `PushExecutor`: runs one user's [`PushMachine`] inside an actix actor, the actor that
//! owns that user. It hands the machine the time, executes its effects (timers on the
//! actor's context, store writes, publishes to the host's router, metrics, test-push
//! waiters) and feeds back what comes of them. It is the one executor of effects: the
//! XMPP server's user actor embeds one, and so does this module's own stand-alone host
//! (`UserPush`, for hosts without actors of their own).
//!
//! The owning actor implements [`PushActor`]: where its executor is, and what to do with
//! the one effect only the host can carry out (ending a session the machine held).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use futures::future::{LocalBoxFuture, join_all};
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::deadlines::Deadlines;
use super::interface::{
    AdminPushError, QueuedStanza, RegistrationView, RoutePublish, Selector, SessionId, TestOutcome,
    TestPushResult, TimerOwner,
};
use super::machine::{Clock, Effect, Event, Metric, PushMachine, Reply, RequestId};
use super::protocol::{self, PushCommand};
use crate::config::LiveConfig;
use crate::metrics::Metrics;
use crate::store::{StoreClient, StoreError, Write};

/// An actor that owns one user's push state.
pub trait PushActor: Actor<Context = Context<Self>> {
    fn push(&mut self) -> &mut PushExecutor;

    /// The machine ended a hibernation it held (D14): destroy the session as at a
    /// normal XEP-0198 timeout, unless it was resumed meanwhile.
    fn expire_session(&mut self, session: SessionId, ctx: &mut Context<Self>);

    /// Called after the executor fed an event of its own (a timer, a store answer): the
    /// owner may have become idle.
    fn push_settled(&mut self, _ctx: &mut Context<Self>) {}

    /// Called after the executor ran the effects of an event: what the machine holds
    /// (its registrations) may have changed, for the owner's memory figures.
    fn push_ran(&mut self) {}
}

/// The time for the machine: tokio's (paused in tests) and the wall clock.
fn clock() -> Clock {
    let wall_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    Clock {
        now: tokio::time::Instant::now().into_std(),
        wall_us,
    }
}

type TestWaiter = tokio::sync::oneshot::Sender<(TestOutcome, Option<Duration>)>;

/// What executing one batch of effects left for the caller.
#[derive(Default)]
pub struct Ran {
    pub reply: Option<Reply>,
    /// Publishes handed to the host.
    pub routed: usize,
    /// The write the reply waits for, with the request it is for.
    write: Option<(RequestId, LocalBoxFuture<'static, Result<(), StoreError>>)>,
}

/// What every user's executor reaches, made once and shared (a `Recipient` clone per
/// user would cost an allocation each).
pub struct PushLinks {
    pub store: StoreClient,
    /// Where publishes go (the host's router).
    pub router: Recipient<RoutePublish>,
    pub metrics: Arc<Metrics>,
}

pub struct PushExecutor {
    user: String,
    machine: PushMachine,
    /// Handed to the machine before each event: a host that reloads its configuration
    /// changes it here.
    live: LiveConfig,
    links: Arc<PushLinks>,
    /// The machine's timers, behind one runtime timer for the earliest (`wake`).
    deadlines: Deadlines,
    wake: Option<(std::time::Instant, SpawnHandle)>,
    /// Test pushes waiting for their publishes' ends.
    waiters: HashMap<String, TestWaiter>,
    next_request: u64,
}

impl PushExecutor {
    /// `route` goes into every publish id, so the host can bring an app server's answer
    /// back to this user (see [`publish::route_of`](super::publish::route_of)). `cfg`: an
    /// `Arc<Config>` for a configuration that never changes, or the host's
    /// [`LiveConfig`].
    pub fn new(
        user: String,
        user_jid: BareJid,
        cfg: impl Into<LiveConfig>,
        links: Arc<PushLinks>,
        route: u64,
    ) -> PushExecutor {
        let live = cfg.into();
        PushExecutor {
            machine: PushMachine::new(user.clone(), user_jid, live.get(), route),
            live,
            user,
            links,
            deadlines: Deadlines::default(),
            wake: None,
            waiters: HashMap::new(),
            next_request: 0,
        }
    }

    pub fn machine(&self) -> &PushMachine {
        &self.machine
    }

    /// The machine, with the configuration in force now (SIGHUP may have changed it).
    fn current(&mut self) -> &mut PushMachine {
        self.machine.set_config(self.live.get());
        &mut self.machine
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// Reads the user's registrations into the machine. Call it from the actor's
    /// `started`: `wait` holds every message until they are in memory.
    pub fn load<A: PushActor>(act: &mut A, ctx: &mut Context<A>) {
        let user = act.push().user.clone();
        let load = act
            .push()
            .links
            .store
            .load
            .send(crate::store::LoadRegistrations { user });
        ctx.wait(load.into_actor(act).map(|res, act, ctx| {
            let rows = res
                .map_err(|e| StoreError::Failed(e.to_string()))
                .and_then(|r| r);
            Self::feed(act, Event::Loaded(rows), ctx);
        }));
    }

    /// Feeds one event and executes its effects.
    pub fn feed<A: PushActor>(act: &mut A, event: Event, ctx: &mut Context<A>) -> Ran {
        let effects = act.push().current().handle(clock(), event);
        Self::run(act, effects, ctx)
    }

    fn run<A: PushActor>(act: &mut A, effects: Vec<Effect>, ctx: &mut Context<A>) -> Ran {
        let mut ran = Ran::default();
        let mut unrouted = Vec::new();
        for effect in effects {
            let me = act.push();
            match effect {
                Effect::Publish { to, xml, id } => {
                    let publish = RoutePublish {
                        to,
                        id: id.clone(),
                        xml,
                    };
                    match me.links.router.try_send(publish) {
                        Ok(()) => ran.routed += 1,
                        Err(_) => unrouted.push(id),
                    }
                }
                Effect::Reply { reply, .. } => ran.reply = Some(reply),
                Effect::Arm { timer, at } => {
                    me.deadlines.set(timer, at);
                    Self::rearm(act, ctx);
                }
                // The runtime timer stays; when it fires early, it finds nothing due.
                Effect::Cancel(timer) => me.deadlines.cancel(&timer),
                Effect::Write {
                    changes,
                    durable,
                    request: Some(request),
                } => {
                    let write = me.links.store.write.send(Write { changes, durable });
                    let write = async move {
                        write
                            .await
                            .map_err(|e| StoreError::Failed(e.to_string()))
                            .and_then(|r| r)
                    };
                    ran.write = Some((request, Box::pin(write)));
                }
                Effect::Write {
                    changes,
                    durable,
                    request: None,
                } => Self::write_in_background(act, Write { changes, durable }, ctx),
                Effect::Expire(session) => act.expire_session(session, ctx),
                Effect::Ended {
                    id,
                    outcome,
                    round_trip,
                } => {
                    if let Some(w) = me.waiters.remove(&id) {
                        let _ = w.send((outcome, round_trip));
                    }
                }
                Effect::Metric(Metric::Pending(delta)) => {
                    me.links.metrics.pending_publishes_add(delta)
                }
                Effect::Metric(Metric::PublishEnded {
                    app_server,
                    outcome,
                    latency,
                }) => me
                    .links
                    .metrics
                    .publish_ended(&app_server, outcome, latency),
            }
        }
        for id in unrouted {
            let more = Self::feed(act, Event::NotRouted { id }, ctx);
            ran.routed += more.routed;
        }
        act.push_ran();
        ran
    }

    /// Arms the runtime timer for the earliest deadline, unless it is armed for that
    /// or earlier already.
    fn rearm<A: PushActor>(act: &mut A, ctx: &mut Context<A>) {
        let me = act.push();
        let Some(at) = me.deadlines.earliest() else {
            return;
        };
        if me.wake.as_ref().is_some_and(|(armed, _)| *armed <= at) {
            return;
        }
        if let Some((_, old)) = me.wake.take() {
            ctx.cancel_future(old);
        }
        let after = tokio::time::Instant::from_std(at)
            .saturating_duration_since(tokio::time::Instant::now());
        let handle = ctx.run_later(after, |act: &mut A, ctx| {
            act.push().wake = None;
            let now = tokio::time::Instant::now().into_std();
            let due = act.push().deadlines.take_due(now);
            for timer in due {
                Self::feed(act, Event::TimerFired(timer), ctx);
            }
            Self::rearm(act, ctx);
            act.push_settled(ctx);
        });
        act.push().wake = Some((at, handle));
    }

    /// Ledger updates: a failure is logged and changes no answer already given.
    fn write_in_background<A: PushActor>(act: &mut A, write: Write, ctx: &mut Context<A>) {
        let user = act.push().user.clone();
        let fut = act.push().links.store.write.send(write);
        ctx.spawn(fut.into_actor(act).map(move |res, _, _| {
            if let Err(e) = res
                .map_err(|e| StoreError::Failed(e.to_string()))
                .and_then(|r| r)
            {
                tracing::error!(%user, error = %e, "push ledger write failed");
            }
        }));
    }

    /// Feeds a request; resolves to its reply once any write it waits for is answered.
    /// Run it as an `AtomicResponse`: no other event reaches the machine meanwhile.
    fn request<A: PushActor>(
        act: &mut A,
        make: impl FnOnce(RequestId) -> Event,
        ctx: &mut Context<A>,
    ) -> ResponseActFuture<A, Option<Reply>> {
        let event = make(act.push().request_id());
        let ran = Self::feed(act, event, ctx);
        match ran.write {
            None => Box::pin(fut::ready(ran.reply)),
            Some((request, write)) => {
                Box::pin(write.into_actor(act).map(move |result, act, ctx| {
                    let reply = Self::feed(act, Event::Written { request, result }, ctx).reply;
                    act.push_settled(ctx);
                    reply
                }))
            }
        }
    }

    /// A validated `<enable/>` or `<disable/>` (see [`protocol::parse_push_iq`]) from
    /// `session`, whose full JID is `jid`: answered with the IQ reply once any change it
    /// made is durable. Run it as an `AtomicResponse`, so each enable or disable decides
    /// from the state the previous one left.
    pub fn command<A: PushActor>(
        act: &mut A,
        session: SessionId,
        jid: xmpp_parsers::jid::FullJid,
        iq_id: String,
        command: PushCommand,
        ctx: &mut Context<A>,
    ) -> ResponseActFuture<A, Element> {
        let fallback = protocol::error_reply(
            &iq_id,
            &jid,
            ErrorType::Wait,
            DefinedCondition::InternalServerError,
            None,
        );
        let pending = match command {
            PushCommand::Enable(req) => Self::request(
                act,
                |request| Event::Enable {
                    request,
                    session,
                    jid,
                    iq_id,
                    req,
                },
                ctx,
            ),
            PushCommand::Disable(req) => Self::request(
                act,
                |request| Event::Disable {
                    request,
                    jid,
                    iq_id,
                    req,
                },
                ctx,
            ),
        };
        Box::pin(pending.map(move |reply, _, _| match reply {
            Some(Reply::Iq(iq)) => iq,
            _ => fallback,
        }))
    }

    /// A session with resumption lost its connection; says who ends its hibernation.
    pub fn hibernated<A: PushActor>(
        act: &mut A,
        session: SessionId,
        normal_timeout: Duration,
        queue: Vec<QueuedStanza>,
        ctx: &mut Context<A>,
    ) -> TimerOwner {
        let request = act.push().request_id();
        let ran = Self::feed(
            act,
            Event::Hibernated {
                request,
                session,
                normal_timeout,
                queue,
            },
            ctx,
        );
        match ran.reply {
            Some(Reply::TimerOwner(owner)) => owner,
            _ => TimerOwner::Host,
        }
    }

    /// The admin removes registrations (`push remove`); atomic like an enable.
    pub fn remove<A: PushActor>(
        act: &mut A,
        selector: Selector,
        ctx: &mut Context<A>,
    ) -> ResponseActFuture<A, Result<Vec<RegistrationView>, AdminPushError>> {
        let pending = Self::request(act, |request| Event::Remove { request, selector }, ctx);
        Box::pin(pending.map(|reply, _, _| match reply {
            Some(Reply::Removed(r)) => r,
            _ => Err(AdminPushError::Busy),
        }))
    }

    /// A test push (`push test`): resolves once every publish it sent has ended.
    pub fn test_push<A: PushActor>(
        act: &mut A,
        selector: Selector,
        ctx: &mut Context<A>,
    ) -> LocalBoxFuture<'static, Result<Vec<TestPushResult>, AdminPushError>> {
        let request = act.push().request_id();
        let reply = Self::feed(act, Event::TestPush { request, selector }, ctx).reply;
        let targets = match reply {
            Some(Reply::TestPush(Ok(targets))) => targets,
            Some(Reply::TestPush(Err(e))) => return Box::pin(async move { Err(e) }),
            _ => return Box::pin(async { Err(AdminPushError::Busy) }),
        };
        let me = act.push();
        let mut waits = Vec::with_capacity(targets.len());
        for t in &targets {
            let (tx, rx) = tokio::sync::oneshot::channel();
            match t.publish.as_deref().filter(|id| me.machine.is_pending(id)) {
                Some(id) => {
                    me.waiters.insert(id.to_string(), tx);
                }
                None => {
                    let _ = tx.send((TestOutcome::NotSent, None));
                }
            }
            waits.push(rx);
        }
        Box::pin(async move {
            let answers = join_all(waits).await;
            Ok(targets
                .into_iter()
                .zip(answers)
                .map(|(t, answer)| {
                    let (outcome, rtt) = answer.unwrap_or((TestOutcome::Gone, None));
                    TestPushResult {
                        jid: t.jid,
                        node: t.node,
                        client: t.client,
                        outcome,
                        round_trip_us: rtt.map(|d| d.as_micros() as u64),
                    }
                })
                .collect())
        })
    }

    /// Writes what the machine holds that the store lacks (the health ledger), or, with
    /// `flush` false (the account is deleted), ends the hibernations it holds instead.
    /// The writes are queued at the store before this returns, so a store `Close` sent
    /// afterwards commits them.
    pub fn unload<A: PushActor>(act: &mut A, flush: bool, ctx: &mut Context<A>) {
        let effects = act
            .push()
            .current()
            .handle(clock(), Event::Unload { flush });
        let (writes, rest): (Vec<Effect>, Vec<Effect>) = effects
            .into_iter()
            .partition(|e| matches!(e, Effect::Write { .. }));
        Self::run(act, rest, ctx);
        for w in writes {
            if let Effect::Write {
                changes, durable, ..
            } = w
            {
                // `do_send`: it must be queued at the store now, not in a future that
                // dies with the actor.
                act.push()
                    .links
                    .store
                    .write
                    .do_send(Write { changes, durable });
            }
        }
    }

    /// Writes the health ledger's changes the store lacks, queued at the store before
    /// this returns (like [`unload`](Self::unload) with `flush`, which has no other
    /// effect, so no actor context is needed). The machine stays as it is.
    pub fn flush_ledger(&mut self) {
        for effect in self
            .current()
            .handle(clock(), Event::Unload { flush: true })
        {
            if let Effect::Write {
                changes, durable, ..
            } = effect
            {
                self.links.store.write.do_send(Write { changes, durable });
            }
        }
    }

    /// The owner stops: publishes still awaited are forgotten with it (a waiting test
    /// push hears `Gone`).
    pub fn stopped(&mut self) {
        self.links
            .metrics
            .pending_publishes_add(-(self.machine.pending_publishes() as i64));
    }
}
