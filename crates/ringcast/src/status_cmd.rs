//! `ringcast status` and `ringcast events`: read a running cluster.

use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{bail, Context, Result};
use ringcast_config::clusterfile;
use serde_json::Value;

use crate::http;

/// The HTTP bases to try: the URL given, or every node of the cluster file.
pub fn targets(config: Option<&Path>, url: Option<&str>) -> Result<Vec<String>> {
    match (config, url) {
        (_, Some(url)) => Ok(vec![url.trim_end_matches('/').to_string()]),
        (Some(path), None) => {
            let file = clusterfile::load(path)?;
            http::trust_file(&file)?;
            Ok(file
                .node_ids()
                .into_iter()
                .filter_map(|id| file.http_addr(id))
                .map(http::base)
                .collect())
        }
        (None, None) => bail!("give --config FILE (the cluster file) or --url http://NODE"),
    }
}

/// The cluster as the supervisor sees it, asked through the first node that answers.
pub fn fetch(targets: &[String], follow: bool) -> Result<Value> {
    let agent = http::agent();
    let mut last = None;
    for base in targets {
        match http::cluster(&agent, base) {
            Ok(view) if follow => return Ok(follow_supervisor(&agent, view)),
            Ok(view) => return Ok(view),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no node to ask")))
        .context("no node of the cluster answered")
}

/// If the answering node is not the supervisor, asks the supervisor itself.
fn follow_supervisor(agent: &ureq::Agent, view: Value) -> Value {
    if view["node_role"] == "supervisor" {
        return view;
    }
    let sup = &view["supervisor"];
    let http = view["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| &n["id"] == sup))
        .and_then(|n| n["http"].as_str())
        .and_then(|a| a.parse().ok())
        .map(http::base);
    match http.and_then(|base| http::cluster(agent, &base).ok()) {
        Some(v) if v["node_role"] == "supervisor" => v,
        _ => view,
    }
}

/// Claim 5: every cluster of a tree, as its supervisor sees it.
pub struct Tree {
    /// `(cluster, its level, the supervisor's view)`, root first; the view
    /// is `None` for a cluster whose supervisor no machine answered for.
    pub clusters: Vec<(clusterfile::ClusterInfo, Option<Value>)>,
}

/// Asks every machine of a tree's cluster file for its view and the views of
/// the seats it holds; `None` for a file of one cluster.
pub fn fetch_tree(config: &Path) -> Result<Option<Tree>> {
    let file = clusterfile::load(config)?;
    http::trust_file(&file)?;
    if !file.is_hierarchy() {
        return Ok(None);
    }
    let agent = http::agent();
    let views: Vec<Value> = file
        .node_ids()
        .into_iter()
        .filter_map(|id| file.http_addr(id))
        .filter_map(|addr| http::cluster(&agent, &http::base(addr)).ok())
        .collect();
    if views.is_empty() {
        bail!("no machine of {} answered", config.display());
    }
    let all: Vec<&Value> = views
        .iter()
        .flat_map(ringcast_node::operator::overview::views_of)
        .collect();
    let clusters = file
        .clusters()
        .into_iter()
        .map(|c| {
            let sup = all
                .iter()
                .find(|v| {
                    v["cluster_id"].as_u64() == Some(u64::from(c.id.0))
                        && v["node_role"] == "supervisor"
                })
                .map(|v| (*v).clone());
            (c, sup)
        })
        .collect();
    Ok(Some(Tree { clusters }))
}

impl Tree {
    /// The tree as indented tables, one per cluster.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for (c, view) in &self.clusters {
            let indent = "    ".repeat(c.level);
            let text = match view {
                Some(v) => table(v),
                None => format!("cluster {} ({}): no supervisor answered\n", c.name, c.id),
            };
            for line in text.lines() {
                out.push_str(&indent);
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// The tree as JSON: each cluster's id, name, level, parent and view.
    pub fn json(&self) -> Value {
        Value::Array(
            self.clusters
                .iter()
                .map(|(c, v)| {
                    serde_json::json!({
                        "id": c.id, "name": c.name, "level": c.level,
                        "parent": c.parent, "view": v,
                    })
                })
                .collect(),
        )
    }
}

/// The cluster as a table.
pub fn table(view: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster {}   supervisor n{}   epoch {}   (answered by n{})",
        view["cluster"].as_str().unwrap_or("?"),
        view["supervisor"],
        view["epoch"],
        view["node"]
    );
    let _ = writeln!(
        out,
        "{:<6} {:<7} {:<11} {:<22} {:<22} LOAD",
        "NODE", "STATUS", "ROLE", "RING", "HTTP"
    );
    let usage = view["tables"]["node_usage"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for n in view["nodes"].as_array().into_iter().flatten() {
        let load = usage
            .iter()
            .find(|u| u["node"] == n["id"])
            .map(|u| {
                format!(
                    "{}/{} streams",
                    u["load"]["streams"], u["capacity"]["max_streams"]
                )
            })
            .unwrap_or_else(|| "-".into());
        let role = if n["status"] == "up" {
            n["role"].as_str().unwrap_or("?")
        } else {
            "-"
        };
        let _ = writeln!(
            out,
            "{:<6} {:<7} {:<11} {:<22} {:<22} {}",
            format!("n{}", n["id"]),
            n["status"].as_str().unwrap_or("?"),
            role,
            n["ring"].as_str().unwrap_or("?"),
            n["http"].as_str().unwrap_or("?"),
            load
        );
    }
    let ring: Vec<String> = view["ring"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| format!("n{n}"))
        .collect();
    let _ = writeln!(out, "ring: {}", ring.join(" -> "));
    let (mut streams, mut capacity, mut bytes) = (0u64, 0u64, 0u64);
    for u in &usage {
        let up = view["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["id"] == u["node"] && n["status"] == "up");
        if up {
            streams += u["load"]["streams"].as_u64().unwrap_or(0);
            capacity += u["capacity"]["max_streams"].as_u64().unwrap_or(0);
            bytes += u["load"]["bytes_per_s"].as_u64().unwrap_or(0);
        }
    }
    let _ = writeln!(
        out,
        "load: {streams}/{capacity} streams, {:.1} MB/s (members up)",
        bytes as f64 / f64::from(1 << 20)
    );
    let disks = view["tables"]["disk_usage"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !disks.is_empty() {
        let _ = writeln!(
            out,
            "{:<6} {:<7} {:>10} {:>10} {:>8} {:>12}",
            "DISK", "STATUS", "SIZE_MB", "USED_MB", "STREAMS", "READ_MB_S"
        );
        for d in disks {
            let mb = |v: &serde_json::Value| v.as_u64().unwrap_or(0) / (1 << 20);
            let _ = writeln!(
                out,
                "{:<6} {:<7} {:>10} {:>10} {:>8} {:>12.1}",
                format!("d{}", d["disk"]),
                d["status"].as_str().unwrap_or("?"),
                mb(&d["capacity_bytes"]),
                mb(&d["used_bytes"]),
                d["streams"],
                d["bytes_per_s"].as_u64().unwrap_or(0) as f64 / f64::from(1 << 20)
            );
        }
    }
    out
}

/// Follows a node's event stream, printing one line per event, until interrupted.
pub fn follow_events(targets: &[String], json: bool) -> Result<()> {
    let agent = http::builder()
        .timeout_connect(std::time::Duration::from_millis(500))
        .build();
    let mut last = None;
    for base in targets {
        let url = format!("{base}/v1/events");
        match agent.get(&url).call() {
            Ok(resp) => {
                eprintln!("following {url} (Ctrl-C to stop)");
                let reader = BufReader::new(resp.into_reader());
                for line in reader.lines() {
                    let line = line.with_context(|| format!("the stream from {url} broke"))?;
                    let Some(data) = line.strip_prefix("data:") else {
                        continue;
                    };
                    let data = data.trim();
                    let text = if json {
                        format!("{data}\n")
                    } else {
                        let e: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                        let at = e["at_ms"].as_u64().unwrap_or(0);
                        format!(
                            "{}  n{:<4} {}\n",
                            clock(at),
                            e["observer"],
                            e["text"].as_str().unwrap_or(data)
                        )
                    };
                    if !crate::print_out(&text)? {
                        return Ok(());
                    }
                }
                bail!("{url} closed the event stream");
            }
            Err(e) => last = Some(anyhow::Error::from(e).context(format!("cannot reach {url}"))),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no node to ask")))
}

fn clock(unix_ms: u64) -> String {
    let day_ms = unix_ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}
