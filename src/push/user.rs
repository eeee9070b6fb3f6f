//! `UserPush`: this module's stand-alone host for one user's push state, for hosts that
//! have no per-user actor of their own (the XMPP server's user actor embeds a
//! [`PushExecutor`] instead). It turns the hub's messages into events for the executor,
//! passes the machine's expiries on to the sessions' [`SessionControl`] recipients, and
//! stops when idle; everything that must survive is in the store.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

use super::executor::{PushActor, PushExecutor, PushLinks};
use super::interface::*;
use super::machine::Event;
use super::messages::{Command, RoutedResponse, Stop, UserGone, UserIdle};
use crate::config::Config;

mod admin;

/// Mailbox room; the hub refuses (and logs) events past it rather than queue without end.
pub const MAILBOX: usize = 256;

/// Where the actor reports to its hub.
pub(super) struct HubLink {
    pub idle: Recipient<UserIdle>,
    pub gone: Recipient<UserGone>,
    pub route: u64,
}

pub struct UserPush {
    user: String,
    cfg: Arc<Config>,
    hub: HubLink,
    push: PushExecutor,
    /// Where each linked session's instructions go.
    controls: HashMap<SessionId, Recipient<SessionControl>>,
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
        links: Arc<PushLinks>,
        hub: HubLink,
    ) -> Self {
        let span = tracing::info_span!("push_user", user = %user_jid);
        let push = PushExecutor::new(user.clone(), user_jid, cfg.clone(), links, hub.route);
        UserPush {
            user,
            cfg,
            hub,
            push,
            controls: HashMap::new(),
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
        if self.push.machine().is_idle() {
            self.hub.idle.do_send(UserIdle {
                user: self.user.clone(),
                route: self.hub.route,
                handled: self.handled,
            });
        } else {
            self.arm_idle_check(ctx);
        }
    }

    fn feed(&mut self, event: Event, ctx: &mut Context<Self>) -> usize {
        let _span = self.span.clone().entered();
        PushExecutor::feed(self, event, ctx).routed
    }
}

impl PushActor for UserPush {
    fn push(&mut self) -> &mut PushExecutor {
        &mut self.push
    }

    fn expire_session(&mut self, session: SessionId, _: &mut Context<Self>) {
        if let Some(control) = self.controls.get(&session) {
            // Never dropped: the host handed its timer over and waits for this.
            control.do_send(SessionControl {
                session,
                action: SessionAction::Expire,
            });
        }
    }
}

impl Actor for UserPush {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        let _span = self.span.clone().entered();
        PushExecutor::load(self, ctx);
        self.arm_idle_check(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.push.stopped();
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
        if self.push.machine().load_failed() {
            // Retry the read on the next request: this actor goes, a new one loads again.
            ctx.stop();
        }
        let Session { id, jid, control } = msg.session;
        let pending = PushExecutor::command(self, id, jid, msg.id, msg.command, ctx);
        AtomicResponse::new(Box::pin(pending.map(move |reply, act, _| {
            if act.push.machine().has_link(id) {
                act.controls.insert(id, control);
            }
            reply
        })))
    }
}

impl Handler<Stop> for UserPush {
    type Result = ();

    fn handle(&mut self, msg: Stop, ctx: &mut Context<Self>) {
        PushExecutor::unload(self, msg.flush, ctx);
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
    all_away: m.all_away,
});
event_handler!(RoutedResponse, |m| Event::Response(m.0));
event_handler!(PublishUndelivered, |m| Event::Undelivered(m));

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
        MessageResult(PushExecutor::hibernated(
            self,
            msg.session,
            msg.normal_timeout,
            msg.queue,
            ctx,
        ))
    }
}

impl Handler<GetUserStats> for UserPush {
    type Result = Option<UserStats>;

    fn handle(&mut self, _: GetUserStats, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        Some(
            self.push
                .machine()
                .stats(tokio::time::Instant::now().into_std()),
        )
    }
}

impl Handler<PingUser> for UserPush {
    type Result = usize;

    fn handle(&mut self, _: PingUser, ctx: &mut Context<Self>) -> usize {
        let _span = self.touch(ctx);
        self.feed(Event::Ping, ctx)
    }
}
