//! A session's MAM IQs: a query runs against the store and its results go to the
//! session before the IQ's answer (XEP-0313 §4.2); the query form; the preferences.

use xmpp_parsers::minidom::Element;

use super::query::{self, Refusal};
use super::{MAM_NS, results};
use crate::store::{LoadArchivePrefs, QueryArchive};
use crate::xmpp::bound::Bound;
use crate::xmpp::connection::Xml;
use crate::xmpp::stanza;
use crate::xmpp::user::SetArchivePrefs;

/// Answers `iq` when it is a MAM IQ: `None` when it is not one, otherwise whether the
/// session goes on (`false`: writing to it failed).
pub async fn answer(iq: &Element, xml: &mut Xml, st: &Bound) -> Option<bool> {
    let payload = iq.children().next()?;
    if !payload.has_ns(MAM_NS) {
        return None;
    }
    let reply = match (payload.name(), iq.attr("type")) {
        ("query", Some("get")) => stanza::iq_result(iq, Some(query::form())),
        ("query", Some("set")) => return Some(run_query(iq, payload, xml, st).await),
        ("prefs", Some("get" | "set")) => prefs(iq, payload, st).await?,
        _ => stanza::error_reply(iq, "cancel", "service-unavailable")?,
    };
    Some(st.reply(xml, reply).await)
}

async fn run_query(iq: &Element, payload: &Element, xml: &mut Xml, st: &Bound) -> bool {
    let req = match query::parse(payload, &st.user, st.shared.cfg.max_archive_query_results) {
        Ok(r) => r,
        Err(refused) => {
            return match refusal(iq, &refused) {
                Some(r) => st.reply(xml, r).await,
                None => true,
            };
        }
    };
    let page = match st.shared.store.send(QueryArchive(req.archive)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::warn!(user = %st.user, error = %e, "archive query failed");
            let (kind, condition) = match e {
                crate::store::StoreError::Busy => ("wait", "resource-constraint"),
                _ => ("wait", "internal-server-error"),
            };
            return match stanza::error_reply(iq, kind, condition) {
                Some(r) => st.reply(xml, r).await,
                None => true,
            };
        }
        Err(_) => return false,
    };
    if page.unknown_id {
        let refused = Refusal {
            error_type: "cancel",
            condition: "item-not-found",
            text: "an id the query names is not in this archive".into(),
        };
        return match refusal(iq, &refused) {
            Some(r) => st.reply(xml, r).await,
            None => true,
        };
    }
    let ends = page
        .rows
        .first()
        .zip(page.rows.last())
        .map(|(a, b)| (a.id, b.id));
    let mut rows = page.rows;
    if req.flip {
        rows.reverse();
    }
    let to = st.jid.to_string();
    for row in &rows {
        match results::result_message(row, req.query_id.as_deref(), &to) {
            Some(m) => {
                if !st.reply(xml, m).await {
                    return false;
                }
            }
            None => tracing::error!(
                user = %st.user,
                id = row.id,
                "an archived message does not parse: left out of the answer"
            ),
        }
    }
    let ends = ends.map(|(a, b)| if req.flip { (b, a) } else { (a, b) });
    let fin = results::fin(ends, page.complete);
    st.reply(xml, stanza::iq_result(iq, Some(fin))).await
}

/// XEP-0441: the preferences as stored (everything archived when never set), or set
/// (durable before answered) and answered as they now are. `None`: no answer is due.
async fn prefs(iq: &Element, payload: &Element, st: &Bound) -> Option<Element> {
    let user = st.user.clone();
    if iq.attr("type") == Some("get") {
        return match st.shared.store.send(LoadArchivePrefs { user }).await {
            Ok(Ok(p)) => Some(stanza::iq_result(
                iq,
                Some(super::prefs::build(&p.unwrap_or_default())),
            )),
            _ => stanza::error_reply(iq, "wait", "internal-server-error"),
        };
    }
    let p = match super::prefs::parse(payload, st.shared.cfg.roster_max_items) {
        Ok(p) => p,
        Err(refused) => return refusal(iq, &refused),
    };
    // Through the user actor, which keeps its copy in step (mam/filter.rs).
    match st.owner.send(SetArchivePrefs { prefs: p.clone() }).await {
        Ok(true) => Some(stanza::iq_result(iq, Some(super::prefs::build(&p)))),
        _ => stanza::error_reply(iq, "wait", "internal-server-error"),
    }
}

/// The error answer to `iq` for `refused`, with its text.
fn refusal(iq: &Element, refused: &Refusal) -> Option<Element> {
    let mut reply = stanza::error_reply(iq, refused.error_type, refused.condition)?;
    let text = Element::builder("text", stanza::STANZAS_NS)
        .append(refused.text.as_str())
        .build();
    let ns = reply.ns();
    if let Some(err) = reply.get_child_mut("error", ns.as_str()) {
        err.append_child(text);
    }
    Some(reply)
}
