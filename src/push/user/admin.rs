//! What the admin asks of one user's push state: the registrations with their ledger
//! (`push list`), removal (`push remove`), a test push (`push test`).

use std::time::Duration;

use actix::prelude::*;
use futures::future::join_all;

use super::{State, UserPush};
use crate::push::interface::*;
use crate::store::ledger::RemovalReason;
use crate::store::{Change, StoreError, Write};

impl UserPush {
    /// The registrations as held in memory, oldest enabled first, with the sessions
    /// linked to each.
    fn views(&self) -> Result<Vec<RegistrationView>, AdminPushError> {
        let set = match &self.state {
            State::Loaded(set) => set,
            State::Loading | State::Failed => {
                return Err(
                    StoreError::Failed("the user's registrations cannot be read".into()).into(),
                );
            }
        };
        let mut views: Vec<RegistrationView> = set
            .iter()
            .map(|r| {
                let mut v = RegistrationView::new(&r.record);
                for link in self.sessions.values() {
                    if link.identifier.as_deref() == Some(r.identifier.as_str()) {
                        v.linked_sessions += 1;
                        if link.hibernation.is_some() {
                            v.hibernated_sessions += 1;
                        }
                    }
                }
                v
            })
            .collect();
        views.sort_by_key(|v| v.enabled_at_us);
        Ok(views)
    }

    /// The identifiers `selector` names among the loaded registrations.
    fn select(&self, selector: &Selector, single: bool) -> Result<Vec<String>, AdminPushError> {
        let State::Loaded(set) = &self.state else {
            return Err(
                StoreError::Failed("the user's registrations cannot be read".into()).into(),
            );
        };
        let all: Vec<_> = set.iter().collect();
        let hits = selector.select(all.iter().map(|r| &r.record), single)?;
        Ok(hits
            .into_iter()
            .map(|i| all[i].identifier.clone())
            .collect())
    }
}

impl Handler<ListRegistrations> for UserPush {
    type Result = Result<Vec<RegistrationView>, AdminPushError>;

    fn handle(&mut self, _: ListRegistrations, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        self.views()
    }
}

impl Handler<RemoveRegistrations> for UserPush {
    type Result = AtomicResponse<Self, Result<Vec<RegistrationView>, AdminPushError>>;

    fn handle(&mut self, msg: RemoveRegistrations, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        let doomed = match self.select(&msg.selector, true) {
            Ok(d) => d,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        };
        let mut removed = Vec::new();
        let mut changes = Vec::new();
        if let State::Loaded(set) = &self.state {
            for identifier in &doomed {
                if let Some(r) = set.get(identifier) {
                    removed.push(RegistrationView::new(&r.record));
                    changes.push(Change::DeleteRegistration {
                        user: self.user.clone(),
                        identifier: identifier.clone(),
                    });
                    changes.push(self.log_removal(&r.record, RemovalReason::Admin));
                }
            }
        }
        let write = self.store.write.send(Write {
            changes,
            durable: true,
        });
        // Atomic like an enable or disable: the next one sees this removal done.
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            move |res, act, ctx| {
                res.map_err(|e| StoreError::Failed(e.to_string()))
                    .and_then(|r| r)?;
                for identifier in &doomed {
                    tracing::info!(user = %act.user, registration = %identifier, "push registration removed by the admin");
                    act.forget_registration(identifier, ctx);
                }
                Ok(removed)
            },
        )))
    }
}

impl Handler<TestPush> for UserPush {
    type Result = ResponseFuture<Result<Vec<TestPushResult>, AdminPushError>>;

    fn handle(&mut self, msg: TestPush, ctx: &mut Context<Self>) -> Self::Result {
        let _span = self.touch(ctx);
        let identifiers = match self.select(&msg.selector, false) {
            Ok(ids) => ids,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let mut described = Vec::with_capacity(identifiers.len());
        if let State::Loaded(set) = &self.state {
            for id in &identifiers {
                if let Some(r) = set.get(id) {
                    described.push((
                        r.record.jid.clone(),
                        r.record.node.clone(),
                        r.record.client.clone(),
                    ));
                }
            }
        }
        let ids = self.ping(&identifiers, ctx);
        let mut waits = Vec::with_capacity(ids.len());
        for publish_id in ids {
            let (tx, rx) = tokio::sync::oneshot::channel();
            match publish_id.and_then(|p| self.outstanding.get_mut(&p)) {
                Some(o) => o.waiter = Some(tx),
                None => {
                    let _ = tx.send((TestOutcome::NotSent, None));
                }
            }
            waits.push(rx);
        }
        tracing::info!(user = %self.user, publishes = waits.len(), "test push sent for the admin");
        Box::pin(async move {
            let answers = join_all(waits).await;
            Ok(described
                .into_iter()
                .zip(answers)
                .map(|((jid, node, client), answer)| {
                    let (outcome, rtt) = answer.unwrap_or((TestOutcome::Gone, None));
                    TestPushResult {
                        jid,
                        node,
                        client,
                        outcome,
                        round_trip_us: rtt.map(|d: Duration| d.as_micros() as u64),
                    }
                })
                .collect())
        })
    }
}
