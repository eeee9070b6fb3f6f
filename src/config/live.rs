//! The configuration the server runs with, as one handle that SIGHUP can change: what
//! it started with, with the keys a reload applies (`xmpp::reload`) brought to their new
//! values. The parts that decide with such a key read the handle at the moment they
//! decide, so a reload reaches them without a restart and without a message to each.
//!
//! Generic over what it holds only so that this file needs nothing from `config.rs`
//! (which names it `LiveConfig`).

use std::sync::{Arc, RwLock};

#[derive(Debug)]
pub struct Live<T>(Arc<RwLock<Arc<T>>>);

// By hand: a derive would ask `T: Clone`, and the value is never cloned, only shared.
impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T> Live<T> {
    pub fn new(cfg: Arc<T>) -> Live<T> {
        Live(Arc::new(RwLock::new(cfg)))
    }

    /// The configuration in force now: a read lock and a reference count, cheap enough
    /// for every decision.
    pub fn get(&self) -> Arc<T> {
        // A panic while the lock is held stops the process (main's panic hook), so a
        // poisoned lock still holds a whole value.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every holder of the handle reads `cfg` from now on.
    pub fn set(&self, cfg: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
    }
}

/// A handle nobody changes: for hosts without SIGHUP (the stand-alone push hub, tests).
impl<T> From<Arc<T>> for Live<T> {
    fn from(cfg: Arc<T>) -> Self {
        Live::new(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, LiveConfig};

    #[test]
    fn every_clone_reads_what_was_set_last() {
        let live = LiveConfig::new(Arc::new(Config::default()));
        let other = live.clone();
        let before = other.get();
        live.set(Config {
            offline_max_messages: 7,
            ..Config::default()
        });
        assert_eq!(other.get().offline_max_messages, 7);
        assert_eq!(
            before.offline_max_messages,
            Config::default().offline_max_messages,
            "a value already read stays as it was"
        );
    }
}
