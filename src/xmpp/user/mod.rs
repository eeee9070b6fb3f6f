//! The user actor: one per user with live state, the one owner of that user's sessions
//! as the rest of the server sees them (resource, channel, presence, hibernation,
//! resumption id) and of delivery to them (RFC 6121 §8.5 for a local user).
//!
//! The router starts it on the first stanza or bind for the user and forgets it when it
//! has nothing left: no session and no request to the store in flight. A user without
//! live state costs nothing. Stopping is agreed with the router (see [`idle`]), so no
//! stanza is ever sent to a user actor that is about to stop.

mod archive;
mod away;
mod carbons;
mod committed;
mod contacts;
mod csi;
mod delivery;
mod end;
mod footprint;
mod gauges;
mod hibernation;
mod idle;
mod presence;
mod push;
mod record;
mod resume;
mod roster_edit;
mod roster_push;
mod sessions;
mod state;
mod stream;
mod to_router;

pub use archive::{SentArchived, SetArchivePrefs};
pub use carbons::{CARBONS_NS, Sent, SetCarbons};
pub use csi::{CSI_NS, SetClientState};
pub use delivery::Deliver;
pub use footprint::Footprint;
pub use gauges::Gauges;
pub use presence::PresencesTo;
pub use push::{DeleteAccount, PushAnswer, PushIq};
pub use resume::{Resume, ResumeError, Resumed};
pub use roster_edit::{Edit, EditRoster, Edited};
pub use sessions::{Bind, BindAnswer, EndReason, EndSessions, SetAvailable};
pub use state::{MAILBOX, MAX_RESOURCES, Shared, User};
pub use stream::{ClientAck, EnableSm, Reply, SocketEnded};
pub use to_router::{EndedSession, StopIfIdle, UserIdle};
