//! What the hub and the user actors say to each other; neither actor's file names the
//! other's messages, so each imports only this one.

use actix::Message;
use xmpp_parsers::minidom::Element;

use super::interface::Session;
use super::protocol::PushCommand;
use super::publish::Response;

/// A validated push command for this user, forwarded by the hub.
#[derive(Message)]
#[rtype(result = "Element")]
pub(super) struct Command {
    pub session: Session,
    pub id: String,
    pub command: PushCommand,
}

/// The hub agreed that this actor is idle and has removed it: flush and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Stop {
    pub flush: bool,
}

/// An answer already matched to this user by its publish id.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct RoutedResponse(pub Response);

/// A user actor found itself idle after handling `handled` messages.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct UserIdle {
    pub user: String,
    pub route: u64,
    pub handled: u64,
}

/// A user actor stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct UserGone {
    pub user: String,
    pub route: u64,
}
