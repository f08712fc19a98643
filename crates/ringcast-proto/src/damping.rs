//! Claims 4, 7 and 13 at O(news): what a node publishes of its load and
//! disk usage in its ring entry. A serving node's stream count and byte
//! rates change all the time; publishing every change would make every
//! ring entry and every notification carry usage rows every interval. So a
//! change that cannot matter to admission waits for the next refresh
//! ([`load_refresh`]), and one that can (a large step, a node near one of
//! its limits, a disk's health or library) is published at once.
//!
//! The refresh is a lap of the ring, at least [`LOAD_REFRESH_MIN`]: every
//! published change travels the ring once, so with at most one refresh per
//! node per lap each ring link carries about one refreshed entry per status
//! interval whatever the cluster's size (claim 7 at a cost per node that
//! stays flat).
//!
//! Placement stays exact: the supervisor counts each placement as load for
//! a reservation (placement's `reservation`), longer than a refresh and the lap
//! that follows it, so a stream whose report waits is still counted; and
//! near capacity nothing waits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::{Capacity, Timing};
use crate::ids::DiskId;
use crate::tables::{DiskReport, Load};

/// The shortest refresh: on a small ring, a changed load waits at most this.
pub const LOAD_REFRESH_MIN: Duration = Duration::from_secs(1);

/// Claim 6: how long an entry takes to go once round a ring of `ring_len`
/// nodes, one status interval a hop.
pub fn lap(timing: &Timing, ring_len: usize) -> Duration {
    timing
        .status_interval
        .saturating_mul(u32::try_from(ring_len).unwrap_or(u32::MAX))
}

/// The longest a changed load or disk usage waits before it is published
/// on a ring of `ring_len` nodes: a lap, at least [`LOAD_REFRESH_MIN`].
pub fn load_refresh(timing: &Timing, ring_len: usize) -> Duration {
    lap(timing, ring_len).max(LOAD_REFRESH_MIN)
}

/// Whether a change of a node's load from `old` to `new` can matter to
/// admission on a node of `capacity`: it moved by a step (1/16 of the
/// stream capacity, at least one stream), either is near or past a limit,
/// or the node went idle or busy. What the node publishes at once, and what
/// the supervisor announces at once (its announced diff).
pub fn matters(old: Load, new: Load, capacity: Capacity) -> bool {
    let idle = (new.streams == 0) != (old.streams == 0);
    new != old && (idle || matters_to_admission(old, new, capacity))
}

/// [`matters`] but for going idle or busy: what the supervisor announces
/// of a load to members, who do not place (a lightly loaded cluster's
/// nodes go idle and busy with every viewer).
pub fn matters_to_admission(old: Load, new: Load, capacity: Capacity) -> bool {
    let cap = capacity.max_streams;
    let s = step(cap);
    let streams_near = new.streams.saturating_add(s) >= cap || old.streams.saturating_add(s) >= cap;
    let moved = new.streams.abs_diff(old.streams) >= s;
    let bytes_near = capacity.max_bytes_per_s > 0
        && [old, new].iter().any(|l| {
            l.bytes_per_s.saturating_add(capacity.max_bytes_per_s / 16) >= capacity.max_bytes_per_s
        });
    new != old && (moved || streams_near || bytes_near)
}

/// Whether a figure that no limit bounds (a disk's streams or bytes per
/// second) moved enough to announce: by 1/16 of the larger value, at
/// least one, or to or from zero.
pub fn figure_matters(old: u64, new: u64) -> bool {
    let s = (old.max(new) / 16).max(1);
    old.abs_diff(new) >= s || (old == 0) != (new == 0)
}

/// Whether a disk's used space moved enough to publish or announce: by
/// 1/64 of its capacity (at least a byte), or its capacity changed. A
/// disk's free space moves with every file any process writes; only a
/// real change of it is news.
pub fn space_matters(old: (u64, u64), new: (u64, u64)) -> bool {
    let ((old_capacity, old_used), (capacity, used)) = (old, new);
    old_capacity != capacity || old_used.abs_diff(used) >= (capacity / 64).max(1)
}

/// Whether a disk report's figures (space, streams, bytes per second)
/// moved enough to publish at a refresh; its health and library are
/// published at once ([`Published::set_disk`]).
pub fn disk_figures_matter(old: &DiskReport, new: &DiskReport) -> bool {
    space_matters(
        (old.capacity_bytes, old.used_bytes),
        (new.capacity_bytes, new.used_bytes),
    ) || figure_matters(u64::from(old.streams), u64::from(new.streams))
        || figure_matters(old.bytes_per_s, new.bytes_per_s)
}

/// A node's load and disk reports: as they are, and as last published.
#[derive(Clone, Debug, Default)]
pub struct Published {
    load: Load,
    disks: BTreeMap<DiskId, DiskReport>,
    published_load: Load,
    published_disks: BTreeMap<DiskId, DiskReport>,
    /// When the last refresh published everything.
    refreshed: Option<Instant>,
}

/// The stream step below which a change of load waits: 1/16 of the
/// capacity, at least one stream.
fn step(cap: u32) -> u32 {
    (cap / 16).max(1)
}

impl Published {
    /// The load as it is (for a join request: the supervisor must not
    /// take a rejoining node for emptier than it is).
    pub fn actual_load(&self) -> Load {
        self.load
    }

    /// The load as published in the ring entry.
    pub fn published_load(&self) -> Load {
        self.published_load
    }

    /// The disk reports as published in the ring entry.
    pub fn published_disks(&self) -> Vec<DiskReport> {
        self.published_disks.values().cloned().collect()
    }

    /// A new load: published at once when it matters to admission
    /// ([`matters`]).
    pub fn set_load(&mut self, load: Load, capacity: Capacity) {
        self.load = load;
        if matters(self.published_load, load, capacity) {
            self.published_load = load;
        }
    }

    /// A disk probe: a new disk, a change of health or of library is
    /// published at once; a change of usage waits for the refresh.
    pub fn set_disk(&mut self, report: DiskReport) {
        let urgent = self
            .published_disks
            .get(&report.disk)
            .is_none_or(|old| old.ok != report.ok || old.catalog != report.catalog);
        if urgent {
            self.published_disks.insert(report.disk, report.clone());
        }
        self.disks.insert(report.disk, report);
    }

    /// Publishes what waited, once per `period` ([`load_refresh`]): the
    /// load exactly (placement's reservations count on it), and each disk
    /// report whose figures moved enough to be news
    /// ([`disk_figures_matter`]; the disk usage table is not admission's).
    pub fn refresh(&mut self, now: Instant, period: Duration) {
        if self.refreshed.is_some_and(|at| now < at + period) {
            return;
        }
        self.refreshed = Some(now);
        self.published_load = self.load;
        for (disk, report) in &self.disks {
            let news = self
                .published_disks
                .get(disk)
                .is_none_or(|old| disk_figures_matter(old, report));
            if news {
                self.published_disks.insert(*disk, report.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Capacity = Capacity {
        max_streams: 100,
        max_bytes_per_s: 1_000_000,
    };

    fn load(streams: u32, bytes_per_s: u64) -> Load {
        Load {
            streams,
            bytes_per_s,
        }
    }

    #[test]
    fn small_changes_wait_for_the_refresh_and_near_capacity_nothing_waits() {
        let t0 = Instant::now();
        let mut p = Published::default();
        p.refresh(t0, LOAD_REFRESH_MIN);
        p.set_load(load(10, 1000), CAP);
        assert_eq!(
            p.published_load(),
            load(10, 1000),
            "a step of 10 is published"
        );
        p.set_load(load(12, 1100), CAP);
        assert_eq!(p.published_load(), load(10, 1000), "two more streams wait");
        p.refresh(t0 + LOAD_REFRESH_MIN / 2, LOAD_REFRESH_MIN);
        assert_eq!(p.published_load(), load(10, 1000), "not before the refresh");
        p.refresh(t0 + LOAD_REFRESH_MIN, LOAD_REFRESH_MIN);
        assert_eq!(p.published_load(), load(12, 1100));
        p.set_load(load(95, 1100), CAP);
        p.set_load(load(96, 1100), CAP);
        assert_eq!(
            p.published_load(),
            load(96, 1100),
            "near capacity every stream counts"
        );
        p.set_load(load(96, 990_000), CAP);
        assert_eq!(
            p.published_load(),
            load(96, 990_000),
            "near the byte limit too"
        );
        assert_eq!(p.actual_load(), load(96, 990_000));
    }

    #[test]
    fn the_refresh_is_a_lap_of_the_ring_on_a_large_one() {
        let t = Timing::lan();
        assert_eq!(load_refresh(&t, 16), LOAD_REFRESH_MIN);
        assert_eq!(load_refresh(&t, 256), t.status_interval * 256);
        assert_eq!(load_refresh(&t, 1024), t.status_interval * 1024);
        let t0 = Instant::now();
        let mut p = Published::default();
        let period = load_refresh(&t, 1024);
        p.refresh(t0, period);
        p.set_load(load(12, 1100), CAP);
        p.set_load(load(13, 1100), CAP);
        p.refresh(t0 + LOAD_REFRESH_MIN, period);
        assert_eq!(
            p.published_load(),
            load(12, 1100),
            "a large ring waits longer"
        );
        p.refresh(t0 + period, period);
        assert_eq!(p.published_load(), load(13, 1100));
    }

    #[test]
    fn a_disk_whose_health_or_library_changes_is_published_at_once() {
        let t0 = Instant::now();
        let mut p = Published::default();
        p.refresh(t0, LOAD_REFRESH_MIN);
        let report = |ok, catalog, streams| DiskReport {
            disk: DiskId(3),
            ok,
            capacity_bytes: 10,
            used_bytes: 5,
            catalog,
            streams,
            bytes_per_s: 0,
        };
        p.set_disk(report(true, 1, 0));
        assert_eq!(
            p.published_disks(),
            vec![report(true, 1, 0)],
            "a new disk at once"
        );
        p.set_disk(report(true, 1, 4));
        assert_eq!(p.published_disks(), vec![report(true, 1, 0)], "usage waits");
        p.set_disk(report(false, 1, 4));
        assert_eq!(
            p.published_disks(),
            vec![report(false, 1, 4)],
            "health does not"
        );
        p.set_disk(report(false, 2, 4));
        assert_eq!(
            p.published_disks(),
            vec![report(false, 2, 4)],
            "nor does the library"
        );
    }

    #[test]
    fn a_disks_space_or_rates_are_published_at_a_refresh_only_when_they_moved() {
        let t0 = Instant::now();
        let mut p = Published::default();
        let report = |used, streams| DiskReport {
            disk: DiskId(1),
            ok: true,
            capacity_bytes: 64_000,
            used_bytes: used,
            catalog: 7,
            streams,
            bytes_per_s: u64::from(streams) * 1000,
        };
        p.set_disk(report(10_000, 10));
        assert_eq!(
            p.published_disks(),
            vec![report(10_000, 10)],
            "a new disk goes at once"
        );
        p.set_disk(report(10_500, 10));
        p.refresh(t0, LOAD_REFRESH_MIN);
        assert_eq!(
            p.published_disks(),
            vec![report(10_000, 10)],
            "500 bytes of 64,000 is not news"
        );
        p.set_disk(report(11_000, 10));
        p.refresh(t0 + LOAD_REFRESH_MIN, LOAD_REFRESH_MIN);
        assert_eq!(
            p.published_disks(),
            vec![report(11_000, 10)],
            "1/64 of the disk is"
        );
        p.set_disk(report(11_000, 11));
        p.refresh(t0 + LOAD_REFRESH_MIN * 2, LOAD_REFRESH_MIN);
        assert_eq!(
            p.published_disks(),
            vec![report(11_000, 11)],
            "a tenth more streams is"
        );
    }
}
