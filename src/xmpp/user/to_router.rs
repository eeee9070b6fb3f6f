//! What a user actor tells the router: the router outlives user actors and keeps what
//! must outlive them.

use actix::prelude::*;

/// A user actor is idle, having received `seen` messages from the router.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UserIdle {
    pub user: String,
    /// Which actor of this user (the router numbers them as it starts them).
    pub generation: u64,
    pub seen: u64,
}

/// The router forgot this actor: stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopIfIdle;

/// The router's record of an ended resumable session, for `<failed h=…/>`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndedSession {
    pub user: String,
    pub id: String,
    pub h: u32,
}
