//! The user's push state, run here: the push module's machine executes inside this
//! actor (see [`PushExecutor`]), so a session's hibernation, its queue and its push link
//! have one owner, and nothing about them travels between actors.
//!
//! What reaches the push state from outside: a session's `urn:xmpp:push:0` IQs (from its
//! socket task), an app server's answers (the router matches them to this user by the
//! route in the publish id), and the admin's requests (through the router).

use actix::prelude::*;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::record::EndKind;
use super::state::User;
use crate::push::machine::Event;
use crate::push::protocol;
use crate::push::publish::Response;
use crate::push::{
    AdminPushError, GetUserStats, ListRegistrations, PublishUndelivered, PushActor, PushExecutor,
    RegistrationView, RemoveRegistrations, SessionId, TestPush, TestPushResult, UserStats,
};
use crate::store::{Change, StoreError, Write};

impl PushActor for User {
    fn push(&mut self) -> &mut PushExecutor {
        &mut self.push
    }

    fn expire_session(&mut self, session: SessionId, ctx: &mut Context<Self>) {
        self.module_expired(session, ctx);
    }

    fn push_settled(&mut self, ctx: &mut Context<Self>) {
        self.report_if_idle(ctx);
        self.stop_if_detached(ctx);
    }

    fn push_ran(&mut self) {
        self.account();
    }
}

impl User {
    /// Feeds the push machine one event of this actor's own making.
    pub(super) fn push_event(&mut self, event: Event, ctx: &mut Context<Self>) {
        PushExecutor::feed(self, event, ctx);
    }
}

/// An IQ whose payload is in `urn:xmpp:push:0`, from one of the user's sessions.
/// Answered with the reply for the client, once any change it made is durable (`None`:
/// a result or error, which gets no reply).
#[derive(Message)]
#[rtype(result = "Option<Element>")]
pub struct PushIq {
    pub session: SessionId,
    pub jid: FullJid,
    pub iq: Element,
}

impl Handler<PushIq> for User {
    type Result = AtomicResponse<Self, Option<Element>>;

    fn handle(&mut self, msg: PushIq, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.span.clone().entered();
        let max_options = self.shared.cfg.push_max_publish_options_size;
        let req = match protocol::parse_push_iq(&msg.iq, &msg.jid, max_options) {
            Ok(req) => req,
            Err(reply) => return AtomicResponse::new(Box::pin(fut::ready(reply))),
        };
        if self.push.machine().load_failed() {
            // The registrations could not be read when this actor started: read them
            // again (before the next message) and say so to this request.
            PushExecutor::load(self, ctx);
            let reply = protocol::error_reply(
                &req.id,
                &msg.jid,
                ErrorType::Wait,
                DefinedCondition::InternalServerError,
                None,
            );
            return AtomicResponse::new(Box::pin(fut::ready(Some(reply))));
        }
        let pending = PushExecutor::command(self, msg.session, msg.jid, req.id, req.command, ctx);
        // Atomic: no other message runs until the write is answered, so each enable or
        // disable computes its changes from the state the previous one left.
        // An enable asking for ignore-unknown has the roster read before the next stanza.
        AtomicResponse::new(Box::pin(pending.map(|reply, act, ctx| {
            act.read_contacts_if_wanted(ctx);
            Some(reply)
        })))
    }
}

/// An app server's answer to one of this user's publishes (matched by the router).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PushAnswer(pub Response);

impl Handler<PushAnswer> for User {
    type Result = ();

    fn handle(&mut self, msg: PushAnswer, ctx: &mut Context<Self>) {
        self.count_router_message(ctx);
        let _span = self.span.clone().entered();
        self.push_event(Event::Response(msg.0), ctx);
        self.report_if_idle(ctx);
    }
}

/// Our server-to-server links could not deliver one of this user's publishes (D21).
impl Handler<PublishUndelivered> for User {
    type Result = ();

    fn handle(&mut self, msg: PublishUndelivered, ctx: &mut Context<Self>) {
        self.count_router_message(ctx);
        let _span = self.span.clone().entered();
        self.push_event(Event::Undelivered(msg), ctx);
        self.report_if_idle(ctx);
    }
}

impl Handler<GetUserStats> for User {
    type Result = Option<UserStats>;

    fn handle(&mut self, _: GetUserStats, ctx: &mut Context<Self>) -> Self::Result {
        self.count_router_message(ctx);
        let stats = self
            .push
            .machine()
            .stats(tokio::time::Instant::now().into_std());
        self.report_if_idle(ctx);
        Some(stats)
    }
}

impl Handler<ListRegistrations> for User {
    type Result = Result<Vec<RegistrationView>, AdminPushError>;

    fn handle(&mut self, _: ListRegistrations, ctx: &mut Context<Self>) -> Self::Result {
        self.count_router_message(ctx);
        let views = self.push.machine().views();
        self.report_if_idle(ctx);
        views
    }
}

impl Handler<RemoveRegistrations> for User {
    type Result = AtomicResponse<Self, Result<Vec<RegistrationView>, AdminPushError>>;

    fn handle(&mut self, msg: RemoveRegistrations, ctx: &mut Context<Self>) -> Self::Result {
        self.count_router_message(ctx);
        let _span = self.span.clone().entered();
        let removal = PushExecutor::remove(self, msg.selector, ctx);
        // Atomic like an enable or disable: the next one sees this removal done.
        AtomicResponse::new(Box::pin(removal.map(|removed, act, ctx| {
            act.report_if_idle(ctx);
            removed
        })))
    }
}

impl Handler<TestPush> for User {
    type Result = ResponseFuture<Result<Vec<TestPushResult>, AdminPushError>>;

    fn handle(&mut self, msg: TestPush, ctx: &mut Context<Self>) -> Self::Result {
        self.count_router_message(ctx);
        let _span = self.span.clone().entered();
        // The publishes it sent keep the actor (they await answers); their ends report
        // idleness through `push_settled`.
        let results = PushExecutor::test_push(self, msg.selector, ctx);
        self.report_if_idle(ctx);
        results
    }
}

/// The account is deleted: its sessions end (connected ones with `not-authorized`),
/// the push state goes without a flush, and everything stored for the user is deleted
/// (account, registrations, roster, offline messages). Answered once that is durable.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct DeleteAccount {
    pub user: String,
}

impl Handler<DeleteAccount> for User {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, _: DeleteAccount, ctx: &mut Context<Self>) -> Self::Result {
        self.count_router_message(ctx);
        let _span = self.span.clone().entered();
        // Held hibernations end now rather than never, and the machine forgets the
        // registrations, so no ledger flush writes them back over the deletion.
        PushExecutor::unload(self, false, ctx);
        for id in self.session_ids(|e| e.live()) {
            self.end_session(id, EndKind::Revoked, ctx);
        }
        let write = self.shared.store.send(Write {
            changes: vec![Change::DeleteUser {
                user: self.name.clone(),
            }],
            durable: true,
        });
        self.report_if_idle(ctx);
        Box::pin(async move {
            write
                .await
                .map_err(|e| StoreError::Failed(e.to_string()))
                .and_then(|r| r)
        })
    }
}
