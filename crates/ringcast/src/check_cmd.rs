//! `ringcast config check FILE [--against-running]`: a cluster file checked
//! on its own and, with `--against-running`, against what each of its
//! nodes runs now, so that an operator learns before a reload which of the
//! changes a running node applies at once (keys, priority list, capacity)
//! and which wait for a restart.

use std::path::Path;

use anyhow::{bail, Result};
use ringcast_config::clusterfile::{self, ClusterFile};
use ringcast_config::live::RunningConfig;

/// Checks `file`; with `against_running`, compares it with every node it lists.
pub fn run(file: &Path, against_running: bool) -> Result<()> {
    let cf = clusterfile::load(file)?;
    crate::http::trust_file(&cf)?;
    let clusters = cf.clusters();
    let tree = if cf.is_hierarchy() {
        let levels = clusters.iter().map(|c| c.level).max().unwrap_or(0) + 1;
        format!(" in {} clusters of {levels} levels", clusters.len())
    } else {
        String::new()
    };
    println!(
        "{}: ok ({} nodes{tree}, configuration version {})",
        file.display(),
        cf.node_ids().len(),
        cf.config_version()
    );
    if against_running {
        against(&cf, file)?;
    }
    Ok(())
}

/// What one running node says about the file.
enum Verdict {
    /// It runs this file already, or would apply every change at once.
    Live { changed: bool },
    /// Problems, each one sentence.
    Refused(Vec<String>),
    /// It did not answer: not compared.
    Silent(String),
}

fn against(cf: &ClusterFile, file: &Path) -> Result<()> {
    let agent = crate::http::agent();
    let mut problems = 0;
    for id in cf.node_ids() {
        let settings = cf.node_settings(id)?;
        let url = format!("{}/v1/config", crate::http::base(settings.proto.addrs.http));
        let new = RunningConfig::of(&settings);
        let verdict = match fetch(&agent, &url, cf.admin_token()) {
            Err(why) => Verdict::Silent(why),
            Ok(Err(refusal)) => Verdict::Refused(vec![refusal]),
            Ok(Ok(running)) => compare(&running, &new),
        };
        let node = id.0;
        match verdict {
            Verdict::Live { changed: false } => println!("  node {node}: runs this file"),
            Verdict::Live { changed: true } => {
                println!(
                    "  node {node}: applies every change at once (keys, priority list, capacity)"
                );
            }
            Verdict::Silent(why) => println!("  node {node}: not compared ({why})"),
            Verdict::Refused(lines) => {
                for line in lines {
                    eprintln!("{}: node {node}: {line}", file.display());
                    problems += 1;
                }
            }
        }
    }
    if problems > 0 {
        bail!(
            "{}: {problems} change(s) cannot reach the running nodes by a reload",
            file.display()
        );
    }
    Ok(())
}

/// The node's running configuration, or why it refused to show it
/// (`Ok(Err)`), or why it did not answer (`Err`).
fn fetch(
    agent: &ureq::Agent,
    url: &str,
    token: Option<&str>,
) -> Result<Result<RunningConfig, String>, String> {
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    match request.call() {
        Ok(response) => {
            let body = response
                .into_string()
                .map_err(|e| format!("cannot read the answer of {url}: {e}"))?;
            serde_json::from_str(&body)
                .map(Ok)
                .map_err(|e| format!("{url} did not answer a configuration: {e}"))
        }
        Err(ureq::Error::Status(401 | 403, _)) => Ok(Err(format!(
            "{url} refuses this file's admin token: the admin token changes only when the node restarts"
        ))),
        Err(ureq::Error::Status(status, _)) => Err(format!("{url} answered {status}")),
        Err(ureq::Error::Transport(e)) => Err(format!("{url}: {e}")),
    }
}

fn compare(running: &RunningConfig, new: &RunningConfig) -> Verdict {
    let restart = running.needs_restart(new);
    let changed = !restart.is_empty() || running.differs_live(new);
    let mut lines: Vec<String> = restart
        .iter()
        .map(|what| {
            format!("{what} differ from what it runs: they take effect only when the node restarts")
        })
        .collect();
    let (was, now) = (running.proto.config_version, new.proto.config_version);
    if now < was {
        lines.push(format!(
            "config_version is {now}, older than the {was} it runs: the node refuses an older configuration"
        ));
    } else if changed && now == was {
        lines.push(format!(
            "config_version is still {now}, as it runs: bump it, or no node reloads the change"
        ));
    }
    if lines.is_empty() {
        Verdict::Live { changed }
    } else {
        Verdict::Refused(lines)
    }
}
