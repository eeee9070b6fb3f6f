//! Who may open a client connection: places under `c2s_max_connections` in total,
//! `c2s_max_connections_per_ip` per address and `c2s_max_unauthenticated` for
//! connections still negotiating. A flood from one address fills its own quota, not the
//! server; a flood from many stays within the unauthenticated quota, and sessions that
//! are bound keep their places.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

#[derive(Clone)]
pub struct Admission {
    total: Arc<Semaphore>,
    unauthenticated: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_ip: usize,
}

/// A connection's place: freed when the socket goes (it travels with the transport, so
/// a hibernated session holds none and a resuming socket brings its own).
pub struct Place {
    _total: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut map = lock(&self.per_ip);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Held while the connection negotiates; dropped once a resource is bound.
pub type Negotiating = OwnedSemaphorePermit;

fn lock(m: &Mutex<HashMap<IpAddr, usize>>) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
    // The map holds counts only; a panic elsewhere cannot leave it half-updated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Admission {
    pub fn new(cfg: &Config) -> Self {
        Admission::with_limits(
            cfg.c2s_max_connections,
            cfg.c2s_max_connections_per_ip,
            cfg.c2s_max_unauthenticated,
        )
    }

    /// Quotas of another kind of connection (server-to-server streams).
    pub fn with_limits(total: usize, per_ip: usize, negotiating: usize) -> Self {
        Admission {
            total: Arc::new(Semaphore::new(total)),
            unauthenticated: Arc::new(Semaphore::new(negotiating)),
            per_ip: Arc::default(),
            max_per_ip: per_ip,
        }
    }

    pub fn admit(&self, peer: IpAddr) -> Result<(Place, Negotiating), Refusal> {
        let ip = quota_key(peer);
        let negotiating = self
            .unauthenticated
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Unauthenticated)?;
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Total)?;
        {
            let mut map = lock(&self.per_ip);
            let n = map.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                return Err(Refusal::PerAddress);
            }
            *n += 1;
        }
        let place = Place {
            _total: total,
            ip,
            per_ip: self.per_ip.clone(),
        };
        Ok((place, negotiating))
    }

    /// Client connections open now.
    pub fn open(&self) -> usize {
        lock(&self.per_ip).values().sum()
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
            lock(&a.per_ip).is_empty(),
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
