//! A bound session as its request handlers see it: who it is, where its stanzas go.

use std::rc::Rc;

use actix::Addr;
use xmpp_parsers::jid::{BareJid, FullJid};
use xmpp_parsers::minidom::Element;

use super::connection::{Shared, Xml};
use super::route::Route;
use super::user::{Reply, User};
use crate::push::SessionId;

/// What the request handlers of a session need.
pub struct Bound {
    pub shared: Rc<Shared>,
    pub owner: Addr<User>,
    pub jid: FullJid,
    pub bare: BareJid,
    pub user: String,
    pub id: SessionId,
    /// Stream management is on: every stanza to the client is counted by the user actor.
    pub sm: bool,
}

impl Bound {
    /// A stanza for the client: with stream management through the user actor, which
    /// counts it; without, written at once (the connection's own pace holds back a
    /// long run of them, such as the offline messages). `false`: the write failed.
    pub async fn reply(&self, xml: &mut Xml, stanza: Element) -> bool {
        if self.sm {
            self.owner.do_send(Reply {
                id: self.id,
                stanza,
            });
            return true;
        }
        xml.send(&stanza).await.is_ok()
    }

    /// A stanza for someone else.
    pub fn route(&self, stanza: Element) {
        self.shared.router.do_send(Route(stanza));
    }
}
