//! The store's answer to a durable archive write, as the user actor reads it back.
//!
//! Its own file because both the actor's state (which holds the channel) and the
//! archive path (which sends and handles it) name it.

use xmpp_parsers::minidom::Element;

use crate::store::StoreError;

/// The store's answer to a durable archive write (see `User::archive`).
///
/// The channel carrying them has no bound of its own, and needs none. Only a delivered
/// stanza (`Deliver`) asks for such a write, and the actor empties the channel before
/// each one. So what waits in it is at most the writes still uncommitted at the last
/// drain, each of which held one of `store_max_pending` places at the archive gate,
/// plus the one asked for since.
pub struct Committed {
    pub(super) result: Result<(), StoreError>,
    pub(super) stanza: Element,
    pub(super) all_away: bool,
}
