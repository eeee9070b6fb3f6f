//! XEP-0198 resumption: a new connection takes over a session, hibernated or (when the
//! client noticed the loss before the server did) still connected.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use actix::prelude::*;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;

use super::super::route::ToSocket;
use super::super::sm::{SM_NS, SmState};
use super::super::stanza;
use super::record::{EndKind, Link};
use super::state::User;
use crate::push::SessionId;
use crate::push::machine::Event;

/// `<resume previd=… h=…/>` from a new connection of this user.
#[derive(Message)]
#[rtype(result = "Result<Resumed, ResumeError>")]
pub struct Resume {
    pub previd: String,
    pub h: u32,
}

/// The session, now on the new connection: write `first` (`<resumed/>`, then every
/// unacked stanza again) before anything from `rx`.
pub struct Resumed {
    pub id: SessionId,
    pub jid: FullJid,
    pub rx: flume::Receiver<ToSocket>,
    pub received: Arc<AtomicU32>,
    pub conn: u64,
    pub first: Vec<Element>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeError {
    /// No such resumable session (the router may still know its last `h`).
    NotFound,
    /// The client acknowledged more than was sent: the session ended.
    HandledCountTooHigh,
}

impl Handler<Resume> for User {
    type Result = Result<Resumed, ResumeError>;

    fn handle(&mut self, msg: Resume, ctx: &mut Context<Self>) -> Self::Result {
        self.count_router_message(ctx);
        let result = self.resume(msg, ctx);
        self.account();
        self.report_if_idle(ctx);
        result
    }
}

impl User {
    fn resume(&mut self, msg: Resume, ctx: &mut Context<Self>) -> Result<Resumed, ResumeError> {
        let i = self
            .sessions
            .iter()
            .position(|e| e.live() && e.resume_id() == Some(msg.previd.as_str()))
            .ok_or(ResumeError::NotFound)?;
        let id = self.sessions[i].id;
        let acked = match self.sessions[i].sm.as_mut().map(|sm| sm.on_ack(msg.h)) {
            Some(Ok(())) => self.sessions[i].sm.as_ref().map_or(0, |sm| sm.acked()),
            _ => {
                self.end_session(id, EndKind::Conflict, ctx);
                return Err(ResumeError::HandledCountTooHigh);
            }
        };
        self.flush_pending(id, ctx);
        // Found again: feeding the push module may change the sessions.
        let i = self.index_of(id).ok_or(ResumeError::NotFound)?;
        // As large as the channel the session was enabled on: its queue's bound stays.
        let sm_queue = self.sessions[i].sm.as_ref().map_or(0, SmState::max_queue);
        let (mut socket, rx) = self.new_socket(sm_queue);
        let ack_delay = self.shared.cfg.smacks_max_ack_delay;
        let e = &mut self.sessions[i];
        match &mut e.link {
            Link::Connected(old) => {
                // The client is back before the server noticed it was gone: the old
                // connection ends, its count of received stanzas carries on.
                let _ = old.tx.try_send(ToSocket::Close("conflict"));
                socket.received = old.received.clone();
            }
            Link::Hibernated(h) => {
                if let Some(t) = h.timer.take() {
                    ctx.cancel_future(t);
                }
                socket.received = Arc::new(AtomicU32::new(h.received));
                self.shared.gauges.hibernated(false);
            }
            Link::Closing(_) => return Err(ResumeError::NotFound),
        }
        if let Some(t) = e.ack_timer.take() {
            ctx.cancel_future(t);
        }
        e.ack_overdue_sent = false;
        let received = socket.received.load(Ordering::Relaxed);
        let mut first = Vec::new();
        let mut resumed = Element::builder("resumed", SM_NS).build();
        if let Some(sm) = &e.sm {
            stanza::set_attr(&mut resumed, "previd", &sm.id);
            stanza::set_attr(&mut resumed, "h", &received.to_string());
            first.push(resumed);
            first.extend(sm.unacked().into_iter().map(|(_, s)| s));
            if sm.unacked_len() > 0 {
                first.push(Element::builder("r", SM_NS).build());
                e.ack_timer =
                    Some(ctx.run_later(ack_delay, move |act, ctx| act.ack_overdue(id, ctx)));
            }
        }
        let resumed = Resumed {
            id,
            jid: e.jid.clone(),
            rx,
            received: socket.received.clone(),
            conn: socket.conn,
            first,
        };
        e.link = Link::Connected(socket);
        self.push_event(Event::Resumed { session: id, acked }, ctx);
        tracing::info!("session resumed");
        Ok(resumed)
    }
}
