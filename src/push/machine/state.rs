//! The machine's data, kept apart from its behaviour: each file that gives it behaviour
//! imports this one, and none imports the machine's front door or another behaviour, so
//! no two files of the machine import each other (issue 10).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use xmpp_parsers::jid::BareJid;

use super::contacts::Contacts;
use super::event::RequestId;
use super::link::Link;
use super::outstanding::Outstanding;
use super::pending::Pending;
use crate::config::Config;
use crate::push::interface::SessionId;
use crate::push::registration::RegistrationSet;

/// Sessions of one user that may be linked at once. A user has a handful of devices; the
/// bound stops a misbehaving client from growing the map with endless resources.
pub const MAX_LINKED_SESSIONS: usize = 32;

/// Requests waiting for their store write at once. A host that serializes requests has at
/// most one; the bound only stops a host that does not from growing the map.
pub const MAX_PENDING_REQUESTS: usize = 16;

pub(super) enum State {
    Loading,
    Loaded(RegistrationSet),
    Failed,
}

/// The push state of one user. See the [module documentation](super).
pub struct PushMachine {
    pub(super) user: String,
    pub(super) user_jid: BareJid,
    pub(super) cfg: Arc<Config>,
    /// Carried in every publish id, so the host can route answers back to this user.
    pub(super) route: u64,
    pub(super) state: State,
    pub(super) sessions: HashMap<SessionId, Link>,
    pub(super) outstanding: Outstanding,
    /// Registrations whose ledger changed without a durable write yet.
    pub(super) dirty: HashSet<String>,
    pub(super) pending: HashMap<RequestId, Pending>,
    /// The user's contacts, once the host told them (`None` before).
    pub(super) contacts: Option<Contacts>,
}
