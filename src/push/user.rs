//! `UserPush`: one actor per user with push state in memory. It hosts the user's
//! [`PushMachine`], which makes every decision: the actor turns messages into events,
//! hands it the time, and executes the effects (timers, store writes, publishes,
//! instructions to sessions). It stops when idle; everything that must survive is in the
//! store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use futures::future::LocalBoxFuture;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::interface::*;
use super::machine::{Clock, Effect, Event, Metric, PushMachine, Reply, RequestId, Timer};
use super::messages::{Command, RoutedResponse, Stop, UserGone, UserIdle};
use super::protocol::{self, PushCommand};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{StoreClient, StoreError, Write};

mod admin;

/// Mailbox room; the hub refuses (and logs) events past it rather than queue without end.
pub const MAILBOX: usize = 256;

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

/// What executing one batch of effects left for the handler.
#[derive(Default)]
struct Ran {
    reply: Option<Reply>,
    /// Publishes handed to the host.
    routed: usize,
    /// The write the reply waits for, with the request it is for.
    write: Option<(RequestId, LocalBoxFuture<'static, Result<(), StoreError>>)>,
}

/// Where the actor reports to its hub.
pub(super) struct HubLink {
    pub idle: Recipient<UserIdle>,
    pub gone: Recipient<UserGone>,
    pub route: u64,
}

pub struct UserPush {
    user: String,
    cfg: Arc<Config>,
    store: StoreClient,
    router: Recipient<RoutePublish>,
    hub: HubLink,
    metrics: Arc<Metrics>,
    machine: PushMachine,
    /// Where each linked session's instructions go.
    controls: HashMap<SessionId, Recipient<SessionControl>>,
    timers: HashMap<Timer, SpawnHandle>,
    /// Test pushes waiting for their publishes' ends.
    waiters: HashMap<String, TestWaiter>,
    next_request: u64,
    /// Messages handled, compared with the hub's count before unloading.
    handled: u64,
    idle_timer: Option<SpawnHandle>,
    span: tracing::Span,
}

impl UserPush {
    pub(super) fn new(
        user: String,
        user_jid: BareJid,
        cfg: Arc<Config>,
        store: StoreClient,
        router: Recipient<RoutePublish>,
        hub: HubLink,
        metrics: Arc<Metrics>,
    ) -> Self {
        let span = tracing::info_span!("push_user", user = %user_jid);
        let machine = PushMachine::new(user.clone(), user_jid, cfg.clone(), hub.route);
        UserPush {
            user,
            cfg,
            store,
            router,
            hub,
            metrics,
            machine,
            controls: HashMap::new(),
            timers: HashMap::new(),
            waiters: HashMap::new(),
            next_request: 0,
            handled: 0,
            idle_timer: None,
            span,
        }
    }

    /// Every handled message goes through here: counts it and restarts the idle clock.
    /// Returns the user's span, entered, for the rest of the handler.
    fn touch(&mut self, ctx: &mut Context<Self>) -> tracing::span::EnteredSpan {
        self.handled += 1;
        if let Some(h) = self.idle_timer.take() {
            ctx.cancel_future(h);
        }
        self.arm_idle_check(ctx);
        self.span.clone().entered()
    }

    fn arm_idle_check(&mut self, ctx: &mut Context<Self>) {
        self.idle_timer =
            Some(ctx.run_later(self.cfg.push_user_idle_time, |act, ctx| act.idle_check(ctx)));
    }

    fn idle_check(&mut self, ctx: &mut Context<Self>) {
        self.idle_timer = None;
        if self.machine.is_idle() {
            self.hub.idle.do_send(UserIdle {
                user: self.user.clone(),
                route: self.hub.route,
                handled: self.handled,
            });
        } else {
            self.arm_idle_check(ctx);
        }
    }

    /// Feeds one event and executes its effects.
    fn feed(&mut self, event: Event, ctx: &mut Context<Self>) -> Ran {
        let effects = self.machine.handle(clock(), event);
        self.run(effects, ctx)
    }

    fn run(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) -> Ran {
        let mut ran = Ran::default();
        let mut unrouted = Vec::new();
        for effect in effects {
            match effect {
                Effect::Publish { to, xml, id } => {
                    match self.router.try_send(RoutePublish { to, xml }) {
                        Ok(()) => ran.routed += 1,
                        Err(_) => unrouted.push(id),
                    }
                }
                Effect::Reply { reply, .. } => ran.reply = Some(reply),
                Effect::Arm { timer, at } => self.arm(timer, at, ctx),
                Effect::Cancel(timer) => {
                    if let Some(h) = self.timers.remove(&timer) {
                        ctx.cancel_future(h);
                    }
                }
                Effect::Write {
                    changes,
                    durable,
                    request: Some(request),
                } => {
                    let write = self.store.write.send(Write { changes, durable });
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
                } => self.write_in_background(Write { changes, durable }, ctx),
                Effect::Expire(session) => {
                    if let Some(control) = self.controls.get(&session) {
                        // Never dropped: the host handed its timer over and waits for this.
                        control.do_send(SessionControl {
                            session,
                            action: SessionAction::Expire,
                        });
                    }
                }
                Effect::Ended {
                    id,
                    outcome,
                    round_trip,
                } => {
                    if let Some(w) = self.waiters.remove(&id) {
                        let _ = w.send((outcome, round_trip));
                    }
                }
                Effect::Metric(Metric::Pending(delta)) => self.metrics.pending_publishes_add(delta),
                Effect::Metric(Metric::PublishEnded {
                    app_server,
                    outcome,
                    latency,
                }) => self.metrics.publish_ended(&app_server, outcome, latency),
            }
        }
        for id in unrouted {
            let more = self.feed(Event::NotRouted { id }, ctx);
            ran.routed += more.routed;
        }
        ran
    }

    /// (Re)arms a machine timer; the one armed before under the same name never fires.
    fn arm(&mut self, timer: Timer, at: std::time::Instant, ctx: &mut Context<Self>) {
        let after = tokio::time::Instant::from_std(at)
            .saturating_duration_since(tokio::time::Instant::now());
        let name = timer.clone();
        let handle = ctx.run_later(after, move |act, ctx| {
            act.timers.remove(&name);
            let _span = act.span.clone().entered();
            act.feed(Event::TimerFired(name), ctx);
        });
        if let Some(old) = self.timers.insert(timer, handle) {
            ctx.cancel_future(old);
        }
    }

    /// Ledger updates: a failure is logged and changes no answer already given.
    fn write_in_background(&mut self, write: Write, ctx: &mut Context<Self>) {
        let user = self.user.clone();
        let fut = self.store.write.send(write);
        ctx.spawn(fut.into_actor(self).map(move |res, _, _| {
            if let Err(e) = res
                .map_err(|e| StoreError::Failed(e.to_string()))
                .and_then(|r| r)
            {
                tracing::error!(%user, error = %e, "push ledger write failed");
            }
        }));
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// Feeds a request; resolves to its reply once any write it waits for is answered.
    /// Run it as an `AtomicResponse`: no other event reaches the machine meanwhile.
    fn request(
        &mut self,
        make: impl FnOnce(RequestId) -> Event,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Option<Reply>> {
        let event = make(self.request_id());
        let ran = self.feed(event, ctx);
        match ran.write {
            None => Box::pin(fut::ready(ran.reply)),
            Some((request, write)) => {
                Box::pin(write.into_actor(self).map(move |result, act, ctx| {
                    let _span = act.span.clone().entered();
                    act.feed(Event::Written { request, result }, ctx).reply
                }))
            }
        }
    }
}

impl Actor for UserPush {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        let load = self.store.load.send(crate::store::LoadRegistrations {
            user: self.user.clone(),
        });
        // `wait` holds every message until the registrations are in memory.
        ctx.wait(load.into_actor(self).map(|res, act, ctx| {
            let rows = res
                .map_err(|e| StoreError::Failed(e.to_string()))
                .and_then(|r| r);
            let _span = act.span.clone().entered();
            act.feed(Event::Loaded(rows), ctx);
        }));
        self.arm_idle_check(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Publishes still awaited are forgotten with the actor (a waiting test push
        // hears `Gone`).
        self.metrics
            .pending_publishes_add(-(self.machine.pending_publishes() as i64));
        self.hub.gone.do_send(UserGone {
            user: self.user.clone(),
            route: self.hub.route,
        });
    }
}

impl Handler<Command> for UserPush {
    type Result = AtomicResponse<Self, Element>;

    fn handle(&mut self, msg: Command, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        if self.machine.load_failed() {
            // Retry the read on the next request: this actor goes, a new one loads again.
            ctx.stop();
        }
        let Session { id, jid, control } = msg.session;
        let iq_id = msg.id;
        let fallback = protocol::error_reply(
            &iq_id,
            &jid,
            ErrorType::Wait,
            DefinedCondition::InternalServerError,
            None,
        );
        let pending = match msg.command {
            PushCommand::Enable(req) => self.request(
                |request| Event::Enable {
                    request,
                    session: id,
                    jid,
                    iq_id,
                    req,
                },
                ctx,
            ),
            PushCommand::Disable(req) => self.request(
                |request| Event::Disable {
                    request,
                    jid,
                    iq_id,
                    req,
                },
                ctx,
            ),
        };
        // Atomic: no other message runs until the write is answered, so each enable or
        // disable computes its changes from the state the previous one left.
        AtomicResponse::new(Box::pin(pending.map(move |reply, act, _| {
            if act.machine.has_link(id) {
                act.controls.insert(id, control);
            }
            match reply {
                Some(Reply::Iq(iq)) => iq,
                _ => fallback,
            }
        })))
    }
}

impl Handler<Stop> for UserPush {
    type Result = ();

    fn handle(&mut self, msg: Stop, ctx: &mut Context<Self>) {
        let effects = self
            .machine
            .handle(clock(), Event::Unload { flush: msg.flush });
        let (writes, rest): (Vec<Effect>, Vec<Effect>) = effects
            .into_iter()
            .partition(|e| matches!(e, Effect::Write { .. }));
        self.run(rest, ctx);
        for w in writes {
            if let Effect::Write {
                changes, durable, ..
            } = w
            {
                // `do_send`: one message per unloading user, and it must be queued at the
                // store before the stop is answered, not in a future that dies with us.
                self.store.write.do_send(Write { changes, durable });
            }
        }
        ctx.stop();
    }
}

macro_rules! event_handler {
    ($msg:ty, |$m:ident| $event:expr) => {
        impl Handler<$msg> for UserPush {
            type Result = ();
            fn handle(&mut self, $m: $msg, ctx: &mut Context<Self>) {
                let _span = self.touch(ctx);
                self.feed($event, ctx);
            }
        }
    };
}

event_handler!(StanzaQueued, |m| Event::StanzaQueued(m.stanza));
event_handler!(AckOverdue, |m| Event::AckOverdue {
    session: m.session,
    queue: m.queue,
});
event_handler!(SessionResumed, |m| Event::Resumed {
    session: m.session,
    acked: m.acked,
});
event_handler!(OfflineMessage, |m| Event::Offline {
    stanza: m.stanza,
    key: m.key,
});
event_handler!(MessageArchived, |m| Event::Archived {
    stanza: m.stanza,
    user_has_sessions: m.user_has_sessions,
});
event_handler!(RoutedResponse, |m| Event::Response(m.0));

impl Handler<SessionClosed> for UserPush {
    type Result = ();

    fn handle(&mut self, m: SessionClosed, ctx: &mut Context<Self>) {
        let _span = self.touch(ctx);
        self.feed(Event::Closed { session: m.session }, ctx);
        self.controls.remove(&m.session);
    }
}

impl Handler<Barrier> for UserPush {
    type Result = ();

    fn handle(&mut self, _: Barrier, ctx: &mut Context<Self>) {
        let _span = self.touch(ctx);
    }
}

impl Handler<SessionHibernated> for UserPush {
    type Result = MessageResult<SessionHibernated>;

    fn handle(&mut self, msg: SessionHibernated, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        let request = self.request_id();
        let ran = self.feed(
            Event::Hibernated {
                request,
                session: msg.session,
                normal_timeout: msg.normal_timeout,
                queue: msg.queue,
            },
            ctx,
        );
        MessageResult(match ran.reply {
            Some(Reply::TimerOwner(owner)) => owner,
            _ => TimerOwner::Host,
        })
    }
}

impl Handler<GetUserStats> for UserPush {
    type Result = Option<UserStats>;

    fn handle(&mut self, _: GetUserStats, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        Some(self.machine.stats(tokio::time::Instant::now().into_std()))
    }
}

impl Handler<PingUser> for UserPush {
    type Result = usize;

    fn handle(&mut self, _: PingUser, ctx: &mut Context<Self>) -> usize {
        let _span = self.touch(ctx);
        self.feed(Event::Ping, ctx).routed
    }
}
