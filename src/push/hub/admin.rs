//! The admin's requests about one user's registrations, handed to the user's actor
//! (started for it when needed), or answered from the store when nothing needs the
//! actor.

use actix::prelude::*;

use super::PushHub;
use crate::push::interface::*;
use crate::store::{LoadRegistrations, StoreError};

/// The user actor's answer to an admin request; `None` (no actor could be had, the
/// user limit is reached) is `Busy`.
fn answer<M, T>(
    pending: Option<actix::dev::Request<crate::push::user::UserPush, M>>,
) -> ResponseFuture<Result<T, AdminPushError>>
where
    M: Message<Result = Result<T, AdminPushError>> + Send + 'static,
    T: Send + 'static,
    crate::push::user::UserPush: Handler<M>,
{
    match pending {
        None => Box::pin(async { Err(AdminPushError::Busy) }),
        Some(pending) => Box::pin(async move {
            pending
                .await
                .map_err(|e| AdminPushError::Store(StoreError::Failed(e.to_string())))?
        }),
    }
}

impl Handler<ListRegistrations> for PushHub {
    type Result = ResponseFuture<Result<Vec<RegistrationView>, AdminPushError>>;

    fn handle(&mut self, msg: ListRegistrations, ctx: &mut Context<Self>) -> Self::Result {
        let user = msg.user.clone();
        if let Some(pending) = self.request(&user, msg, false, ctx) {
            return answer(Some(pending));
        }
        // Not in memory: no session is linked, and the store holds the whole ledger.
        let load = self.store.load.send(LoadRegistrations { user });
        Box::pin(async move {
            let rows = load
                .await
                .map_err(|e| StoreError::Failed(e.to_string()))??;
            let mut views: Vec<RegistrationView> =
                rows.iter().map(|(_, r)| RegistrationView::new(r)).collect();
            views.sort_by_key(|v| v.enabled_at_us);
            Ok(views)
        })
    }
}

impl Handler<RemoveRegistrations> for PushHub {
    type Result = ResponseFuture<Result<Vec<RegistrationView>, AdminPushError>>;

    fn handle(&mut self, msg: RemoveRegistrations, ctx: &mut Context<Self>) -> Self::Result {
        let user = msg.user.clone();
        answer(self.request(&user, msg, true, ctx))
    }
}

impl Handler<TestPush> for PushHub {
    type Result = ResponseFuture<Result<Vec<TestPushResult>, AdminPushError>>;

    fn handle(&mut self, msg: TestPush, ctx: &mut Context<Self>) -> Self::Result {
        let user = msg.user.clone();
        answer(self.request(&user, msg, true, ctx))
    }
}
