//! What the HTTP listener keeps against hostile clients, shared by the
//! zero-copy stream server and the API server (hyper): the connections open
//! in all and per client address, the request rate of each client address
//! (a token bucket, `429` with `Retry-After` beyond), and counters of
//! everything refused.
//!
//! Client addresses are compared by [`crate::buckets::client_key`] (IPv6 by
//! /64). Addresses marked exempt skip the per-client limits, never the total
//! one: a node marks its cluster's members, since nodes ask the supervisor
//! to place every stream, and on one host every client shares their address.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::buckets::{client_key, Buckets};
use crate::limits::HttpLimits;

/// Why the listener refused a connection or a request, for the counters
/// (`ringcast_http_refused_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refused {
    /// A request over its client's rate: `429`.
    RateLimited,
    /// A connection over the total limit: closed at once.
    Connections,
    /// A connection over its client's limit: closed at once.
    ClientConnections,
    /// A request head over the size limit: `431`.
    HeadTooLarge,
    /// A request that is not HTTP/1.x: `400`.
    Malformed,
    /// A request head not complete within the head timeout: closed.
    HeadTimeout,
}

impl Refused {
    /// Every reason, in the order the metrics list them.
    pub const ALL: [Refused; 6] = [
        Refused::RateLimited,
        Refused::Connections,
        Refused::ClientConnections,
        Refused::HeadTooLarge,
        Refused::Malformed,
        Refused::HeadTimeout,
    ];

    /// A short snake_case label, for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::RateLimited => "rate_limited",
            Refused::Connections => "connections",
            Refused::ClientConnections => "client_connections",
            Refused::HeadTooLarge => "head_too_large",
            Refused::Malformed => "malformed",
            Refused::HeadTimeout => "head_timeout",
        }
    }
}

/// The listener's shared state against hostile clients; see the module
/// documentation.
#[derive(Debug)]
pub struct Guard {
    max_connections: usize,
    max_client_connections: usize,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    requests: Mutex<Buckets<IpAddr>>,
    exempt: RwLock<HashSet<IpAddr>>,
    refused: [AtomicU64; Refused::ALL.len()],
}

/// An open connection, counted until it is dropped.
#[derive(Debug)]
pub struct Connection {
    guard: Arc<Guard>,
    client: Option<IpAddr>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.guard.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.client {
            let mut per_client = lock(&self.guard.per_client);
            if let Some(n) = per_client.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_client.remove(&ip);
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The address as the exempt set holds it: IPv4-mapped IPv6 as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Guard {
    /// A guard enforcing `limits` (its connection and request limits; the
    /// head limits and timeouts are the servers' own).
    pub fn new(limits: &HttpLimits) -> Guard {
        Guard {
            max_connections: limits.max_connections.max(1),
            max_client_connections: limits.max_client_connections.max(1),
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            requests: Mutex::new(Buckets::new(
                limits.client_requests,
                limits.max_clients,
                Instant::now(),
            )),
            exempt: RwLock::new(HashSet::new()),
            refused: Default::default(),
        }
    }

    /// Admits a new connection from `peer`, or says why not (and counts it).
    pub fn connect(self: &Arc<Self>, peer: IpAddr) -> Result<Connection, Refused> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse(Refused::Connections));
        }
        // From here the connection counts; dropping it undoes that.
        let mut conn = Connection {
            guard: self.clone(),
            client: None,
        };
        if self.is_exempt(peer) {
            return Ok(conn);
        }
        let key = client_key(peer);
        let mut per_client = lock(&self.per_client);
        let n = per_client.entry(key).or_insert(0);
        if *n >= self.max_client_connections {
            drop(per_client);
            drop(conn);
            return Err(self.refuse(Refused::ClientConnections));
        }
        *n += 1;
        conn.client = Some(key);
        Ok(conn)
    }

    /// Admits one request from `peer`, or answers how long it should wait
    /// (and counts the refusal).
    pub fn request(&self, peer: IpAddr) -> Result<(), Duration> {
        if self.is_exempt(peer) {
            return Ok(());
        }
        let taken = lock(&self.requests).take(Instant::now(), &client_key(peer));
        if taken.is_err() {
            self.refuse(Refused::RateLimited);
        }
        taken
    }

    /// Replaces the set of exempt addresses.
    pub fn set_exempt(&self, ips: impl IntoIterator<Item = IpAddr>) {
        let ips: HashSet<IpAddr> = ips.into_iter().map(canonical).collect();
        let mut exempt = self.exempt.write().unwrap_or_else(|e| e.into_inner());
        if *exempt != ips {
            *exempt = ips;
        }
    }

    /// Whether `ip` skips the per-client limits.
    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        self.exempt
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&canonical(ip))
    }

    /// Counts a refusal; returns it.
    pub fn refuse(&self, why: Refused) -> Refused {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
        why
    }

    /// Refusals so far, by reason (every reason listed).
    pub fn refusals(&self) -> BTreeMap<&'static str, u64> {
        Refused::ALL
            .iter()
            .map(|r| {
                (
                    r.reason(),
                    self.refused[*r as usize].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Client addresses whose request rate is tracked now.
    pub fn tracked_clients(&self) -> usize {
        lock(&self.requests).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::Rate;

    fn limits(total: usize, per_client: usize, rate: Rate) -> HttpLimits {
        HttpLimits {
            max_connections: total,
            max_client_connections: per_client,
            client_requests: rate,
            ..HttpLimits::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connections_are_limited_in_all_and_per_client_and_released_on_drop() {
        let g = Arc::new(Guard::new(&limits(3, 2, Rate::UNLIMITED)));
        let a1 = g.connect(ip("127.0.0.2")).unwrap();
        let a2 = g.connect(ip("127.0.0.2")).unwrap();
        assert_eq!(
            g.connect(ip("127.0.0.2")).unwrap_err(),
            Refused::ClientConnections
        );
        let b1 = g.connect(ip("127.0.0.3")).unwrap();
        assert_eq!(
            g.connect(ip("127.0.0.4")).unwrap_err(),
            Refused::Connections
        );
        assert_eq!(g.open_connections(), 3);
        drop(a1);
        let a3 = g.connect(ip("127.0.0.2")).unwrap();
        drop((a2, a3, b1));
        assert_eq!(g.open_connections(), 0);
        assert!(lock(&g.per_client).is_empty(), "no client entry is left");
        let r = g.refusals();
        assert_eq!((r["client_connections"], r["connections"]), (1, 1));
    }

    #[test]
    fn exempt_addresses_skip_the_per_client_limits_only() {
        let g = Arc::new(Guard::new(&limits(
            3,
            1,
            Rate {
                per_second: 1,
                burst: 1,
            },
        )));
        g.set_exempt([ip("127.0.0.1")]);
        let held: Vec<_> = (0..3)
            .map(|_| g.connect(ip("127.0.0.1")).unwrap())
            .collect();
        assert_eq!(
            g.connect(ip("127.0.0.1")).unwrap_err(),
            Refused::Connections
        );
        drop(held);
        for _ in 0..100 {
            assert_eq!(g.request(ip("::ffff:127.0.0.1")), Ok(()));
        }
        assert_eq!(g.request(ip("127.0.0.2")), Ok(()));
        let wait = g.request(ip("127.0.0.2")).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        assert_eq!(g.refusals()["rate_limited"], 1);
        assert_eq!(g.tracked_clients(), 1);
    }
}
