//! Counters a node keeps about itself, for `/metrics` and the simulator's figures.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::message::MessageKind;

/// Every reason a node drops a datagram for (`Stats::rejected`'s keys): the
/// frame layer's ([`crate::frame::FrameError::reason`]), a body that is not a
/// message, and messages whose content contradicts their sender.
pub const REJECT_REASONS: [&str; 24] = [
    "too_short",
    "too_long",
    "bad_magic",
    "unknown_version",
    "wrong_cluster",
    "from_self",
    "unknown_sender",
    "unknown_key",
    "bad_tag",
    "bad_part",
    "replayed",
    "stale_incarnation",
    "message_too_long",
    "counter_exhausted",
    "malformed",
    "inconsistent_notify",
    "inconsistent_update",
    "inconsistent_join",
    "inconsistent_leave",
    "inconsistent_resend",
    "inconsistent_pull",
    "inconsistent_state",
    "notify_digest",
    "state_digest",
];

/// Upper bounds of the buckets of latency histograms: from 5 ms (a fast
/// disk probe, a ring of 1 ms periods) to a minute (a hung disk, a slow
/// ring), in roughly 2.5x steps so every setting lands mid-range.
pub const LATENCY_BUCKETS: [Duration; 14] = [
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2500),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(20),
    Duration::from_secs(30),
    Duration::from_secs(60),
];

/// A histogram of durations with fixed buckets, as Prometheus exposes them:
/// cumulative counts per upper bound, plus a sum and a count. Pure data: the
/// caller measures the durations (the protocol core from the `now` it is given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    bounds: &'static [Duration],
    /// Observations per bucket (not cumulative); one more than `bounds` for +Inf.
    counts: Vec<u64>,
    sum: Duration,
    count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(&LATENCY_BUCKETS)
    }
}

impl Histogram {
    /// An empty histogram with the given upper bounds (ascending).
    pub fn new(bounds: &'static [Duration]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: Duration::ZERO,
            count: 0,
        }
    }

    /// Records one observation.
    pub fn observe(&mut self, d: Duration) {
        let i = self.bounds.partition_point(|b| *b < d);
        self.counts[i] = self.counts[i].saturating_add(1);
        self.sum = self.sum.saturating_add(d);
        self.count = self.count.saturating_add(1);
    }

    /// `(upper bound, observations at or below it)` for every finite bound,
    /// ascending; the +Inf bucket is [`Histogram::count`].
    pub fn cumulative(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        self.bounds
            .iter()
            .zip(self.counts.iter())
            .scan(0u64, |acc, (b, n)| {
                *acc = acc.saturating_add(*n);
                Some((*b, *acc))
            })
    }

    /// Sum of all observations.
    pub fn sum(&self) -> Duration {
        self.sum
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Messages and bytes of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams.
    pub datagrams: u64,
    /// Bytes on the wire (sealed frames).
    pub bytes: u64,
}

/// A node's counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sent, by message kind.
    pub sent: BTreeMap<MessageKind, Traffic>,
    /// Received and accepted, by message kind.
    pub received: BTreeMap<MessageKind, Traffic>,
    /// Frames refused, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Times the supervisor this node follows changed.
    pub supervisor_changes: u64,
    /// Failure declarations this node made (claim 8).
    pub failure_declarations: u64,
    /// Times this node's timers ran late (local health).
    pub clock_slips: u64,
    /// Claim 8: for each failure declaration this node made, how long its
    /// upstream had been silent (since its last status, or since this node
    /// started watching it) when the declaration was made.
    pub detection: Histogram,
}

impl Stats {
    pub(crate) fn count_sent(&mut self, kind: MessageKind, bytes: usize) {
        let t = self.sent.entry(kind).or_default();
        t.datagrams += 1;
        t.bytes += bytes as u64;
    }

    pub(crate) fn count_received(&mut self, kind: MessageKind, bytes: usize) {
        let t = self.received.entry(kind).or_default();
        t.datagrams += 1;
        t.bytes += bytes as u64;
    }

    pub(crate) fn count_rejected(&mut self, reason: &'static str) {
        *self.rejected.entry(reason).or_default() += 1;
    }

    /// Frames refused, all reasons together.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Bytes sent, all kinds.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.values().map(|t| t.bytes).sum()
    }

    /// Bytes received and accepted, all kinds.
    pub fn bytes_received(&self) -> u64 {
        self.received.values().map(|t| t.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_cumulatively_with_bounds_inclusive() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(61));
        let b: Vec<_> = h.cumulative().collect();
        assert_eq!(b.len(), LATENCY_BUCKETS.len());
        assert_eq!(
            b[0],
            (Duration::from_millis(5), 1),
            "a bound includes its value"
        );
        assert_eq!(b[1], (Duration::from_millis(10), 2));
        assert_eq!(b.last().unwrap().1, 2, "61 s is only in +Inf");
        assert_eq!(h.count(), 3);
        assert_eq!(h.sum(), Duration::from_millis(61_012));
    }
}
