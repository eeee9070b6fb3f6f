//! `check`'s network half (skipped with `--offline`): what our domain's DNS tells other
//! servers, and whether each remote app server's domain that registrations publish to
//! can be reached the way a link reaches it (`s2s::probe`). The texts are decided here,
//! from what the probe found; the probe does the talking.

use std::sync::Arc;

use super::Finding;
use crate::config::Config;
use crate::s2s::negotiate;
use crate::s2s::probe::{OwnRecords, Probe, Reached, Unreached};
use crate::s2s::resolve::{DEFAULT_PORT, Srv, Target};
use crate::store::app_servers::AppServerDomains;

/// At most this many app servers' domains are probed, the most used first; the rest are
/// named as not checked.
pub const MAX_PROBED: usize = 20;

fn records(name: &str, records: &[Srv]) -> String {
    let targets: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{}:{} (priority {}, weight {})",
                r.target.trim_end_matches('.'),
                r.port,
                r.priority,
                r.weight
            )
        })
        .collect();
    match targets.is_empty() {
        true => format!("{name}: none"),
        false => format!("{name}: {}", targets.join(", ")),
    }
}

fn is_dot(r: &Srv) -> bool {
    r.target == "." || r.target.is_empty()
}

/// What other servers find for our domain, and what it means for federation.
pub fn own_domain(cfg: &Config, r: &OwnRecords) -> Finding {
    let domain = &cfg.domain;
    if r.timed_out {
        return Finding::ok(format!(
            "our domain {domain}: no DNS answer within s2s_timeout: what other servers \
             find for it is unknown"
        ));
    }
    let only_ours = "other servers cannot connect to us: only our own links carry \
                     stanzas, and what a peer sends back (app servers' answers included) \
                     comes on them only when it uses them both ways (XEP-0288)";
    let all: Vec<&Srv> = r.starttls.iter().chain(&r.direct_tls).collect();
    let listen_note = match cfg.s2s_listen {
        None => "; s2s_listen is unset, so nothing here answers them",
        Some(_) => "",
    };
    if !all.is_empty() && all.iter().all(|s| is_dot(s)) {
        return Finding::ok(format!(
            "our domain {domain}: its SRV record says it has no server-to-server service: \
             {only_ours}"
        ));
    }
    if !all.is_empty() {
        return Finding::ok(format!(
            "our domain {domain}: {}; {}: other servers connect there{listen_note}",
            records("_xmpp-server._tcp", &r.starttls),
            records("_xmpps-server._tcp", &r.direct_tls),
        ));
    }
    if !r.addresses.is_empty() {
        let addresses: Vec<String> = r.addresses.iter().map(|a| a.to_string()).collect();
        return Finding::ok(format!(
            "our domain {domain} has no _xmpp-server._tcp or _xmpps-server._tcp SRV record: \
             other servers connect to its address ({}) on port {DEFAULT_PORT}{listen_note}",
            addresses.join(", ")
        ));
    }
    Finding::ok(format!(
        "our domain {domain} has no _xmpp-server._tcp or _xmpps-server._tcp SRV record and \
         no A/AAAA record: {only_ours}"
    ))
}

fn how(target: &Target) -> String {
    let tls = match target.direct_tls {
        true => "direct TLS",
        false => "STARTTLS",
    };
    format!("{} ({tls})", target.addr)
}

/// One remote app server's domain, as a link would reach it. Unreachable, or with a
/// certificate `s2s_secure_auth` refuses, it fails the check: publishes to it fail.
pub fn app_server(
    cfg: &Config,
    domain: &str,
    registrations: u64,
    found: &Result<Reached, Unreached>,
) -> Finding {
    let s = if registrations == 1 { "" } else { "s" };
    let which = format!("app server domain {domain} ({registrations} registration{s})");
    match found {
        Ok(r) if r.certificate_valid => Finding::ok(format!(
            "{which}: reached at {}; its certificate is valid for {domain}",
            how(&r.target)
        )),
        Ok(r) if negotiate::dialback_allowed(cfg, domain) => Finding::ok(format!(
            "{which}: reached at {}; its certificate is not valid for {domain}, which our \
             links accept (s2s_secure_auth does not require it)",
            how(&r.target)
        )),
        Ok(r) => Finding::fail(format!(
            "{which}: reached at {}, but its certificate is not valid for {domain} and \
             s2s_secure_auth requires one: links to it fail",
            how(&r.target)
        )),
        Err(u) => Finding::fail(format!(
            "{which}: not reached{}: {}; publishes to it fail (push list shows the \
             failure)",
            u.target
                .as_ref()
                .map_or(String::new(), |t| format!(" at {}", how(t))),
            u.error
        )),
    }
}

/// The app servers' domains worth probing: not ours, not a component's (those are
/// reached without a link); at most [`MAX_PROBED`], and how many were left out.
pub fn remote(cfg: &Config, found: &AppServerDomains) -> (Vec<(String, u64)>, u64) {
    let mut remote: Vec<(String, u64)> = found
        .domains
        .iter()
        .filter(|(d, _)| !negotiate::served(cfg, d))
        .cloned()
        .collect();
    let mut left_out = found.uncounted;
    if remote.len() > MAX_PROBED {
        left_out += remote
            .split_off(MAX_PROBED)
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>();
    }
    (remote, left_out)
}

/// Runs the network half: `domains` are the registrations' app servers' domains.
pub fn run(cfg: &Config, domains: Result<AppServerDomains, String>) -> Vec<Finding> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return vec![Finding::fail(format!("network checks not run: {e}"))],
    };
    let cfg = Arc::new(cfg.clone());
    runtime.block_on(async {
        let probe = match Probe::new(cfg.clone()) {
            Ok(p) => p,
            Err(e) => return vec![Finding::fail(format!("network checks not run: {e}"))],
        };
        let mut out = vec![own_domain(&cfg, &probe.own_records().await)];
        let domains = match domains {
            Ok(d) => d,
            Err(e) => {
                out.push(Finding::fail(format!(
                    "the registrations' app servers could not be read: {e}"
                )));
                return out;
            }
        };
        let (remote, left_out) = remote(&cfg, &domains);
        if remote.is_empty() {
            out.push(Finding::ok(
                "no registration publishes to an app server on another domain",
            ));
        }
        // Concurrently: each is bounded by s2s_timeout, and there are at most MAX_PROBED.
        let probes = remote.iter().map(|(d, _)| probe.reach(d));
        let found = futures::future::join_all(probes).await;
        for ((domain, n), f) in remote.iter().zip(&found) {
            out.push(app_server(&cfg, domain, *n, f));
        }
        if left_out > 0 {
            out.push(Finding::ok(format!(
                "{left_out} registrations publish to app servers' domains not checked (only \
                 the {MAX_PROBED} most used are)"
            )));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s2s::connect::LinkError;

    fn cfg() -> Config {
        Config {
            domain: "example.com".into(),
            ..Config::default()
        }
    }

    fn srv(target: &str, port: u16) -> Srv {
        Srv {
            priority: 0,
            weight: 5,
            port,
            target: target.into(),
            direct_tls: false,
        }
    }

    #[test]
    fn no_record_at_all_means_only_our_links() {
        let f = own_domain(&cfg(), &OwnRecords::default());
        assert!(f.ok);
        assert!(
            f.what.contains(
                "no _xmpp-server._tcp or _xmpps-server._tcp SRV record and no A/AAAA record"
            ),
            "{}",
            f.what
        );
        assert!(f.what.contains("only our own links"), "{}", f.what);
    }

    #[test]
    fn srv_records_are_listed_and_an_unset_listener_is_named() {
        let r = OwnRecords {
            starttls: vec![srv("xmpp.example.com.", 5269)],
            ..OwnRecords::default()
        };
        let f = own_domain(&cfg(), &r);
        assert!(
            f.what
                .contains("_xmpp-server._tcp: xmpp.example.com:5269 (priority 0, weight 5)"),
            "{}",
            f.what
        );
        assert!(f.what.contains("_xmpps-server._tcp: none"), "{}", f.what);
        assert!(f.what.contains("s2s_listen is unset"), "{}", f.what);
        let dot = OwnRecords {
            starttls: vec![srv(".", 0)],
            ..OwnRecords::default()
        };
        assert!(
            own_domain(&cfg(), &dot)
                .what
                .contains("no server-to-server service")
        );
    }

    #[test]
    fn an_address_without_srv_is_where_peers_go() {
        let r = OwnRecords {
            addresses: vec!["192.0.2.1".parse().unwrap()],
            ..OwnRecords::default()
        };
        let f = own_domain(&cfg(), &r);
        assert!(
            f.what
                .contains("connect to its address (192.0.2.1) on port 5269"),
            "{}",
            f.what
        );
    }

    #[test]
    fn a_certificate_counts_only_where_s2s_secure_auth_asks_for_it() {
        let reached = Ok(Reached {
            target: Target {
                addr: "127.0.0.1:5269".parse().unwrap(),
                direct_tls: true,
            },
            certificate_valid: false,
        });
        let lax = app_server(&cfg(), "push.example.net", 2, &reached);
        assert!(
            lax.ok && lax.what.contains("127.0.0.1:5269 (direct TLS)"),
            "{}",
            lax.what
        );
        let strict = Config {
            s2s_secure_auth: true,
            ..cfg()
        };
        assert!(!app_server(&strict, "push.example.net", 2, &reached).ok);
    }

    #[test]
    fn an_unreached_domain_fails_with_the_reason() {
        let f = app_server(
            &cfg(),
            "push.example.net",
            1,
            &Err(Unreached {
                target: None,
                error: LinkError::NoAddress,
            }),
        );
        assert!(!f.ok);
        assert!(
            f.what
                .contains("(1 registration): not reached: no DNS record"),
            "{}",
            f.what
        );
    }

    #[test]
    fn local_domains_are_not_probed_and_the_rest_is_bounded() {
        let mut c = cfg();
        c.components = vec![crate::config::ComponentConfig {
            jid: "push.example.com".into(),
            secret: "s".into(),
        }];
        let mut domains: Vec<(String, u64)> =
            vec![("example.com".into(), 9), ("push.example.com".into(), 8)];
        domains.extend((0..MAX_PROBED + 2).map(|i| (format!("d{i}.example.net"), 1)));
        let (remote, left_out) = remote(
            &c,
            &AppServerDomains {
                domains,
                uncounted: 3,
            },
        );
        assert_eq!(remote.len(), MAX_PROBED);
        assert!(remote.iter().all(|(d, _)| d.ends_with(".example.net")));
        assert_eq!(left_out, 2 + 3);
    }
}
