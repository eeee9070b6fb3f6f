//! Who may open a client connection: places under `c2s_max_connections` in total,
//! `c2s_max_connections_per_ip` per address and `c2s_max_unauthenticated` for
//! connections still negotiating. A flood from one address fills its own quota, not the
//! server; a flood from many stays within the unauthenticated quota, and sessions that
//! are bound keep their places.
//!
//! The quotas can change while the server runs (SIGHUP): a lower one closes no
//! connection, it refuses new ones until the count is under it again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::Config;

/// The address a quota is counted for: IPv4 as it is; IPv6 by its /64, which is what
/// one subscriber gets (counting single IPv6 addresses would give each attacker 2^64
/// quotas).
pub fn quota_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerAddress,
    Unauthenticated,
}

impl Refusal {
    pub fn option(self) -> &'static str {
        match self {
            Refusal::Total => "c2s_max_connections",
            Refusal::PerAddress => "c2s_max_connections_per_ip",
            Refusal::Unauthenticated => "c2s_max_unauthenticated",
        }
    }
}

/// The three limits of one kind of connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub total: usize,
    pub per_ip: usize,
    pub negotiating: usize,
}

impl Quotas {
    /// The inbound server-to-server connections' quotas of a configuration (a stream
    /// still negotiating counts against the total only).
    pub fn s2s(cfg: &Config) -> Self {
        Quotas {
            total: cfg.s2s_max_connections,
            per_ip: cfg.s2s_max_connections_per_ip,
            negotiating: cfg.s2s_max_connections,
        }
    }

    /// The client connections' quotas of a configuration.
    pub fn c2s(cfg: &Config) -> Self {
        Quotas {
            total: cfg.c2s_max_connections,
            per_ip: cfg.c2s_max_connections_per_ip,
            negotiating: cfg.c2s_max_unauthenticated,
        }
    }
}

/// The quotas in force and what is counted against them, under one lock: a check and
/// its count happen together, so two accepts cannot both take the last place.
struct State {
    quotas: Quotas,
    total: usize,
    negotiating: usize,
    per_ip: HashMap<IpAddr, usize>,
}

#[derive(Clone)]
pub struct Admission {
    state: Arc<Mutex<State>>,
}

/// A connection's place: freed when the socket goes (it travels with the transport, so
/// a hibernated session holds none and a resuming socket brings its own).
pub struct Place {
    ip: IpAddr,
    state: Arc<Mutex<State>>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut s = lock(&self.state);
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Held while the connection negotiates; dropped once a resource is bound.
pub struct Negotiating {
    state: Arc<Mutex<State>>,
}

impl Drop for Negotiating {
    fn drop(&mut self) {
        let mut s = lock(&self.state);
        s.negotiating = s.negotiating.saturating_sub(1);
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // The state holds counts only, each changed in one statement; a panic elsewhere
    // cannot leave it half-updated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Admission {
    pub fn new(cfg: &Config) -> Self {
        Admission::with_quotas(Quotas::c2s(cfg))
    }

    /// Quotas of another kind of connection (server-to-server streams).
    pub fn with_limits(total: usize, per_ip: usize, negotiating: usize) -> Self {
        Admission::with_quotas(Quotas {
            total,
            per_ip,
            negotiating,
        })
    }

    pub fn with_quotas(quotas: Quotas) -> Self {
        Admission {
            state: Arc::new(Mutex::new(State {
                quotas,
                total: 0,
                negotiating: 0,
                per_ip: HashMap::new(),
            })),
        }
    }

    pub fn admit(&self, peer: IpAddr) -> Result<(Place, Negotiating), Refusal> {
        let ip = quota_key(peer);
        let mut s = lock(&self.state);
        if s.negotiating >= s.quotas.negotiating {
            return Err(Refusal::Unauthenticated);
        }
        if s.total >= s.quotas.total {
            return Err(Refusal::Total);
        }
        let max_per_ip = s.quotas.per_ip;
        let n = s.per_ip.entry(ip).or_insert(0);
        if *n >= max_per_ip {
            if *n == 0 {
                s.per_ip.remove(&ip);
            }
            return Err(Refusal::PerAddress);
        }
        *n += 1;
        s.total += 1;
        s.negotiating += 1;
        drop(s);
        let place = Place {
            ip,
            state: self.state.clone(),
        };
        let negotiating = Negotiating {
            state: self.state.clone(),
        };
        Ok((place, negotiating))
    }

    /// Client connections open now.
    pub fn open(&self) -> usize {
        lock(&self.state).total
    }

    /// The quotas in force.
    pub fn quotas(&self) -> Quotas {
        lock(&self.state).quotas
    }

    /// New quotas, for the next connection on: open connections keep their places even
    /// past a lowered quota.
    pub fn set_quotas(&self, quotas: Quotas) {
        lock(&self.state).quotas = quotas;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: usize, per_ip: usize, unauth: usize) -> Admission {
        Admission::new(&Config {
            c2s_max_connections: total,
            c2s_max_connections_per_ip: per_ip,
            c2s_max_unauthenticated: unauth,
            ..Config::default()
        })
    }

    #[test]
    fn one_address_fills_its_quota_not_the_server() {
        let a = admission(10, 2, 10);
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let _p1 = a.admit(attacker).unwrap();
        let _p2 = a.admit(attacker).unwrap();
        assert_eq!(a.admit(attacker).err(), Some(Refusal::PerAddress));
        assert!(a.admit("192.0.2.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn places_come_back_when_sockets_go() {
        let a = admission(2, 1, 2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let p = a.admit(ip).unwrap();
        assert_eq!(a.admit(ip).err(), Some(Refusal::PerAddress));
        drop(p);
        assert_eq!(a.open(), 0);
        let (place, negotiating) = a.admit(ip).unwrap();
        // Bound: the negotiating place is free again, the connection's is not.
        drop(negotiating);
        assert_eq!(a.open(), 1);
        drop(place);
        assert_eq!(a.open(), 0);
        assert!(
            lock(&a.state).per_ip.is_empty(),
            "no entry left for a gone address"
        );
    }

    #[test]
    fn unauthenticated_and_total_limits() {
        let a = admission(3, 10, 2);
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        let (_p1, n1) = a.admit(ip(1)).unwrap();
        let _p2 = a.admit(ip(2)).unwrap();
        assert_eq!(a.admit(ip(3)).err(), Some(Refusal::Unauthenticated));
        drop(n1);
        let (_p3, n3) = a.admit(ip(3)).unwrap();
        drop(n3);
        assert_eq!(a.admit(ip(4)).err(), Some(Refusal::Total));
    }

    #[test]
    fn a_lowered_quota_keeps_open_connections_and_refuses_new_ones() {
        let a = admission(3, 10, 3);
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        let (p1, _n1) = a.admit(ip(1)).unwrap();
        let (p2, _n2) = a.admit(ip(2)).unwrap();
        a.set_quotas(Quotas {
            total: 1,
            per_ip: 10,
            negotiating: 3,
        });
        assert_eq!(a.open(), 2, "nobody is dropped");
        assert_eq!(a.admit(ip(3)).err(), Some(Refusal::Total));
        drop(p1);
        assert_eq!(
            a.admit(ip(3)).err(),
            Some(Refusal::Total),
            "still at 1 of 1"
        );
        drop(p2);
        assert!(a.admit(ip(3)).is_ok());
    }

    #[test]
    fn a_raised_quota_admits_at_once() {
        let a = admission(10, 1, 10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let _p1 = a.admit(ip).unwrap();
        assert_eq!(a.admit(ip).err(), Some(Refusal::PerAddress));
        a.set_quotas(Quotas {
            per_ip: 2,
            ..a.quotas()
        });
        assert!(a.admit(ip).is_ok());
    }

    #[test]
    fn ipv6_counts_by_64() {
        assert_eq!(
            quota_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            quota_key("2001:db8:1:2:bbbb::2".parse().unwrap())
        );
        assert_ne!(
            quota_key("2001:db8:1:2::1".parse().unwrap()),
            quota_key("2001:db8:1:3::1".parse().unwrap())
        );
        assert_eq!(
            quota_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}
