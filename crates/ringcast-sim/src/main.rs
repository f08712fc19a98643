//! `ringcast-sim`: run the simulator's demo, campaigns, and single seeds.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};
use ringcast_proto::Timing;
use ringcast_sim::campaign::{self, CampaignConfig, Faults};
use ringcast_sim::hierarchy::{self, HierarchyConfig, Shape, TreeFaults};

#[derive(Parser)]
#[command(
    name = "ringcast-sim",
    about = "Deterministic simulator of ringcast's protocol core"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum FaultArg {
    /// A quiet network: no live node may ever be marked failed.
    None,
    /// Safety mode: any fault on any node.
    All,
    /// Liveness mode: faults only outside a healthy majority, which must
    /// keep a supervisor throughout.
    Minority,
}

#[derive(Clone, Copy, ValueEnum)]
enum TreeFaultArg {
    /// Supervisor deaths at every level and dead sub-clusters, on a quiet network.
    Kills,
    /// Also loss, duplication, reordering, partitions and pauses at every level.
    All,
}

#[derive(Subcommand)]
enum Command {
    /// A narrated run: formation, preemption, takeover, failure detection, leave, handover.
    Demo {
        /// Seed of the run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of nodes.
        #[arg(long, default_value_t = 5)]
        nodes: u32,
    },
    /// Many seeds with random faults; the last line is a JSON summary.
    ///
    /// With SIM_TRACE=1 every event of every node is printed to stderr as
    /// it happens (follow one seed with --seeds 1 --threads 1).
    Campaign {
        /// Nodes per seed.
        #[arg(long, default_value_t = 16)]
        nodes: u32,
        /// Number of seeds.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// First seed (default: SIM_SEED or 1).
        #[arg(long)]
        first_seed: Option<u64>,
        /// Faults to inject.
        #[arg(long, value_enum, default_value = "all")]
        faults: FaultArg,
        /// Status and notify interval, milliseconds.
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
        /// Missed periods before a failure declaration.
        #[arg(long, default_value_t = 3)]
        miss_limit: u32,
        /// Simulated seconds of faults per seed.
        #[arg(long, default_value_t = 3.0)]
        fault_seconds: f64,
        /// Worker threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Also model streams: titles on disks (1-2 per node, shared with
        /// ring neighbours), disk faults (broken and hung), players, the
        /// supervisor's stream book and the service addresses, checking
        /// capacity, reassignment and address holders after every step.
        /// Takes the streams per node (default 2 when given bare).
        #[arg(long, num_args = 0..=1, default_missing_value = "2", value_name = "PER_NODE")]
        streams: Option<u32>,
        /// Measure the steady bytes under a serving cluster's load: every
        /// node's streams (half of a capacity of 100 to 400, viewers
        /// watching a minute on average), byte rates and disk usage change
        /// and are reported four times a second, over a refresh period once
        /// the first reports have settled.
        #[arg(long, conflicts_with = "streams")]
        serving: bool,
    },
    /// Claim 5: a hierarchy of clusters (each cluster a node of its parent):
    /// cold start, supervisors killed at every level, whole sub-clusters
    /// killed; the last line is a JSON summary.
    Hierarchy {
        /// Members per cluster at each level, root first: 22x22x22 is 10,648
        /// machines in three levels.
        #[arg(long, default_value = "22x22x22")]
        shape: Shape,
        /// Simulated seconds to run.
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Seed (default: SIM_SEED or 1).
        #[arg(long)]
        seed: Option<u64>,
        /// Status and notify interval of the leaf clusters, milliseconds.
        /// The default, 100, lets 10,648 machines run faster than real time
        /// on two cores; 20 is LAN timing (docs/hierarchy.md).
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        /// How many times slower each level runs than the level below it.
        #[arg(long, default_value_t = 3)]
        slowdown: u32,
        /// Faults besides the kills: `kills` (supervisor deaths at every
        /// level and dead sub-clusters only) or `all` (also loss,
        /// duplication, reordering, partitions and pauses at every level).
        #[arg(long, value_enum, default_value_t = TreeFaultArg::Kills)]
        faults: TreeFaultArg,
        /// Worker threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
    },
}

fn seed_or_env(seed: Option<u64>) -> Result<u64> {
    match seed {
        Some(s) => Ok(s),
        None => match std::env::var("SIM_SEED") {
            Ok(v) => v
                .parse()
                .map_err(|_| anyhow::anyhow!("SIM_SEED must be a number, not {v:?}")),
            Err(_) => Ok(1),
        },
    }
}

fn threads_or_cores(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { seed, nodes } => {
            if !(3..=64).contains(&nodes) {
                bail!("--nodes must be between 3 and 64, not {nodes}");
            }
            for line in ringcast_sim::demo::run(seed, nodes) {
                println!("{line}");
            }
        }
        Command::Campaign {
            nodes,
            seeds,
            first_seed,
            faults,
            interval_ms,
            miss_limit,
            fault_seconds,
            threads,
            streams,
            serving,
        } => {
            if !(2..=1024).contains(&nodes) {
                bail!("--nodes must be between 2 and 1024, not {nodes}");
            }
            if !(1..=60_000).contains(&interval_ms) {
                bail!("--interval-ms must be between 1 and 60000, not {interval_ms}");
            }
            if !(1..=100).contains(&miss_limit) {
                bail!("--miss-limit must be between 1 and 100, not {miss_limit}");
            }
            if !(0.0..=3600.0).contains(&fault_seconds) {
                bail!("--fault-seconds must be between 0 and 3600, not {fault_seconds}");
            }
            if streams.is_some_and(|s| s > 1000) {
                bail!("--streams must be at most 1000 per node");
            }
            let first_seed = seed_or_env(first_seed)?;
            let timing = Timing::with_interval(Duration::from_millis(interval_ms), miss_limit);
            let cfg = CampaignConfig {
                nodes,
                first_seed,
                seeds,
                faults: match faults {
                    FaultArg::None => Faults::None,
                    FaultArg::All => Faults::All,
                    FaultArg::Minority => Faults::Minority,
                },
                timing,
                fault_time: Duration::from_secs_f64(fault_seconds),
                threads: threads_or_cores(threads),
                streams,
                serving,
            };
            eprintln!(
                "campaign: seeds {}..{} ({} nodes, faults {:?}, streams per node {:?}{})",
                first_seed,
                first_seed + seeds,
                nodes,
                cfg.faults,
                streams,
                if serving { ", serving load" } else { "" }
            );
            let (summary, reports) = campaign::run(&cfg, |r, done| {
                if !r.violations.is_empty() {
                    eprintln!("seed {} FAILED:\n{}", r.seed, r.violations.join("\n\n"));
                }
                if done % 50 == 0 || done == seeds {
                    eprintln!("  {done}/{seeds} seeds");
                }
            });
            let _ = reports;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Hierarchy {
            shape,
            seconds,
            seed,
            interval_ms,
            slowdown,
            faults,
            threads,
        } => {
            if !(1.0..=3600.0).contains(&seconds) {
                bail!("--seconds must be between 1 and 3600, not {seconds}");
            }
            if !(1..=60_000).contains(&interval_ms) {
                bail!("--interval-ms must be between 1 and 60000, not {interval_ms}");
            }
            if !(1..=20).contains(&slowdown) {
                bail!("--slowdown must be between 1 and 20, not {slowdown}");
            }
            let cfg = HierarchyConfig {
                shape,
                seed: seed_or_env(seed)?,
                duration: Duration::from_secs_f64(seconds),
                leaf_timing: Timing::with_interval(Duration::from_millis(interval_ms), 3),
                slowdown,
                faults: match faults {
                    TreeFaultArg::Kills => TreeFaults::Kills,
                    TreeFaultArg::All => TreeFaults::All,
                },
                threads: threads_or_cores(threads),
            };
            eprintln!(
                "hierarchy: shape {} ({} machines), seed {}, {} simulated seconds",
                cfg.shape,
                cfg.shape.machines(),
                cfg.seed,
                seconds
            );
            let summary = hierarchy::run(&cfg, &mut |line| eprintln!("  {line}"));
            for v in &summary.violation_examples {
                eprintln!("VIOLATION: {v}");
            }
            println!("{}", serde_json::to_string(&summary)?);
            if summary.violations > 0 {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
