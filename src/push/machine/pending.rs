//! The requests awaiting their store write: what each must still do once the store
//! answers, since memory changes only after the write is durable.

use xmpp_parsers::jid::FullJid;

use crate::push::interface::{RegistrationView, SessionId};
use crate::push::registration::Registration;

/// A request whose write the store has not answered yet.
pub(super) enum Pending {
    Enable {
        session: SessionId,
        jid: FullJid,
        iq_id: String,
        reg: Box<Registration>,
    },
    Disable {
        jid: FullJid,
        iq_id: String,
        doomed: Vec<String>,
    },
    Remove {
        doomed: Vec<String>,
        removed: Vec<RegistrationView>,
    },
}
