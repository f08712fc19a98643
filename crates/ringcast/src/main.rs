//! `ringcast`: the command-line program, a thin layer over the library crates.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ringcast",
    version,
    about = "A self-supervising cluster for streaming video"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a narrated simulated cluster: formation, preemption, takeover,
    /// failure detection, leave and handover, on a virtual clock.
    Demo {
        /// Number of nodes (3 to 64).
        #[arg(long, default_value_t = 5)]
        nodes: u32,
        /// Seed of the run; the same seed replays the same run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Demo { nodes, seed } => {
            if !(3..=64).contains(&nodes) {
                bail!("--nodes must be between 3 and 64, not {nodes}");
            }
            for line in ringcast_sim::demo::run(seed, nodes) {
                println!("{line}");
            }
        }
    }
    Ok(())
}
