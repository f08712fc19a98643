//! Token buckets per client, with a bounded table. The HTTP listener's
//! guard uses them for requests per client address; a node uses them for
//! the datagrams of each bus sender too.
//!
//! A [`Buckets`] table holds at most `max_keys` buckets. A bucket that has
//! refilled completely says nothing a new bucket would not, so idle keys are
//! dropped by a sweep (at most once a second, and whenever the table is full
//! and a new key arrives, at most once per refill period). Keys that find the table still full share one
//! overflow bucket: memory stays bounded however many addresses a flood
//! comes from, and all of them together get one client's share.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A rate limit: tokens added per second, and the most a bucket holds (what
/// a client may spend at once after a quiet spell).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second; 0 means no limit at all.
    pub per_second: u32,
    /// The bucket's size; at least 1 is used.
    pub burst: u32,
}

impl Rate {
    /// No limit.
    pub const UNLIMITED: Rate = Rate {
        per_second: 0,
        burst: 0,
    };

    /// Whether this rate limits anything.
    pub fn is_limited(&self) -> bool {
        self.per_second > 0
    }

    fn burst(&self) -> f64 {
        f64::from(self.burst.max(1))
    }

    fn per_second(&self) -> f64 {
        f64::from(self.per_second)
    }

    /// How long an empty bucket takes to fill completely.
    fn refill_time(&self) -> Duration {
        if self.is_limited() {
            Duration::from_secs_f64(self.burst() / self.per_second())
        } else {
            Duration::ZERO
        }
    }
}

/// One token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst(),
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second()).min(rate.burst());
        self.at = self.at.max(now);
    }

    /// Takes one token, or says how long until one is back.
    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / rate.per_second(),
            ))
        }
    }

    fn has_token(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= 1.0
    }

    fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * rate.per_second() >= rate.burst()
    }
}

/// Token buckets by key (a client address), at most `max_keys` of them;
/// see the module documentation for what happens beyond.
#[derive(Debug)]
pub struct Buckets<K> {
    rate: Rate,
    max_keys: usize,
    table: HashMap<K, Bucket>,
    overflow: Bucket,
    next_sweep: Instant,
    next_full_sweep: Instant,
}

/// How often idle buckets are dropped even when the table is not full.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// An empty table of buckets of `rate`, holding at most `max_keys`
    /// (at least 1).
    pub fn new(rate: Rate, max_keys: usize, now: Instant) -> Buckets<K> {
        Buckets {
            rate,
            max_keys: max_keys.max(1),
            table: HashMap::new(),
            overflow: Bucket::full(rate, now),
            next_sweep: now + SWEEP_INTERVAL,
            next_full_sweep: now,
        }
    }

    /// The rate of every bucket.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Keys that have a bucket of their own now.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no key has a bucket of its own.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Takes one token from `key`'s bucket: `Err` with the time until one
    /// is back when it is empty. Always `Ok` without a limit.
    pub fn take(&mut self, now: Instant, key: &K) -> Result<(), Duration> {
        if !self.rate.is_limited() {
            return Ok(());
        }
        let rate = self.rate;
        self.bucket(now, key).take(rate, now)
    }

    /// Whether `key`'s bucket holds a token, without taking it.
    pub fn has_token(&mut self, now: Instant, key: &K) -> bool {
        if !self.rate.is_limited() {
            return true;
        }
        let rate = self.rate;
        let room = self.table.len() < self.max_keys;
        match self.table.get_mut(key) {
            Some(b) => b.has_token(rate, now),
            // A key without a bucket of its own starts full, unless it
            // would have to share the overflow bucket.
            None if room => true,
            None => self.overflow.has_token(rate, now),
        }
    }

    /// `key`'s bucket, created full if there is room; else the overflow
    /// bucket.
    fn bucket(&mut self, now: Instant, key: &K) -> &mut Bucket {
        if now >= self.next_sweep {
            self.sweep(now);
        }
        if !self.table.contains_key(key) && self.table.len() >= self.max_keys {
            // At most one sweep per refill period while the table stays
            // full: a flood from many addresses must not make every new
            // address cost a pass over the table.
            if now >= self.next_full_sweep {
                self.sweep(now);
                self.next_full_sweep = now + self.rate.refill_time().max(SWEEP_INTERVAL / 10);
            }
            if self.table.len() >= self.max_keys {
                return &mut self.overflow;
            }
        }
        let rate = self.rate;
        self.table
            .entry(key.clone())
            .or_insert_with(|| Bucket::full(rate, now))
    }

    /// Drops every bucket that has refilled completely.
    fn sweep(&mut self, now: Instant) {
        let rate = self.rate;
        self.table.retain(|_, b| !b.is_full(rate, now));
        self.next_sweep = now + SWEEP_INTERVAL;
    }
}

/// The key a client address is limited under: an IPv4 address as it is, an
/// IPv4-mapped IPv6 address as its IPv4 address, and any other IPv6 address
/// by its /64 prefix (one host usually holds a whole /64, so per-address
/// limits would be no limit at all).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Retry-After in whole seconds for a wait: at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: u32, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    #[test]
    fn a_bucket_spends_its_burst_then_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Buckets::new(rate(10, 5), 16, t0);
        for _ in 0..5 {
            assert_eq!(b.take(t0, &1), Ok(()));
        }
        let wait = b.take(t0, &1).unwrap_err();
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another key is not affected.
        assert_eq!(b.take(t0, &2), Ok(()));
        // 100 ms later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(b.take(t1, &1), Ok(()));
        assert!(b.take(t1, &1).is_err());
        // Never more than the burst, however long the wait.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..5 {
            assert_eq!(b.take(t2, &1), Ok(()));
        }
        assert!(b.take(t2, &1).is_err());
    }

    #[test]
    fn without_a_rate_nothing_is_limited_or_kept() {
        let t0 = Instant::now();
        let mut b = Buckets::new(Rate::UNLIMITED, 1, t0);
        for i in 0..10_000u32 {
            assert_eq!(b.take(t0, &i), Ok(()));
        }
        assert!(b.is_empty());
    }

    #[test]
    fn the_table_stays_bounded_and_extra_keys_share_one_bucket() {
        let t0 = Instant::now();
        let mut b = Buckets::new(rate(1, 2), 100, t0);
        for i in 0..100u32 {
            assert_eq!(b.take(t0, &i), Ok(()));
        }
        assert_eq!(b.len(), 100);
        // A flood of new keys: none gets a bucket of its own; together they
        // get one bucket's worth.
        let admitted = (100..10_100u32).filter(|i| b.take(t0, i).is_ok()).count();
        assert_eq!(admitted, 2);
        assert_eq!(b.len(), 100);
    }

    #[test]
    fn idle_keys_are_evicted_once_their_bucket_is_full_again() {
        let t0 = Instant::now();
        let mut b = Buckets::new(rate(10, 10), 4, t0);
        for i in 0..4u32 {
            b.take(t0, &i).unwrap();
        }
        assert_eq!(b.len(), 4);
        // One refill period later every bucket is full: a new key finds room.
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(b.take(t1, &99), Ok(()));
        assert_eq!(b.len(), 1);
        // And the periodic sweep drops idle keys even when there is room.
        let t2 = t1 + Duration::from_secs(5);
        b.take(t2, &7).unwrap();
        assert_eq!(b.len(), 1, "only the key just used is kept");
    }

    #[test]
    fn has_token_does_not_spend() {
        let t0 = Instant::now();
        let mut b = Buckets::new(rate(1, 1), 4, t0);
        assert!(b.has_token(t0, &1));
        assert!(b.has_token(t0, &1));
        b.take(t0, &1).unwrap();
        assert!(!b.has_token(t0, &1));
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.7".parse::<IpAddr>().unwrap());
        let v4: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(client_key(v4), v4);
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }
}
