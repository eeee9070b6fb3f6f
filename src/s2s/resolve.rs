//! Where a remote domain's server listens (RFC 6120 §3.2, XEP-0368): the `s2s_hosts`
//! entry when there is one; an IP literal as it is, on 5269; otherwise the domain's
//! `_xmpps-server._tcp` (TLS from the first byte) and `_xmpp-server._tcp` (STARTTLS) SRV
//! records together in RFC 2782's order (`srv_order`), each target's addresses on its port; and with no
//! SRV record the domain's own A/AAAA records on 5269. SRV records whose targets are all
//! "." say the domain has no server-to-server service at all.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use super::srv_order;
pub use super::srv_order::Srv;

/// The port of server-to-server streams when DNS names none.
pub const DEFAULT_PORT: u16 = 5269;

pub type Resolver = TokioResolver;

/// The resolver: the system's (/etc/resolv.conf), or the one DNS server given
/// (`s2s_dns_server`). A system without a readable resolver configuration gets a
/// resolver that finds nothing (logged): the server still runs, and remote domains
/// without an `s2s_hosts` entry bounce `remote-server-not-found`.
pub fn resolver(dns_server: Option<SocketAddr>) -> Result<Resolver, String> {
    let builder = match dns_server {
        None => TokioResolver::builder_tokio().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no system DNS configuration: other domains are found only through s2s_hosts");
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(Vec::new()),
                TokioRuntimeProvider::default(),
            )
        }),
        Some(a) => {
            let mut ns = NameServerConfig::udp_and_tcp(a.ip());
            for c in &mut ns.connections {
                c.port = a.port();
            }
            let config = ResolverConfig::from_name_servers(vec![ns]);
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        }
    };
    builder.build().map_err(|e| e.to_string())
}

/// The configured address of `domain`, if `s2s_hosts` names it.
pub fn fixed(domain: &str, hosts: &BTreeMap<String, SocketAddr>) -> Option<SocketAddr> {
    hosts.get(&domain.to_ascii_lowercase()).copied()
}

/// Where to connect, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub direct_tls: bool,
}

impl Target {
    fn starttls(addr: SocketAddr) -> Self {
        Target {
            addr,
            direct_tls: false,
        }
    }
}

async fn ips(resolver: &Resolver, host: &str, port: u16, direct_tls: bool) -> Vec<Target> {
    match resolver.lookup_ip(host).await {
        Ok(found) => found
            .iter()
            .map(|ip| Target {
                addr: SocketAddr::new(ip, port),
                direct_tls,
            })
            .collect(),
        Err(e) => {
            tracing::debug!(%host, error = %e, "no address");
            Vec::new()
        }
    }
}

/// The SRV records of `service` (`_xmpp-server` or `_xmpps-server`) for `domain`; none
/// when the lookup finds none or fails.
pub async fn srv(resolver: &Resolver, service: &str, domain: &str) -> Vec<Srv> {
    let direct_tls = service == "_xmpps-server";
    match resolver
        .srv_lookup(format!("{service}._tcp.{domain}."))
        .await
    {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: s.target.to_string(),
                    direct_tls,
                }),
                _ => None,
            })
            .collect(),
        Err(e) => {
            tracing::debug!(%domain, %service, error = %e, "no SRV record");
            Vec::new()
        }
    }
}

/// The A/AAAA addresses of `host`; none when the lookup finds none or fails.
pub async fn host_ips(resolver: &Resolver, host: &str) -> Vec<IpAddr> {
    resolver
        .lookup_ip(host)
        .await
        .map(|found| found.iter().collect())
        .unwrap_or_default()
}

/// The places to try, in order; empty when the domain has none.
pub async fn addresses(
    domain: &str,
    hosts: &BTreeMap<String, SocketAddr>,
    resolver: &Resolver,
) -> Vec<Target> {
    if let Some(a) = fixed(domain, hosts) {
        return vec![Target::starttls(a)];
    }
    if let Ok(ip) = domain.parse::<IpAddr>() {
        return vec![Target::starttls(SocketAddr::new(ip, DEFAULT_PORT))];
    }
    let mut records = srv(resolver, "_xmpps-server", domain).await;
    records.extend(srv(resolver, "_xmpp-server", domain).await);
    if records.is_empty() {
        return ips(resolver, &format!("{domain}."), DEFAULT_PORT, false).await;
    }
    let Some(targets) = srv_order::order(records, &mut srv_order::system_draw) else {
        tracing::info!(%domain, "the domain's SRV record says it has no server-to-server service");
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in targets {
        out.extend(ips(resolver, &r.target, r.port, r.direct_tls).await);
    }
    out
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
}
