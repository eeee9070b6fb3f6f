//! The user's contacts as the host told the machine (for
//! `tigase:push:filter:ignore-unknown:0`): the bare JIDs on the roster, sorted. Data only,
//! like the rest of the machine's state.

/// At most `roster_max_items` bare JIDs, sorted and without repeats.
#[derive(Debug, Default)]
pub(super) struct Contacts {
    jids: Vec<String>,
}

impl Contacts {
    /// The set of `jids`, keeping the first `max` in order once sorted: the roster is
    /// already bounded by the same limit, so this only stops a host that is wrong.
    pub fn new(mut jids: Vec<String>, max: usize) -> Contacts {
        jids.sort();
        jids.dedup();
        jids.truncate(max);
        jids.shrink_to_fit();
        Contacts { jids }
    }

    pub fn contains(&self, jid: &str) -> bool {
        self.jids.binary_search_by(|j| j.as_str().cmp(jid)).is_ok()
    }

    /// Adds or removes `jid`; an addition past `max` is not kept (the roster refuses
    /// such an item itself).
    pub fn set(&mut self, jid: &str, contact: bool, max: usize) {
        match (self.jids.binary_search_by(|j| j.as_str().cmp(jid)), contact) {
            (Err(at), true) if self.jids.len() < max => self.jids.insert(at, jid.to_string()),
            (Ok(at), false) => {
                self.jids.remove(at);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_sorted_and_updated() {
        let mut c = Contacts::new(vec!["b@x".into(), "a@x".into(), "b@x".into()], 2);
        assert!(c.contains("a@x") && c.contains("b@x"));
        c.set("c@x", true, 2);
        assert!(!c.contains("c@x"), "past the bound");
        c.set("a@x", false, 2);
        c.set("c@x", true, 2);
        assert!(!c.contains("a@x") && c.contains("c@x"));
        let c = Contacts::new(vec!["z@x".into(), "y@x".into(), "x@x".into()], 2);
        assert!(c.contains("x@x") && c.contains("y@x") && !c.contains("z@x"));
    }
}
