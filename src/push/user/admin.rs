//! The admin's requests about one user's push state, executed through its machine:
//! the registrations with their ledger (`push list`), removal (`push remove`), a test
//! push (`push test`).

use actix::prelude::*;
use futures::future::join_all;

use super::UserPush;
use crate::push::interface::*;
use crate::push::machine::{Event, Reply};

impl Handler<ListRegistrations> for UserPush {
    type Result = Result<Vec<RegistrationView>, AdminPushError>;

    fn handle(&mut self, _: ListRegistrations, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        self.machine.views()
    }
}

impl Handler<RemoveRegistrations> for UserPush {
    type Result = AtomicResponse<Self, Result<Vec<RegistrationView>, AdminPushError>>;

    fn handle(&mut self, msg: RemoveRegistrations, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        let selector = msg.selector;
        let pending = self.request(|request| Event::Remove { request, selector }, ctx);
        // Atomic like an enable or disable: the next one sees this removal done.
        AtomicResponse::new(Box::pin(pending.map(|reply, _, _| match reply {
            Some(Reply::Removed(r)) => r,
            _ => Err(AdminPushError::Busy),
        })))
    }
}

impl Handler<TestPush> for UserPush {
    type Result = ResponseFuture<Result<Vec<TestPushResult>, AdminPushError>>;

    fn handle(&mut self, msg: TestPush, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        let request = self.request_id();
        let selector = msg.selector;
        let reply = self.feed(Event::TestPush { request, selector }, ctx).reply;
        let targets = match reply {
            Some(Reply::TestPush(Ok(targets))) => targets,
            Some(Reply::TestPush(Err(e))) => return Box::pin(async move { Err(e) }),
            _ => return Box::pin(async { Err(AdminPushError::Busy) }),
        };
        let mut waits = Vec::with_capacity(targets.len());
        for t in &targets {
            let (tx, rx) = tokio::sync::oneshot::channel();
            match t
                .publish
                .as_deref()
                .filter(|id| self.machine.is_pending(id))
            {
                Some(id) => {
                    self.waiters.insert(id.to_string(), tx);
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
}
