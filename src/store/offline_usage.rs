//! What a user's offline storage holds (count, bytes, last sequence), counted once per
//! write transaction and kept up to date inside it. Counting reads every stored message
//! of the user; doing it for every push made a flood at a full store cost the store's
//! thread (and every login queued behind it) the whole storage per message.

use std::collections::HashMap;

use redb::ReadableTable;

use super::ops::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub count: usize,
    pub bytes: usize,
    pub last: u64,
}

/// Lives for one transaction; holds at most the users that transaction touched.
#[derive(Default)]
pub struct OfflineUsage(HashMap<String, Usage>);

impl OfflineUsage {
    pub fn get(
        &mut self,
        table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
        user: &str,
    ) -> Result<&mut Usage, StoreError> {
        if !self.0.contains_key(user) {
            let mut usage = Usage {
                count: 0,
                bytes: 0,
                last: 0,
            };
            for e in table.range((user, 0)..=(user, u64::MAX))? {
                let (k, v) = e?;
                usage.count += 1;
                usage.bytes = usage.bytes.saturating_add(v.value().len());
                usage.last = k.value().1;
            }
            self.0.insert(user.to_string(), usage);
        }
        self.0
            .get_mut(user)
            .ok_or_else(|| StoreError::Failed("offline usage lost".into()))
    }

    /// The user's messages changed some other way (deleted): count again when needed.
    pub fn forget(&mut self, user: &str) {
        self.0.remove(user);
    }
}
