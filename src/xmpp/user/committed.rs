//! The store's answer to a durable archive write, as the user actor reads it back.
//!
//! Its own file because both the actor's state (which holds the channel) and the
//! archive path (which sends and handles it) name it.

use xmpp_parsers::minidom::Element;

use crate::store::StoreError;

/// The store's answer to a durable archive write (see `User::archive`). At most
/// `store_max_pending` are on their way: each write held a place at the archive gate.
pub struct Committed {
    pub(super) result: Result<(), StoreError>,
    pub(super) stanza: Element,
    pub(super) all_away: bool,
}
