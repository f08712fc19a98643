//! Claims 4 and 13 under a serving cluster's load, for the control plane's
//! cost: every node serves a number of streams that changes all the time
//! (viewers arrive and leave), at byte rates that wander, and reports its
//! load and its disks' usage to its protocol core as its daemon does
//! (`LocalEvent::Load`, `LocalEvent::DiskProbe`), several times a second.
//!
//! It models no players and no placement (the stream layer,
//! [`crate::streams`], checks those with a toy capacity of 2 to 5 streams,
//! at which every change of load is near a limit and published at once):
//! placement costs no bus traffic, reports do, and at a real node's
//! capacity most changes are small. Each node's streams follow a
//! birth-death process around half its capacity: viewers arrive at a
//! constant rate, each watches [`SESSION`] on average; every stream's rate
//! is [`STREAM_RATE`] give or take 5%.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringcast_proto::LocalEvent;

use crate::streams::{disks, Layout, STREAM_RATE};

/// The mean time a viewer watches.
pub const SESSION: Duration = Duration::from_secs(60);

/// How often each node reports its load and disks.
pub const TICK: Duration = Duration::from_millis(250);

/// The smallest and largest `max_streams` of a node.
pub const CAPACITY: (u32, u32) = (100, 400);

/// The load of a serving cluster: each node's streams and capacity.
#[derive(Clone, Debug)]
pub struct ServingLoad {
    layout: Layout,
    streams: Vec<u32>,
    rng: ChaCha8Rng,
}

impl ServingLoad {
    /// A cluster laid out as `layout` (apply it to the hosts' configurations
    /// before they start) whose capacities are replaced by real ones of
    /// [`CAPACITY`], each node starting at its mean load.
    pub fn new(mut layout: Layout, seed: u64) -> ServingLoad {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5e2f_10ad);
        for c in &mut layout.capacity {
            *c = rng.gen_range(CAPACITY.0..=CAPACITY.1);
        }
        let streams = layout.capacity.iter().map(|c| c / 2).collect();
        ServingLoad {
            layout,
            streams,
            rng,
        }
    }

    /// The layout, with the capacities this load uses.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Streams host `host` serves now.
    pub fn streams(&self, host: usize) -> u32 {
        self.streams[host]
    }

    /// One [`TICK`] of arrivals and departures; the reports every node makes
    /// after it, by node id: its load, then each of its disks' usage (the
    /// node's streams spread over its disks).
    pub fn tick(&mut self) -> Vec<(u32, LocalEvent)> {
        let dt = TICK.as_secs_f64() / SESSION.as_secs_f64();
        let mut out = Vec::new();
        for h in 0..self.streams.len() {
            let cap = self.layout.capacity[h];
            // Arrivals at the rate that holds half the capacity on average,
            // departures at each stream's rate of leaving; never past the
            // capacity (admission refuses the rest).
            let arrivals = poisson(&mut self.rng, f64::from(cap / 2) * dt);
            let departures = poisson(&mut self.rng, f64::from(self.streams[h]) * dt);
            let s = (self.streams[h] + arrivals)
                .saturating_sub(departures)
                .min(cap);
            self.streams[h] = s;
            let wander = self.rng.gen_range(0.95..1.05);
            let bytes_per_s = (f64::from(s) * STREAM_RATE as f64 * wander) as u64;
            out.push((
                h as u32 + 1,
                LocalEvent::Load(ringcast_proto::tables::Load {
                    streams: s,
                    bytes_per_s,
                }),
            ));
            let reach = &self.layout.reach[h];
            let per_disk = s / reach.len().max(1) as u32;
            for (i, d) in reach.iter().enumerate() {
                let extra = u32::from(i == 0) * (s - per_disk * reach.len() as u32);
                let report = disks::report(*d, true, per_disk + extra, STREAM_RATE);
                out.push((h as u32 + 1, LocalEvent::DiskProbe(report)));
            }
        }
        out
    }
}

/// A Poisson-distributed count of mean `mean` (Knuth's method; the means
/// here are a few events at most).
fn poisson(rng: &mut impl Rng, mean: f64) -> u32 {
    let limit = (-mean).exp();
    let mut k = 0;
    let mut p = rng.gen::<f64>();
    while p > limit {
        k += 1;
        p *= rng.gen::<f64>();
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_wanders_around_half_the_capacity_and_never_past_it() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let layout = Layout::random(8, &mut rng);
        let mut load = ServingLoad::new(layout, 7);
        let mut changed = 0;
        let mut sum = 0u64;
        let ticks = 4 * 600;
        for _ in 0..ticks {
            let before: Vec<u32> = (0..8).map(|h| load.streams(h)).collect();
            let reports = load.tick();
            assert!(reports
                .iter()
                .any(|(_, e)| matches!(e, LocalEvent::DiskProbe(_))));
            for (h, was) in before.iter().enumerate() {
                let s = load.streams(h);
                assert!(s <= load.layout().capacity[h]);
                changed += usize::from(s != *was);
                sum += u64::from(s);
            }
        }
        let mean = sum as f64 / f64::from(ticks) / 8.0;
        let half: f64 = load
            .layout()
            .capacity
            .iter()
            .map(|c| f64::from(*c) / 2.0)
            .sum::<f64>()
            / 8.0;
        assert!(
            (mean - half).abs() < half * 0.1,
            "mean {mean}, half capacity {half}"
        );
        assert!(
            changed > ticks as usize * 8 / 2,
            "loads change most ticks: {changed}"
        );
    }
}
