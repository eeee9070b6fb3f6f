//! The publishes awaiting an app server's answer (D10), bounded by
//! `push_max_pending_publishes`.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::push::interface::StanzaKey;

pub(super) struct Publish {
    pub identifier: String,
    pub sent_at: Instant,
    /// The D13 mark this publish set, taken back if the host could not route it.
    pub mark: Option<StanzaKey>,
    /// A test push waits for this publish's end.
    pub watched: bool,
    /// Our server-to-server layer failed to deliver it (condition, reason) and holds it
    /// for a retry (D21): unanswered, it ends as that failure, not as a timeout.
    pub s2s_failure: Option<(String, String)>,
}

#[derive(Default)]
pub(super) struct Outstanding {
    map: HashMap<String, Publish>,
    /// Publish ids in sending order, to find the oldest when the map is full. It may
    /// hold ids already answered; [`insert`](Self::insert) keeps it within twice the map.
    order: VecDeque<String>,
}

impl Outstanding {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.map.contains_key(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Publish> {
        self.map.get_mut(id)
    }

    pub fn remove(&mut self, id: &str) -> Option<Publish> {
        self.map.remove(id)
    }

    /// The oldest publish still awaited, once the map holds `max`: the one to give up on
    /// before another is sent.
    pub fn oldest_if_full(&mut self, max: usize) -> Option<String> {
        if self.map.len() < max {
            return None;
        }
        while let Some(oldest) = self.order.pop_front() {
            if self.map.contains_key(&oldest) {
                return Some(oldest);
            }
        }
        None
    }

    pub fn insert(&mut self, id: String, publish: Publish, max: usize) {
        self.order.push_back(id.clone());
        self.map.insert(id, publish);
        if self.order.len() > 2 * max {
            let live = &self.map;
            self.order.retain(|id| live.contains_key(id));
        }
    }

    /// The ids of the publishes to this registration.
    pub fn of(&self, identifier: &str) -> Vec<String> {
        self.map
            .iter()
            .filter(|(_, p)| p.identifier == identifier)
            .map(|(id, _)| id.clone())
            .collect()
    }
}
