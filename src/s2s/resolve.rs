//! Where a remote domain's server listens: the `s2s_hosts` entry when there is one,
//! otherwise the domain's own addresses on port 5269 (RFC 6120 §3.2.2, the fallback
//! when a domain has no SRV records). SRV lookups (`_xmpp-server._tcp`,
//! `_xmpps-server._tcp`) are not done yet.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The port of server-to-server streams when DNS names none.
pub const DEFAULT_PORT: u16 = 5269;

/// The configured address of `domain`, if `s2s_hosts` names it.
pub fn fixed(domain: &str, hosts: &BTreeMap<String, SocketAddr>) -> Option<SocketAddr> {
    hosts.get(&domain.to_ascii_lowercase()).copied()
}

/// The addresses to try, in order; empty when the domain has none.
pub async fn addresses(domain: &str, hosts: &BTreeMap<String, SocketAddr>) -> Vec<SocketAddr> {
    if let Some(a) = fixed(domain, hosts) {
        return vec![a];
    }
    match tokio::net::lookup_host((domain, DEFAULT_PORT)).await {
        Ok(found) => found.collect(),
        Err(e) => {
            tracing::debug!(%domain, error = %e, "no address for the domain");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_host_wins_whatever_the_case() {
        let mut hosts = BTreeMap::new();
        let a: SocketAddr = "127.0.0.2:5270".parse().unwrap();
        hosts.insert("b.test".to_string(), a);
        assert_eq!(fixed("B.Test", &hosts), Some(a));
        assert_eq!(fixed("c.test", &hosts), None);
    }

    #[actix_rt::test]
    async fn an_unknown_name_has_no_address() {
        // `.invalid` never resolves (RFC 6761).
        assert!(
            addresses("nowhere.invalid", &BTreeMap::new())
                .await
                .is_empty()
        );
    }
}
