//! The admin socket's requests beyond accounts: `push-list U`, `push-remove U SEL`,
//! `push-test U SEL`, `status` and `app-servers` (the app servers' domains, for
//! `check`). `SEL` (a [`Selector`]) and every answer are postcard in
//! base64, so a node or an app server's error text with spaces or newlines stays on
//! its line; the command line tool decodes and prints them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;

use super::shared::Shared;
use crate::metrics::snapshot::gather;
use crate::push::{AdminPushError, ListRegistrations, RemoveRegistrations, Selector, TestPush};
use crate::store::ledger::PushLedger;
use crate::store::{ListAppServerDomains, LoadAccount, LoadRemovals, StoreError};

/// Verbs handled here; anything else is left to the account requests.
pub const VERBS: &[&str] = &[
    "push-list",
    "push-remove",
    "push-test",
    "status",
    "app-servers",
];

fn encode<T: Serialize>(value: &T) -> Result<String, String> {
    postcard::to_stdvec(value)
        .map(|b| B64.encode(b))
        .map_err(|e| e.to_string())
}

fn selector(arg: Option<&str>) -> Result<Selector, String> {
    arg.and_then(|a| B64.decode(a).ok())
        .and_then(|b| postcard::from_bytes::<Selector>(&b).ok())
        .ok_or_else(|| "malformed selector".to_string())
}

async fn must_exist(user: &str, shared: &Shared) -> Result<(), String> {
    match shared.store.send(LoadAccount { user: user.into() }).await {
        Ok(Ok(Some(_))) => Ok(()),
        Ok(Ok(None)) => Err("missing".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn push_error(e: AdminPushError) -> String {
    match e {
        AdminPushError::Store(StoreError::Closed) => "store closed".into(),
        e => e.to_string(),
    }
}

/// Answers a request for one of [`VERBS`]; `None` for any other verb.
pub async fn handle(line: &str, shared: &Shared) -> Option<Result<String, String>> {
    let mut parts = line.split(' ');
    let verb = parts.next().unwrap_or_default();
    if !VERBS.contains(&verb) {
        return None;
    }
    if verb == "status" {
        return Some(encode(&gather(&shared.sources).await));
    }
    if verb == "app-servers" {
        let domains = shared.store.send(ListAppServerDomains).await;
        return Some(match domains {
            Ok(Ok(d)) => encode(&d),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        });
    }
    let user = parts.next().unwrap_or_default().to_string();
    if user.is_empty() {
        return Some(Err("missing user".into()));
    }
    let arg = parts.next();
    Some(
        async {
            must_exist(&user, shared).await?;
            match verb {
                "push-list" => {
                    let registrations = shared
                        .router
                        .send(ListRegistrations { user: user.clone() })
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(push_error)?;
                    let removals = shared
                        .store
                        .send(LoadRemovals { user })
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                    encode(&PushLedger {
                        registrations,
                        removals,
                    })
                }
                "push-remove" => {
                    let selector = selector(arg)?;
                    let removed = shared
                        .router
                        .send(RemoveRegistrations {
                            user: user.clone(),
                            selector,
                        })
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(push_error)?;
                    tracing::info!(%user, count = removed.len(), "push registrations removed through the admin socket");
                    encode(&removed)
                }
                _ => {
                    let selector = selector(arg)?;
                    let results = shared
                        .router
                        .send(TestPush {
                            user: user.clone(),
                            selector,
                        })
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(push_error)?;
                    encode(&results)
                }
            }
        }
        .await,
    )
}
