//! XEP-0160 offline messages: delivered after the initial presence, oldest first, and
//! deleted once handed to the session (which counts them for XEP-0198 like any stanza).

use xmpp_parsers::minidom::Element;

use super::bound::Bound;
use super::connection::Xml;
use super::stanza;
use crate::store::{Change, LoadOffline, Write};

/// `false`: the connection failed (the messages not yet written stay stored).
pub(super) async fn deliver(xml: &mut Xml, st: &Bound) -> bool {
    let store = &st.shared.store;
    let user = st.user.clone();
    let messages = match store.send(LoadOffline { user: user.clone() }).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read offline messages");
            return true;
        }
        Err(_) => return true,
    };
    let Some(last) = messages.last().map(|(seq, _)| *seq) else {
        return true;
    };
    for (_, text) in messages {
        let Ok(mut el) = text.parse::<Element>() else {
            tracing::error!("unreadable offline message skipped");
            continue;
        };
        stanza::set_attr(&mut el, "to", &st.jid.to_string());
        if !st.reply(xml, el).await {
            // Not delivered: the messages stay stored for the next login.
            return false;
        }
    }
    let delete = Write {
        changes: vec![Change::DeleteOffline { user, up_to: last }],
        durable: true,
    };
    if !matches!(store.send(delete).await, Ok(Ok(()))) {
        tracing::error!("delivered offline messages not deleted; they may come again");
    }
    true
}
