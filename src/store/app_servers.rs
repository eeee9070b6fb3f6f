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
    use crate::store::schema::PUSH_REGISTRATIONS;
    use redb::ReadableDatabase;

    fn encoded(jid: &str) -> Vec<u8> {
        RegistrationRecord {
            jid: jid.into(),
            node: None,
            publish_options: None,
            enabled_at_us: 1,
            client: "phone".into(),
            language: None,
            error_count: 0,
            last_success: None,
            last_error: None,
            last_timeout: None,
            extensions: None,
            last_s2s_failure: None,
        }
        .encode()
        .unwrap()
    }

    /// Most used first; past MAX_DOMAINS distinct domains the rest are only counted; a
    /// record that no longer decodes is skipped.
    #[test]
    fn domains_are_counted_within_the_bound() {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(PUSH_REGISTRATIONS).unwrap();
            let users: Vec<String> = (0..MAX_DOMAINS + 5).map(|i| format!("u{i:05}")).collect();
            for (i, user) in users.iter().enumerate() {
                // u00000 and u00001 take the same domain first; then one each.
                let jid = format!("app@d{:05}.example", i.saturating_sub(1));
                t.insert((user.as_str(), "r"), encoded(&jid).as_slice())
                    .unwrap();
            }
            t.insert(("broken", "r"), [0xffu8, 0xff, 0xff].as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        let found = scan(&read.open_table(PUSH_REGISTRATIONS).unwrap()).unwrap();
        assert_eq!(found.domains.len(), MAX_DOMAINS);
        assert_eq!(found.domains[0], ("d00000.example".to_string(), 2));
        assert_eq!(found.uncounted, 4);
    }

    #[test]
    fn the_domain_is_the_jids_domain_part() {
        assert_eq!(domain_of("push.example.net"), "push.example.net");
        assert_eq!(domain_of("app@push.example.net/r1"), "push.example.net");
        assert_eq!(domain_of("push.example.net/a@b"), "push.example.net");
    }
}
