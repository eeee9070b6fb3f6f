//! The admin's requests about one user's push state, executed through its machine:
//! the registrations with their ledger (`push list`), removal (`push remove`), a test
//! push (`push test`).

use actix::prelude::*;

use super::UserPush;
use crate::push::executor::PushExecutor;
use crate::push::interface::*;

impl Handler<ListRegistrations> for UserPush {
    type Result = Result<Vec<RegistrationView>, AdminPushError>;

    fn handle(&mut self, _: ListRegistrations, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        self.push.machine().views()
    }
}

impl Handler<RemoveRegistrations> for UserPush {
    type Result = AtomicResponse<Self, Result<Vec<RegistrationView>, AdminPushError>>;

    fn handle(&mut self, msg: RemoveRegistrations, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        // Atomic like an enable or disable: the next one sees this removal done.
        AtomicResponse::new(PushExecutor::remove(self, msg.selector, ctx))
    }
}

impl Handler<TestPush> for UserPush {
    type Result = ResponseFuture<Result<Vec<TestPushResult>, AdminPushError>>;

    fn handle(&mut self, msg: TestPush, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        PushExecutor::test_push(self, msg.selector, ctx)
    }
}
