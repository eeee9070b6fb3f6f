//! What the admin asks of one user's push state: the registrations with their ledger
//! (`push list`), and the test push (`push test`). Removal is with the other requests
//! that write.

use super::clock::Clock;
use super::effect::{Effect, Reply, TestTarget};
use super::event::RequestId;
use super::state::{PushMachine, State};
use crate::push::interface::{AdminPushError, RegistrationView, Selector};
use crate::push::publish::Summary;
use crate::store::StoreError;

fn unreadable() -> AdminPushError {
    StoreError::Failed("the user's registrations cannot be read".into()).into()
}

impl PushMachine {
    /// The registrations as held in memory, oldest enabled first, with the sessions
    /// linked to each.
    pub fn views(&self) -> Result<Vec<RegistrationView>, AdminPushError> {
        let State::Loaded(set) = &self.state else {
            return Err(unreadable());
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
    pub(super) fn select(
        &self,
        selector: &Selector,
        single: bool,
    ) -> Result<Vec<String>, AdminPushError> {
        let State::Loaded(set) = &self.state else {
            return Err(unreadable());
        };
        let all: Vec<_> = set.iter().collect();
        let hits = selector.select(all.iter().map(|r| &r.record), single)?;
        Ok(hits
            .into_iter()
            .map(|i| all[i].identifier.clone())
            .collect())
    }

    /// The ping notification (§6.2: no sender, no body) to each selected registration;
    /// each publish is watched, so its end comes as [`Effect::Ended`].
    pub(super) fn test_push(
        &mut self,
        request: RequestId,
        selector: &Selector,
        c: Clock,
        out: &mut Vec<Effect>,
    ) {
        let identifiers = match self.select(selector, false) {
            Ok(ids) => ids,
            Err(e) => {
                out.push(Effect::Reply {
                    request,
                    reply: Reply::TestPush(Err(e)),
                });
                return;
            }
        };
        let mut targets = Vec::with_capacity(identifiers.len());
        for identifier in identifiers {
            let Some(r) = self.registrations().and_then(|s| s.get(&identifier)) else {
                continue;
            };
            let mut target = TestTarget {
                jid: r.record.jid.clone(),
                node: r.record.node.clone(),
                client: r.record.client.clone(),
                publish: None,
            };
            target.publish = self.publish(c, &identifier, &Summary::default(), out);
            if let Some(p) = target
                .publish
                .as_deref()
                .and_then(|id| self.outstanding.get_mut(id))
            {
                p.watched = true;
            }
            targets.push(target);
        }
        tracing::info!(user = %self.user, publishes = targets.len(), "test push sent for the admin");
        out.push(Effect::Reply {
            request,
            reply: Reply::TestPush(Ok(targets)),
        });
    }
}
