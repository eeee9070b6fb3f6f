//! XEP-0313 message archive management, v2 with `#extended`, paged with XEP-0059 and
//! naming messages with XEP-0359 stanza ids. The archive itself is `store::archive`;
//! here: what is archived (and the user actor's copy of the preferences' verdict), the query's parsing, the answer's building, and the handler
//! that runs a query for a session.

pub mod archiving;
pub mod clock;
pub mod expiry;
pub mod filter;
pub mod handler;
pub mod prefs;
pub mod query;
pub mod results;
pub mod rsm;

pub const MAM_NS: &str = "urn:xmpp:mam:2";
pub const MAM_EXTENDED: &str = "urn:xmpp:mam:2#extended";
pub const SID_NS: &str = "urn:xmpp:sid:0";
pub const FORWARD_NS: &str = "urn:xmpp:forward:0";
pub const DELAY_NS: &str = "urn:xmpp:delay";
pub const DATA_NS: &str = "jabber:x:data";
