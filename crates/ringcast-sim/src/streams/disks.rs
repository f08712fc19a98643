//! The simulated storage of a lone cluster: which disks each host reaches,
//! which disks hold each title, what each disk's health really is, and the
//! probe loop every node runs on every disk it reaches, timed as
//! `ringcast-node`'s prober is (`library/disks.rs`, `probe_forever`).

use std::time::{Duration, Instant};

use rand::Rng;
use ringcast_proto::message::DiskReport;
use ringcast_proto::{Capacity, DiskAccess, DiskId, Incarnation, NodeConfig, Timing};

/// How long one probe may take before its disk counts as hung: twice the
/// probe period and never under a second, as `ringcast-node`'s
/// `ProbeConfig::from_timing` (and `docs/streaming.md`) has it.
pub fn probe_timeout(timing: &Timing) -> Duration {
    timing
        .disk_check_interval
        .saturating_mul(2)
        .max(Duration::from_secs(1))
}

/// Where the cluster's data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The disks each host reaches (index = node id - 1): its own disk (the
    /// disk of its id) and, for some hosts, its ring predecessor's, the rule
    /// `ringcast up` follows, so a disk is reached by one or two nodes.
    pub reach: Vec<Vec<DiskId>>,
    /// The two disks holding each title.
    pub titles: Vec<[DiskId; 2]>,
    /// Each host's configured `max_streams`.
    pub capacity: Vec<u32>,
}

impl Layout {
    /// A random layout for `nodes` hosts: every host its own disk and, with
    /// probability one half, its predecessor's; one title per disk, each on
    /// two distinct disks; capacities of 2 to 5 streams.
    pub fn random(nodes: u32, rng: &mut impl Rng) -> Layout {
        let n = nodes.max(2);
        let reach = (1..=n)
            .map(|id| {
                let own = DiskId(id);
                let previous = DiskId(if id == 1 { n } else { id - 1 });
                if rng.gen_bool(0.5) {
                    vec![own, previous]
                } else {
                    vec![own]
                }
            })
            .collect();
        let titles = (0..n)
            .map(|_| {
                let a = rng.gen_range(1..=n);
                let b = (a + rng.gen_range(0..n - 1)) % n + 1;
                [DiskId(a), DiskId(b)]
            })
            .collect();
        let capacity = (0..n).map(|_| rng.gen_range(2..=5)).collect();
        Layout {
            reach,
            titles,
            capacity,
        }
    }

    /// Gives `cfg` (of host `host`) the disks and capacity of the layout.
    pub fn apply(&self, host: usize, cfg: &mut NodeConfig) {
        cfg.disks = self.reach[host]
            .iter()
            .map(|d| DiskAccess {
                id: *d,
                mount: format!("/srv/disk{}", d.0),
                probe_path: format!("/srv/disk{}/.probe-n{}", d.0, host + 1),
            })
            .collect();
        cfg.capacity = Capacity {
            max_streams: self.capacity[host],
            max_bytes_per_s: 1_000_000_000,
        };
    }

    /// Whether `host` reaches `disk`.
    pub fn reaches(&self, host: usize, disk: DiskId) -> bool {
        self.reach.get(host).is_some_and(|r| r.contains(&disk))
    }

    /// The hosts that reach `disk`.
    pub fn readers(&self, disk: DiskId) -> impl Iterator<Item = usize> + '_ {
        (0..self.reach.len()).filter(move |h| self.reaches(*h, disk))
    }

    /// Disks of the cluster.
    pub fn disks(&self) -> usize {
        self.reach.len()
    }
}

/// What a disk really does, whatever anyone reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// It works.
    Ok,
    /// Every operation fails at once: probes report failure immediately.
    Broken,
    /// Every operation blocks: a probe returns only after its timeout.
    Hung,
}

/// A report a probe loop hands its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// The host whose node it goes to.
    pub host: usize,
    /// The disk and the outcome.
    pub disk: DiskId,
    /// Whether the probe succeeded.
    pub ok: bool,
}

/// A probe loop's next wake-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeTimer {
    /// The period's tick: probe (or report a stuck probe again).
    Tick,
    /// The timeout of the probe started at `started`.
    Timeout {
        /// When the hung probe started.
        started: Instant,
    },
}

/// One node's probe loop on one disk, for one life of the node.
#[derive(Clone, Debug)]
struct Loop {
    host: usize,
    disk: DiskId,
    life: Option<Incarnation>,
    /// A probe blocked on a hung disk, and when it started.
    pending: Option<Instant>,
    /// A probe timed out and its thread has not returned yet.
    stuck: bool,
    /// The tick the loop waits for (none while a probe is pending).
    next_tick: Option<Instant>,
}

/// Every probe loop of the cluster and the disks' real health.
#[derive(Clone, Debug)]
pub struct Disks {
    health: Vec<Health>,
    loops: Vec<Loop>,
    interval: Duration,
    timeout: Duration,
}

impl Disks {
    /// Healthy disks, probed as `timing` says, no loop running yet.
    pub fn new(layout: &Layout, timing: &Timing) -> Disks {
        let loops = layout
            .reach
            .iter()
            .enumerate()
            .flat_map(|(host, disks)| {
                disks.iter().map(move |disk| Loop {
                    host,
                    disk: *disk,
                    life: None,
                    pending: None,
                    stuck: false,
                    next_tick: None,
                })
            })
            .collect();
        Disks {
            health: vec![Health::Ok; layout.disks()],
            loops,
            interval: timing.disk_check_interval.max(Duration::from_millis(1)),
            timeout: probe_timeout(timing),
        }
    }

    /// The real health of `disk`.
    pub fn health(&self, disk: DiskId) -> Health {
        self.health
            .get((disk.0 as usize).wrapping_sub(1))
            .copied()
            .unwrap_or(Health::Broken)
    }

    /// Whether `disk` really works.
    pub fn is_ok(&self, disk: DiskId) -> bool {
        self.health(disk) == Health::Ok
    }

    /// Disks whose health is `h`.
    pub fn with_health(&self, h: Health) -> Vec<DiskId> {
        (0..self.health.len())
            .filter(|i| self.health[*i] == h)
            .map(|i| DiskId(i as u32 + 1))
            .collect()
    }

    /// Host `host` runs life `life` now (`None`: it is down): its loops
    /// start at once, as the daemon's do, or stop.
    pub fn host_life(&mut self, host: usize, life: Option<Incarnation>, now: Instant) {
        for l in self.loops.iter_mut().filter(|l| l.host == host) {
            if l.life == life {
                continue;
            }
            l.life = life;
            l.pending = None;
            l.stuck = false;
            l.next_tick = life.map(|_| now);
        }
    }

    /// `disk` becomes `health` at `now`. A probe blocked on a disk that
    /// stops hanging returns: it reports what the disk is now, and the loop
    /// ticks again when its period says (at once if the tick was missed).
    pub fn set_health(&mut self, disk: DiskId, health: Health, now: Instant) -> Vec<ProbeReport> {
        let Some(h) = self.health.get_mut((disk.0 as usize).wrapping_sub(1)) else {
            return Vec::new();
        };
        *h = health;
        let mut out = Vec::new();
        if health == Health::Hung {
            return out;
        }
        let interval = self.interval;
        for l in self.loops.iter_mut().filter(|l| l.disk == disk) {
            l.stuck = false;
            if let Some(started) = l.pending.take() {
                out.push(ProbeReport {
                    host: l.host,
                    disk,
                    ok: health == Health::Ok,
                });
                l.next_tick = Some((started + interval).max(now));
            }
        }
        out
    }

    /// The earliest wake-up of any loop.
    pub fn next_at(&self) -> Option<Instant> {
        self.loops
            .iter()
            .filter_map(|l| match l.pending {
                Some(started) => Some(started + self.timeout),
                None => l.next_tick,
            })
            .min()
    }

    /// Runs every loop due by `now`, returning the reports they make.
    pub fn run(&mut self, now: Instant) -> Vec<ProbeReport> {
        let mut out = Vec::new();
        let (interval, timeout) = (self.interval, self.timeout);
        for i in 0..self.loops.len() {
            loop {
                let health = self.health(self.loops[i].disk);
                let l = &mut self.loops[i];
                if l.life.is_none() {
                    break;
                }
                let report = |ok| ProbeReport {
                    host: l.host,
                    disk: l.disk,
                    ok,
                };
                if let Some(started) = l.pending {
                    if started + timeout > now {
                        break;
                    }
                    // The probe did not finish in time: the disk is hung.
                    // The missed tick fires at once (MissedTickBehavior::Delay).
                    out.push(report(false));
                    l.pending = None;
                    l.stuck = true;
                    l.next_tick = Some(started + timeout);
                    continue;
                }
                let Some(tick) = l.next_tick.filter(|t| *t <= now) else {
                    break;
                };
                if l.stuck || health == Health::Broken {
                    // A previous probe is still stuck: failed again, no new thread.
                    out.push(report(false));
                    l.next_tick = Some(tick + interval);
                } else if health == Health::Ok {
                    out.push(report(true));
                    l.next_tick = Some(tick + interval);
                } else {
                    l.pending = Some(tick);
                    l.next_tick = None;
                }
            }
        }
        out
    }
}

/// The disk report a probe outcome becomes, as `ringcast-node`'s
/// `ProbeOutcome::to_report` and `probe_loop` build it: capacity and space
/// only when the probe succeeded, the library's digest, and the streams and
/// bytes per second this node reads from the disk.
pub fn report(disk: DiskId, ok: bool, streams: u32, rate: u64) -> DiskReport {
    DiskReport {
        disk,
        ok,
        capacity_bytes: if ok { 1 << 40 } else { 0 },
        used_bytes: if ok { 1 << 39 } else { 0 },
        catalog: u64::from(disk.0) + 1,
        streams,
        bytes_per_s: u64::from(streams) * rate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disks() -> (Disks, Instant) {
        let layout = Layout {
            reach: vec![vec![DiskId(1)], vec![DiskId(1), DiskId(2)]],
            titles: vec![[DiskId(1), DiskId(2)]],
            capacity: vec![3, 3],
        };
        let t0 = Instant::now();
        let mut d = Disks::new(&layout, &Timing::lan());
        d.host_life(0, Some(Incarnation(1)), t0);
        d.host_life(1, Some(Incarnation(1)), t0);
        (d, t0)
    }

    #[test]
    fn a_broken_disk_fails_its_next_probe_and_a_hung_one_only_after_the_timeout() {
        let (mut d, t0) = disks();
        assert_eq!(d.run(t0).len(), 3, "every loop probes at start");
        d.set_health(DiskId(1), Health::Broken, t0);
        d.set_health(DiskId(2), Health::Hung, t0);
        let s = Duration::from_secs(1);
        let at_1s = d.run(t0 + s);
        assert!(
            at_1s.iter().all(|r| r.disk == DiskId(1) && !r.ok),
            "{at_1s:?}"
        );
        assert_eq!(at_1s.len(), 2);
        // Disk 2's probe started at 1 s and times out at 3 s.
        assert!(d
            .run(t0 + s * 3 - Duration::from_millis(1))
            .iter()
            .all(|r| r.disk == DiskId(1)));
        let at_3s = d.run(t0 + s * 3);
        assert!(at_3s.contains(&ProbeReport {
            host: 1,
            disk: DiskId(2),
            ok: false
        }));
        // Stuck: reported failed again at once and every period after.
        let d2 = |v: &[ProbeReport]| v.iter().filter(|r| r.disk == DiskId(2)).count();
        assert_eq!(d2(&at_3s), 2, "{at_3s:?}");
        assert_eq!(d2(&d.run(t0 + s * 4)), 1);
        // It recovers: the next tick probes afresh and succeeds.
        assert!(d.set_health(DiskId(2), Health::Ok, t0 + s * 4).is_empty());
        let back = d.run(t0 + s * 5);
        assert!(back.contains(&ProbeReport {
            host: 1,
            disk: DiskId(2),
            ok: true
        }));
    }

    #[test]
    fn a_probe_blocked_on_a_disk_that_stops_hanging_returns_at_once() {
        let (mut d, t0) = disks();
        d.run(t0);
        d.set_health(DiskId(2), Health::Hung, t0);
        d.run(t0 + Duration::from_secs(1));
        let r = d.set_health(DiskId(2), Health::Ok, t0 + Duration::from_millis(1500));
        assert_eq!(
            r,
            vec![ProbeReport {
                host: 1,
                disk: DiskId(2),
                ok: true
            }]
        );
        assert_eq!(d.next_at(), Some(t0 + Duration::from_secs(2)));
    }
}
