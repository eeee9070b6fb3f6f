//! Presence for a local user (RFC 6121 §3–4): subscription requests and answers from
//! contacts, and probes, answered from the presences the user's sessions hold.

use actix::prelude::*;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::super::roster;
use super::super::route::Route;
use super::super::stanza::{self, CLIENT_NS};
use super::record::Entry;
use super::state::User;
use crate::store::LoadRoster;

impl User {
    /// Subscription presence for this user (RFC 6121 §3): the user's roster changes, is
    /// pushed to the user's sessions, and the presence reaches them when it should. A
    /// request that finds no session stays on the roster and is shown at the next login.
    pub(super) fn inbound_subscription(&mut self, stanza: Element, ctx: &mut Context<Self>) {
        let Some(contact) = stanza
            .attr("from")
            .and_then(crate::jid::parse::<Jid>)
            .map(|f| f.to_bare().to_string())
        else {
            return;
        };
        let max = self.shared.cfg.roster_max_items;
        // Through the roster's one path: a contact approving and asking back sends two
        // in a row (Conversations, Prosody's users), while the user may be answering.
        self.with_roster(ctx, move |act, roster, ctx| {
            if let Some(roster) = roster {
                act.subscription_arrived(roster, contact, stanza, max, ctx);
            }
        });
    }

    fn subscription_arrived(
        &mut self,
        roster: Vec<(String, crate::store::RosterItem)>,
        contact: String,
        stanza: Element,
        max: usize,
        ctx: &mut Context<Self>,
    ) {
        let existing = roster
            .iter()
            .find(|(c, _)| *c == contact)
            .map(|(_, i)| i.clone());
        if existing.is_none() && roster.len() >= max {
            tracing::info!(user = %self.name, "roster_max_items reached: subscription request dropped");
            return;
        }
        let mut item = existing.unwrap_or_default();
        let kind = stanza.attr("type").unwrap_or_default().to_string();
        let (changed, deliver) = roster::inbound(&mut item, &kind, &stanza);
        if changed {
            // Queued now, before the next message's read (not notified: a notification
            // would run after it).
            let write = self.save_roster_item(contact.clone(), Some(item));
            ctx.spawn(write.map(|_, _, _| ()));
        }
        if deliver {
            self.send_to_available(&stanza, ctx);
        }
        // The contact approved the user's request: its server sends the contact's
        // current presence right after the approval (RFC 6121 §3.1.5), so the user sees
        // the contact online without waiting for the contact's next presence change. A
        // probe from the user asks for it: a local contact's user actor answers as to any
        // probe (the approval is stored); a remote contact's server answers the probe
        // over the link, which also covers a server that does not send it unasked.
        if changed && kind == "subscribed" {
            let mut probe = Element::builder("presence", CLIENT_NS).build();
            stanza::set_attr(&mut probe, "type", "probe");
            stanza::set_attr(&mut probe, "from", &self.bare);
            stanza::set_attr(&mut probe, "to", &contact);
            self.shared.route.do_send(Route(probe));
        }
    }

    /// A contact asks for the user's presence: answered with each available session's
    /// presence, if the user lets the contact see it.
    pub(super) fn answer_probe(&mut self, probe: Element, ctx: &mut Context<Self>) {
        let Some(from) = probe.attr("from").map(str::to_string) else {
            return;
        };
        let Some(contact) = crate::jid::parse::<Jid>(&from).map(|j| j.to_bare().to_string()) else {
            return;
        };
        if !self.sessions.iter().any(Entry::available) {
            // Nothing to answer with (RFC 6121 §4.3.2: no presence is sent for a user
            // with no available resource).
            return;
        }
        let load = self.shared.store.send(LoadRoster {
            user: self.name.clone(),
        });
        self.in_flight += 1;
        ctx.spawn(load.into_actor(self).map(move |res, act, ctx| {
            act.in_flight -= 1;
            let allowed = matches!(&res, Ok(Ok(r)) if r.iter().any(|(c, i)| *c == contact && i.subscription.from()));
            if allowed {
                act.send_presences(&from);
            }
            act.after_store_request(ctx);
        }));
    }
}

/// Send the current presence of each of the user's available sessions to `to`: a
/// remote contact whose subscription the user just approved.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PresencesTo {
    pub to: String,
}

impl Handler<PresencesTo> for User {
    type Result = ();

    fn handle(&mut self, msg: PresencesTo, _: &mut Context<Self>) {
        self.send_presences(&msg.to);
    }
}

impl User {
    /// The current presence of each of the user's available sessions, to `to`.
    fn send_presences(&self, to: &str) {
        let presences = self
            .sessions
            .iter()
            .filter_map(|e| e.presence.as_deref()?.parse::<Element>().ok());
        for mut p in presences {
            stanza::set_attr(&mut p, "to", to);
            self.shared.route.do_send(Route(p));
        }
    }
}
