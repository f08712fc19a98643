//! `ringcast bench failover`: real node processes on loopback, SIGKILL of the
//! supervisor and of a member, timed until every survivor reports the change.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ringcast_sim::campaign::percentile;
use serde::Serialize;
use serde_json::Value;

use crate::http;
use crate::up_cmd::{Layout, Library, LocalCluster};

/// The last line of `ringcast bench failover --json`.
#[derive(Debug, Serialize)]
pub struct FailoverReport {
    /// Nodes in the cluster.
    pub nodes: u32,
    /// Trials run (each: one supervisor kill, one member kill).
    pub trials: u32,
    /// Supervisor SIGKILL until every survivor follows the new one, median.
    pub failover_ms_p50: f64,
    /// ... 99th percentile.
    pub failover_ms_p99: f64,
    /// Member SIGKILL until every survivor lists it failed, median.
    pub detect_ms_p50: f64,
    /// ... 99th percentile.
    pub detect_ms_p99: f64,
    /// Status and notify interval of the cluster, milliseconds.
    pub interval_ms: u64,
    /// CPUs of the machine the bench ran on.
    pub cpus: usize,
    /// What was measured, in words.
    pub setup: &'static str,
}

/// How long one measurement may take before the bench gives up.
const LIMIT: Duration = Duration::from_secs(10);

/// Polls every survivor until `done` holds for each; returns the time the last one got there.
fn until_all(
    bases: &[String],
    start: Instant,
    done: impl Fn(&Value) -> bool + Sync,
) -> Result<Duration> {
    let times: Vec<Result<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = bases
            .iter()
            .map(|base| {
                let done = &done;
                s.spawn(move || {
                    let agent = http::agent();
                    loop {
                        if let Ok(v) = http::cluster(&agent, base) {
                            if done(&v) {
                                return Ok(start.elapsed());
                            }
                        }
                        if start.elapsed() > LIMIT {
                            bail!("{base} did not see the change within {} s", LIMIT.as_secs());
                        }
                        std::thread::sleep(Duration::from_micros(500));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a poller panicked")))
            })
            .collect()
    });
    let mut worst = Duration::ZERO;
    for t in times {
        worst = worst.max(t?);
    }
    Ok(worst)
}

fn lists(v: &Value, node: u32, status: &str) -> bool {
    v["nodes"]
        .as_array()
        .is_some_and(|ns| ns.iter().any(|n| n["id"] == node && n["status"] == status))
}

/// Runs the failover benchmark.
pub fn failover(nodes: u32, trials: u32, dir: Option<&Path>, json: bool) -> Result<FailoverReport> {
    if !(3..=32).contains(&nodes) {
        bail!("--nodes must be between 3 and 32, not {nodes}");
    }
    if !(1..=1000).contains(&trials) {
        bail!("--trials must be between 1 and 1000, not {trials}");
    }
    let mut cluster = LocalCluster::start(&Layout::Nodes(nodes), dir, &Library::Empty)?;
    cluster.wait_formed(Duration::from_secs(20))?;
    let bases: Vec<(u32, String)> = cluster.nodes.iter().map(|n| (n.0, n.1.clone())).collect();
    let mut failovers = Vec::new();
    let mut detects = Vec::new();
    for trial in 1..=trials {
        // Supervisor: highest priority is node 1 once formed.
        let sup = cluster.wait_formed(Duration::from_secs(20))?;
        let survivors: Vec<String> = bases
            .iter()
            .filter(|b| b.0 != sup)
            .map(|b| b.1.clone())
            .collect();
        let next = bases
            .iter()
            .map(|b| b.0)
            .filter(|id| *id != sup)
            .min()
            .context("survivors")?;
        let start = Instant::now();
        cluster.kill(sup)?;
        let took = until_all(&survivors, start, |v| v["supervisor"] == next)?;
        failovers.push(took.as_secs_f64() * 1000.0);
        cluster.spawn(sup)?;
        cluster.wait_formed(Duration::from_secs(20))?;

        // A member, in turn.
        let members: Vec<u32> = bases.iter().map(|b| b.0).filter(|id| *id != sup).collect();
        let victim = members[(trial as usize) % members.len()];
        let survivors: Vec<String> = bases
            .iter()
            .filter(|b| b.0 != victim)
            .map(|b| b.1.clone())
            .collect();
        let start = Instant::now();
        cluster.kill(victim)?;
        let took = until_all(&survivors, start, |v| lists(v, victim, "failed"))?;
        detects.push(took.as_secs_f64() * 1000.0);
        cluster.spawn(victim)?;
        if !json {
            eprintln!(
                "trial {trial}/{trials}: failover {:.1} ms, detection {:.1} ms",
                failovers[failovers.len() - 1],
                detects[detects.len() - 1]
            );
        }
    }
    cluster.stop();
    Ok(FailoverReport {
        nodes,
        trials,
        failover_ms_p50: percentile(&mut failovers, 50.0),
        failover_ms_p99: percentile(&mut failovers, 99.0),
        detect_ms_p50: percentile(&mut detects, 50.0),
        detect_ms_p99: percentile(&mut detects, 99.0),
        interval_ms: 20,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        setup: "real node processes on 127.0.0.1, multicast bus, SIGKILL; time until every survivor's /v1/cluster shows the change",
    })
}
