//! `ringcast bench traffic`: what the control plane costs each node of a
//! real cluster while it serves (the flat-cost goal of `docs/protocol.md`,
//! "Control-plane cost by cluster size", measured on processes rather than
//! in the simulator). A local cluster at LAN timing serves real
//! `ringcast play` streams, restarted as they end so loads and disk usage
//! keep changing; every node's `/metrics` is read before and after the
//! measured window, and the report gives the bytes each node sent and
//! received on the bus and the ring per second.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::bench_interrupt::{catch_interrupts, check_interrupted};
use crate::bench_soak::{start_stream, stream_ok, Stream, TitleCluster};
use crate::bench_stream::Scratch;
use crate::http;

/// Options of `ringcast bench traffic`.
pub struct TrafficOptions {
    /// Nodes of the local cluster.
    pub nodes: u32,
    /// Seconds measured.
    pub seconds: u32,
    /// Streams playing at once.
    pub streams: u32,
    /// Where the cluster and its logs go (temporary by default).
    pub dir: Option<PathBuf>,
}

/// The last line of `ringcast bench traffic`.
#[derive(Debug, Serialize)]
pub struct TrafficReport {
    /// Nodes of the cluster.
    pub nodes: u32,
    /// Seconds measured.
    pub seconds: f64,
    /// Status and notification interval, milliseconds.
    pub interval_ms: u64,
    /// Bus and ring bytes sent and received per node per second: the median node.
    pub bytes_per_node_per_s_median: f64,
    /// The same for the busiest node (the supervisor, as a rule).
    pub bytes_per_node_per_s_max: f64,
    /// The node with the most.
    pub busiest_node: u32,
    /// The median node's bytes per second by channel and direction
    /// (`bus_sent`, `bus_received`, `ring_sent`, `ring_received`).
    pub median_by_channel: BTreeMap<String, f64>,
    /// Streams that ended byte-exact during the run.
    pub streams_completed: u64,
    /// Streams that failed or ended with other bytes.
    pub streams_lost: u64,
    /// What was measured, in words.
    pub setup: String,
}

/// The title every stream reads.
const TITLE: &str = "traffic.mp4";
/// Its size: a stream at [`crate::bench_soak::STREAM_RATE`] lasts about 4 s,
/// so the loads change all the time.
const TITLE_BYTES: u64 = 4 << 20;
/// How long the streams run before the window opens (the players start
/// together; the window should see a serving cluster, not its start).
const WARMUP: Duration = Duration::from_secs(5);

/// One node's bytes so far, by "channel_direction".
type Counters = BTreeMap<String, u64>;

/// The bytes counters of one node's metrics page, summed over kinds.
fn node_counters(agent: &ureq::Agent, base: &str) -> Result<Counters> {
    let text = agent
        .get(&format!("{base}/metrics"))
        .call()
        .with_context(|| format!("cannot read {base}/metrics"))?
        .into_string()
        .with_context(|| format!("cannot read {base}/metrics"))?;
    let counters = parse_counters(&text);
    if counters.is_empty() {
        bail!("{base}/metrics has no ringcast_sent_bytes_total or ringcast_received_bytes_total");
    }
    Ok(counters)
}

/// Sums `ringcast_{sent,received}_bytes_total{channel="..",..}` by
/// channel and direction.
fn parse_counters(text: &str) -> Counters {
    let mut out = Counters::new();
    for line in text.lines() {
        for (metric, direction) in [
            ("ringcast_sent_bytes_total{", "sent"),
            ("ringcast_received_bytes_total{", "received"),
        ] {
            let Some(rest) = line.strip_prefix(metric) else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let channel = labels
                .split(',')
                .find_map(|l| l.strip_prefix("channel=\""))
                .and_then(|c| c.strip_suffix('"'));
            let (Some(channel), Ok(value)) = (channel, value.trim().parse::<f64>()) else {
                continue;
            };
            *out.entry(format!("{channel}_{direction}")).or_default() += value as u64;
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The players, kept at `streams` at once; dropping it kills them.
struct Players {
    slots: Vec<Option<Stream>>,
    next: usize,
    completed: u64,
    lost: u64,
}

impl Drop for Players {
    fn drop(&mut self) {
        for s in self.slots.iter_mut().flatten() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}

impl Players {
    /// Reaps ended players (checking their bytes) and starts new ones.
    fn tend(&mut self, plays: &[String], scratch: &Scratch, digest: &[u8]) -> Result<()> {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(s) = slot {
                match s.child.try_wait() {
                    Ok(Some(status)) => {
                        if stream_ok(status, &s.out, digest) {
                            self.completed += 1;
                        } else {
                            self.lost += 1;
                            eprintln!(
                                "traffic: stream {} ended wrong ({status}):\n  {}",
                                s.out.display(),
                                s.why()
                            );
                        }
                        s.remove();
                        *slot = None;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.lost += 1;
                        eprintln!("traffic: cannot wait for a stream: {e}");
                        let _ = s.child.kill();
                        let _ = s.child.wait();
                        *slot = None;
                    }
                }
            }
            if slot.is_none() {
                let out = scratch.path.join(format!("stream-{i}.mp4"));
                let url = &plays[self.next % plays.len()];
                self.next += 1;
                *slot = Some(start_stream(url, &out)?);
            }
        }
        Ok(())
    }

    /// Runs the players for `d`, tending them.
    fn run_for(
        &mut self,
        d: Duration,
        plays: &[String],
        scratch: &Scratch,
        digest: &[u8],
    ) -> Result<()> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            check_interrupted()?;
            self.tend(plays, scratch, digest)?;
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// Runs the measurement.
pub fn traffic(opts: &TrafficOptions) -> Result<TrafficReport> {
    if !(2..=64).contains(&opts.nodes) {
        bail!("--nodes must be between 2 and 64, not {}", opts.nodes);
    }
    if !(1..=3600).contains(&opts.seconds) {
        bail!("--seconds must be between 1 and 3600, not {}", opts.seconds);
    }
    if !(1..=64).contains(&opts.streams) {
        bail!("--streams must be between 1 and 64, not {}", opts.streams);
    }
    catch_interrupts();
    // Processes start one after another on a small machine: a second each
    // is generous, and the wait ends as soon as the cluster has formed.
    let TitleCluster {
        scratch,
        digest,
        cluster,
        sup,
        bases,
        plays,
    } = TitleCluster::start(
        "traffic",
        opts.dir.as_deref(),
        opts.nodes,
        (TITLE, TITLE_BYTES),
        Duration::from_secs(30 + u64::from(opts.nodes)),
    )?;
    let ids: Vec<u32> = cluster.nodes.iter().map(|n| n.0).collect();
    let interval_ms = ringcast_proto::Timing::lan().status_interval.as_millis() as u64;
    eprintln!(
        "traffic: formed under n{sup}; {} stream(s) playing, {} s warm-up, then {} s measured",
        opts.streams,
        WARMUP.as_secs(),
        opts.seconds
    );
    let mut players = Players {
        slots: (0..opts.streams).map(|_| None).collect(),
        next: 0,
        completed: 0,
        lost: 0,
    };
    players.run_for(WARMUP, &plays, &scratch, &digest)?;
    let agent = http::agent();
    let read_all = |agent: &ureq::Agent| -> Result<Vec<Counters>> {
        bases.iter().map(|b| node_counters(agent, b)).collect()
    };
    let before = read_all(&agent)?;
    let started = Instant::now();
    let window = Duration::from_secs(u64::from(opts.seconds));
    let mut shown = Instant::now();
    while started.elapsed() < window {
        let step = (window - started.elapsed()).min(Duration::from_secs(10));
        players.run_for(step, &plays, &scratch, &digest)?;
        if shown.elapsed() >= Duration::from_secs(10) {
            shown = Instant::now();
            eprintln!(
                "traffic: {:>4.0} s of {}: {} stream(s) done, {} lost",
                started.elapsed().as_secs_f64(),
                opts.seconds,
                players.completed,
                players.lost
            );
        }
    }
    let after = read_all(&agent)?;
    let seconds = started.elapsed().as_secs_f64();
    let (completed, lost) = (players.completed, players.lost);
    drop(players);
    drop(cluster);

    let mut per_node = Vec::new();
    let mut by_channel: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let mut total = 0.0;
        for (key, end) in a {
            let rate = end.saturating_sub(b.get(key).copied().unwrap_or(0)) as f64 / seconds;
            total += rate;
            by_channel.entry(key.clone()).or_default().push(rate);
        }
        per_node.push((i, total));
    }
    let (busiest, max) = per_node
        .iter()
        .copied()
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .unwrap_or((0, 0.0));
    let busiest_node = ids.get(busiest).copied().unwrap_or(0);
    Ok(TrafficReport {
        nodes: opts.nodes,
        seconds,
        interval_ms,
        bytes_per_node_per_s_median: median(per_node.iter().map(|p| p.1).collect()).round(),
        bytes_per_node_per_s_max: max.round(),
        busiest_node,
        median_by_channel: by_channel
            .into_iter()
            .map(|(k, v)| (k, median(v).round()))
            .collect(),
        streams_completed: completed,
        streams_lost: lost,
        setup: format!(
            "{} node processes on loopback at {interval_ms} ms intervals, {} ringcast play processes at a time at {} KiB/s each reading a {} MiB title (checked byte for byte, restarted as they end), every node's /metrics read before and after {} s",
            opts.nodes,
            opts.streams,
            crate::bench_soak::STREAM_RATE >> 10,
            TITLE_BYTES >> 20,
            opts.seconds
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_counters_are_summed_by_channel_and_direction() {
        let page = "\
# TYPE ringcast_sent_bytes_total counter
ringcast_sent_bytes_total{channel=\"bus\",kind=\"notify\"} 100
ringcast_sent_bytes_total{channel=\"bus\",kind=\"join\"} 5
ringcast_sent_bytes_total{channel=\"ring\",kind=\"status\"} 70
ringcast_received_bytes_total{channel=\"ring\",kind=\"status\"} 71
ringcast_messages_sent_total{channel=\"bus\",kind=\"notify\"} 9
";
        let c = parse_counters(page);
        assert_eq!(c.get("bus_sent"), Some(&105));
        assert_eq!(c.get("ring_sent"), Some(&70));
        assert_eq!(c.get("ring_received"), Some(&71));
        assert_eq!(c.get("bus_received"), None);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![5.0]), 5.0);
        assert_eq!(median(Vec::new()), 0.0);
    }
}
