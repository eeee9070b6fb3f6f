//! Which app servers' domains the stored registrations publish to, for `cloud-notify
//! check`'s network half: read from the registrations table, by the server's store actor
//! (through the admin socket) or straight from the file when no server runs.

use std::collections::BTreeMap;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::record::RegistrationRecord;

/// At most this many distinct domains are counted: clients choose their app servers'
/// JIDs, so the count is bounded here, not by what they sent.
pub const MAX_DOMAINS: usize = 1000;

/// The app servers' domains with how many registrations name each, most used first;
/// `uncounted`: registrations whose domain did not fit within [`MAX_DOMAINS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppServerDomains {
    pub domains: Vec<(String, u64)>,
    pub uncounted: u64,
}

/// The domain of a stored app server JID (`push.example.net`, `app@push.example.net`,
/// `push.example.net/r`), lowercased.
fn domain_of(jid: &str) -> &str {
    let bare = jid.split('/').next().unwrap_or(jid);
    bare.rsplit('@').next().unwrap_or(bare)
}

/// Scans the registrations table. A record that no longer decodes is skipped: `check`
/// reports what it can reach, and the server reports damaged records itself.
pub fn scan(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
) -> Result<AppServerDomains, redb::StorageError> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut uncounted = 0;
    for row in table.iter()? {
        let (_, value) = row?;
        let Ok(record) = RegistrationRecord::decode(value.value()) else {
            continue;
        };
        let domain = domain_of(&record.jid).to_ascii_lowercase();
        let room = counts.len() < MAX_DOMAINS;
        match counts.get_mut(&domain) {
            Some(n) => *n += 1,
            None if room => {
                counts.insert(domain, 1);
            }
            None => uncounted += 1,
        }
    }
    let mut domains: Vec<(String, u64)> = counts.into_iter().collect();
    domains.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(AppServerDomains { domains, uncounted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_is_the_jids_domain_part() {
        assert_eq!(domain_of("push.example.net"), "push.example.net");
        assert_eq!(domain_of("app@push.example.net/r1"), "push.example.net");
        assert_eq!(domain_of("push.example.net/a@b"), "push.example.net");
    }
}
