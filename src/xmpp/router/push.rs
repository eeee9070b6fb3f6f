//! What the router passes to a user's push state: an app server's answer (matched to
//! the user by the route in the publish id) and the admin's requests about a user's
//! registrations. The push state itself lives in the user's actor.

use actix::dev::{Request, SendError, ToEnvelope};
use actix::prelude::*;

use super::Router;
use crate::push::publish;
use crate::push::{
    AdminPushError, AppServerResponse, GetUserStats, ListRegistrations, PublishUndelivered,
    RegistrationView, RemoveRegistrations, TestPush, TestPushResult, UserStats,
};
use crate::store::{Change, StoreError, Write};
use crate::xmpp::user::{DeleteAccount, PushAnswer, User};

impl Router {
    /// Sends `msg` to `user`'s actor, started for it when `start`; `None` when there is
    /// none (or none could be started).
    fn ask<M>(&mut self, user: &str, msg: M, start: bool) -> Option<Request<User, M>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        User: Handler<M>,
        <User as Actor>::Context: ToEnvelope<User, M>,
    {
        let running = if start {
            self.user(user)?
        } else {
            self.users.get_mut(user)?
        };
        running.sent += 1;
        Some(running.addr.send(msg))
    }
}

/// An IQ `result` or `error` to the domain from an app server: the answer to a publish,
/// for the user whose route its id carries. An answer for a user whose actor has gone
/// (or no publish of ours) is dropped: no publish awaits it.
impl Handler<AppServerResponse> for Router {
    type Result = ();

    fn handle(&mut self, msg: AppServerResponse, _: &mut Context<Self>) {
        let Some(resp) = publish::read_response(&msg.iq) else {
            return;
        };
        let Some(user) = publish::route_of(&resp.id).and_then(|r| self.routes.get(&r)) else {
            tracing::debug!(id = %resp.id, "answer to an unknown publish ignored");
            return;
        };
        let user = user.clone();
        let Some(running) = self.users.get_mut(&user) else {
            return;
        };
        match running.addr.try_send(PushAnswer(resp)) {
            Ok(()) => running.sent += 1,
            // The publish's own timeout ends it as unanswered.
            Err(SendError::Full(_) | SendError::Closed(_)) => {
                tracing::warn!(%user, "user's queue full: app server's answer dropped")
            }
        }
    }
}

/// A publish the server-to-server links could not deliver (D21), for the user whose
/// route its id carries; dropped like an answer when that user's actor has gone.
///
/// Unlike an app server's answer, it is delivered past the user's mailbox bound: it
/// comes from our own links, one per failed try of a publish they hold (a few, within
/// `push_response_timeout`, for at most `s2s_queue_size` held per domain), and dropping
/// it would record our own failure as the app server's silence (a timeout) and lose
/// its reason.
impl Handler<PublishUndelivered> for Router {
    type Result = ();

    fn handle(&mut self, msg: PublishUndelivered, _: &mut Context<Self>) {
        let Some(user) = publish::route_of(&msg.id).and_then(|r| self.routes.get(&r)) else {
            tracing::debug!(id = %msg.id, "undelivered publish unknown");
            return;
        };
        let user = user.clone();
        let Some(running) = self.users.get_mut(&user) else {
            return;
        };
        running.addr.do_send(msg);
        running.sent += 1;
    }
}

/// What the push module holds for `user` (`None`: no actor runs for the user).
impl Handler<GetUserStats> for Router {
    type Result = ResponseFuture<Option<UserStats>>;

    fn handle(&mut self, msg: GetUserStats, _: &mut Context<Self>) -> Self::Result {
        let asked = self.ask(&msg.user.clone(), msg, false);
        Box::pin(async move { asked?.await.ok().flatten() })
    }
}

type AdminAnswer<T> = ResponseFuture<Result<T, AdminPushError>>;

/// Waits for a user actor's answer to an admin request; `Busy` when it could not be
/// asked (`push_max_active_users` reached) or went away.
async fn admin_answer<M, T>(asked: Option<Request<User, M>>) -> Result<T, AdminPushError>
where
    M: Message<Result = Result<T, AdminPushError>> + Send + 'static,
    T: Send + 'static,
    User: Handler<M>,
{
    match asked {
        Some(request) => request.await.unwrap_or(Err(AdminPushError::Busy)),
        None => Err(AdminPushError::Busy),
    }
}

impl Handler<ListRegistrations> for Router {
    type Result = AdminAnswer<Vec<RegistrationView>>;

    fn handle(&mut self, msg: ListRegistrations, _: &mut Context<Self>) -> Self::Result {
        let asked = self.ask(&msg.user.clone(), msg, true);
        Box::pin(admin_answer(asked))
    }
}

impl Handler<RemoveRegistrations> for Router {
    type Result = AdminAnswer<Vec<RegistrationView>>;

    fn handle(&mut self, msg: RemoveRegistrations, _: &mut Context<Self>) -> Self::Result {
        let asked = self.ask(&msg.user.clone(), msg, true);
        Box::pin(admin_answer(asked))
    }
}

impl Handler<TestPush> for Router {
    type Result = AdminAnswer<Vec<TestPushResult>>;

    fn handle(&mut self, msg: TestPush, _: &mut Context<Self>) -> Self::Result {
        let asked = self.ask(&msg.user.clone(), msg, true);
        Box::pin(admin_answer(asked))
    }
}

/// An account is deleted: through its actor when one runs (its sessions end, its push
/// state goes), else straight to the store. Answered once the deletion is durable.
impl Handler<DeleteAccount> for Router {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, msg: DeleteAccount, _: &mut Context<Self>) -> Self::Result {
        let user = msg.user.clone();
        if let Some(asked) = self.ask(&user, msg, false) {
            return Box::pin(async move { asked.await.unwrap_or(Err(StoreError::Closed)) });
        }
        let write = self.for_users.store.send(Write {
            changes: vec![Change::DeleteUser { user }],
            durable: true,
        });
        Box::pin(async move {
            write
                .await
                .map_err(|e| StoreError::Failed(e.to_string()))
                .and_then(|r| r)
        })
    }
}
