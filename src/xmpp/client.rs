//! What a bound client sends: stamped with its JID, then answered here (the roster, the
//! server's and the account's IQs, its own presence) or routed to whom it is for.

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;

use super::bound::Bound;
use super::connection::{Xml, close_with};
use super::stanza::{self, CLIENT_NS};
use super::user::{CARBONS_NS, PushIq, Sent, SentArchived, SetAvailable, SetCarbons};
use super::{disco, mam, offline, ping, presence, roster, roster_iq};

const SESSION_NS: &str = "urn:ietf:params:xml:ns:xmpp-session";

/// Handles one element from the bound client. `false` ends the session.
pub(super) async fn handle(mut el: Element, xml: &mut Xml, st: &mut Bound) -> bool {
    if !matches!(el.name(), "message" | "presence" | "iq") {
        close_with(xml, "unsupported-stanza-type").await;
        return false;
    }
    if !el.has_ns(CLIENT_NS) {
        close_with(xml, "invalid-namespace").await;
        return false;
    }
    stanza::set_attr(&mut el, "from", &st.jid.to_string());
    let to: Option<Jid> = match el.attr("to") {
        None => None,
        Some(t) => match crate::jid::parse(t) {
            Some(j) => Some(j),
            None => {
                return match stanza::error_reply(&el, "modify", "jid-malformed") {
                    Some(r) => st.reply(xml, r).await,
                    None => true,
                };
            }
        },
    };
    let to_self = to
        .as_ref()
        .is_none_or(|t| t.resource().is_none() && t.to_bare() == st.bare);
    let to_server = to.as_ref().is_some_and(|t| {
        t.node().is_none() && t.resource().is_none() && t.domain().as_str() == st.shared.cfg.domain
    });
    match el.name() {
        "iq" if el.has_child("query", roster::ROSTER_NS) && to_self => {
            if let Some(r) = roster_iq::answer(&el, st).await {
                return st.reply(xml, r).await;
            }
        }
        "iq" if to_self && !to_server => {
            if let Some(go) = mam::handler::answer(&el, xml, st).await {
                return go;
            }
            if let Some(r) = server_iq(&el, to_server, st).await {
                return st.reply(xml, r).await;
            }
        }
        "iq" if to_server => {
            if let Some(r) = server_iq(&el, to_server, st).await {
                return st.reply(xml, r).await;
            }
        }
        "presence" if to.is_none() => return own_presence(el, xml, st).await,
        "presence"
            if matches!(
                el.attr("type"),
                Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")
            ) =>
        {
            if let Some(to) = to {
                presence::subscribe_out(el, to.to_bare(), st).await;
            }
        }
        "message" => {
            archive_sent(&el, to.as_ref(), st).await;
            st.owner.do_send(Sent {
                id: st.id,
                stanza: el.clone(),
            });
            st.route(el);
        }
        _ => st.route(el),
    }
    true
}

/// A message the user sends goes into their own archive (outgoing), as it leaves. The
/// push module hears of it too: its own outgoing messages never wake the user's phones
/// (D15), but a call answered here stops the others ringing (D17).
///
/// With every place at the archive gate taken (the store is `store_max_pending` archive
/// writes behind), the stream is read no further until one is free: a client sending
/// faster than the disk commits is held back, and no message of its goes unarchived.
async fn archive_sent(el: &Element, to: Option<&Jid>, st: &Bound) {
    let Some(to) = to else {
        return;
    };
    if !mam::archiving::archivable(el) {
        return;
    }
    let Some(permit) = st.shared.archive_gate.enter().await else {
        tracing::error!(user = %st.user, "the archive gate is closed: a sent message not archived");
        return;
    };
    let id = mam::clock::next_id();
    let change = mam::archiving::change(
        &st.user,
        &to.to_string(),
        true,
        el,
        id,
        st.shared.cfg.archive_max_messages_per_user,
    );
    mam::archiving::save(&st.shared.store, &st.user, change, permit);
    st.owner.do_send(SentArchived { stanza: el.clone() });
}

/// The client's own presence: in force at its user actor, then broadcast. After the
/// initial one the client first gets the subscription requests waiting for it and the
/// offline messages, then the presences the broadcast brings back.
async fn own_presence(el: Element, xml: &mut Xml, st: &Bound) -> bool {
    let t = el.attr("type");
    let now_available = t.is_none();
    if !(now_available || t == Some("unavailable")) {
        return true;
    }
    let initial = st
        .owner
        .send(SetAvailable {
            id: st.id,
            presence: now_available.then(|| el.clone()),
        })
        .await
        .unwrap_or(false);
    let roster = presence::load_roster(&st.user, &st.shared.store).await;
    let broadcast = presence::plan(&el, initial, &st.bare.to_string(), &roster);
    for request in broadcast.pending {
        if !st.reply(xml, request).await {
            return false;
        }
    }
    if initial && !offline::deliver(xml, st).await {
        return false;
    }
    for out in broadcast.out {
        st.route(out);
    }
    true
}

/// XEP-0280 `<enable/>` and `<disable/>`, answered once in force at the user actor.
async fn carbons(iq: &Element, p: &Element, st: &Bound) -> Element {
    let enabled = match (iq.attr("type"), p.name()) {
        (Some("set"), "enable") => true,
        (Some("set"), "disable") => false,
        _ => {
            return stanza::error_reply(iq, "modify", "bad-request")
                .unwrap_or_else(|| stanza::iq_result(iq, None));
        }
    };
    match st.owner.send(SetCarbons { id: st.id, enabled }).await {
        Ok(()) => stanza::iq_result(iq, None),
        Err(_) => stanza::error_reply(iq, "wait", "internal-server-error")
            .unwrap_or_else(|| stanza::iq_result(iq, None)),
    }
}

/// IQs to the server or to the user's own account.
async fn server_iq(iq: &Element, to_server: bool, st: &Bound) -> Option<Element> {
    let t = iq.attr("type");
    if !matches!(t, Some("get") | Some("set")) {
        return None;
    }
    let payload = iq.children().next();
    if payload.is_some_and(|p| p.has_ns(ns::PUSH)) {
        return st
            .owner
            .send(PushIq {
                session: st.id,
                jid: st.jid.clone(),
                iq: iq.clone(),
            })
            .await
            .ok()
            .flatten();
    }
    if ping::is_ping(iq) || payload.is_some_and(|p| p.is("session", SESSION_NS)) {
        return Some(stanza::iq_result(iq, None));
    }
    if let Some(answer) = disco::answer(iq, to_server, &st.shared.cfg) {
        return Some(answer);
    }
    if let Some(p) = payload.filter(|p| p.has_ns(CARBONS_NS)) {
        return Some(carbons(iq, p, st).await);
    }
    // Everything else (private XML storage and bookmarks,
    // vCards, version, blocking): RFC 6120 §8.4, not implemented.
    stanza::error_reply(iq, "cancel", "service-unavailable")
}
