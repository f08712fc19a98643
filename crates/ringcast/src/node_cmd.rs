//! `ringcast node`: one cluster member as a process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ringcast_node::proto::{LocalEvent, NodeId};
use ringcast_node::settings::NodeSettings;
use ringcast_node::{clusterfile, configsvc, daemon};

/// Where a node gets its configuration.
pub enum Source {
    /// The cluster file, read directly.
    File(PathBuf),
    /// The configuration service, with a local cache.
    Url { url: String, cache_dir: PathBuf },
}

/// Loads the node's settings from the file or the configuration service.
pub fn settings(source: &Source, node: u32) -> Result<NodeSettings> {
    let id = NodeId(node);
    match source {
        Source::File(path) => {
            let file = clusterfile::load(path)?;
            Ok(file.node_settings(id)?)
        }
        Source::Url { url, cache_dir } => Ok(configsvc::fetch(url, id, cache_dir, 8)?),
    }
}

/// Where a node keeps its state (its last life): beside the cluster file, or
/// in the cache of the configuration service's copy.
pub fn state_dir(source: &Source) -> PathBuf {
    match source {
        Source::File(path) => path
            .parent()
            .map_or_else(|| PathBuf::from("."), |p| p.to_path_buf())
            .join("state"),
        Source::Url { cache_dir, .. } => cache_dir.clone(),
    }
}

/// Runs the node until it has left (after SIGINT or SIGTERM, or `POST /v1/leave`).
pub fn run(settings: NodeSettings, state_dir: PathBuf) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(settings, state_dir))
}

async fn serve(settings: NodeSettings, state_dir: PathBuf) -> Result<()> {
    let http: SocketAddr = settings.proto.addrs.http;
    let id = settings.proto.node;
    let mut daemon = daemon::start(settings, Some(&state_dir)).await?;
    let shared = daemon.shared.clone();
    tracing::info!("node {id} running; HTTP on http://{http}");
    tokio::select! {
        r = &mut daemon.node => { r.context("the node's loop failed")?; return Ok(()); }
        s = stop_signal() => { s?; }
    }
    tracing::info!("node {id} leaving the cluster");
    if shared.control.send(LocalEvent::Leave).await.is_err() {
        return Ok(());
    }
    tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(3), &mut daemon.node) => {
            if r.is_err() {
                tracing::warn!("node {id} did not hear its leave acknowledged in 3 s; stopping anyway");
            }
        }
        s = stop_signal() => { s?; tracing::warn!("second signal: stopping at once"); }
    }
    Ok(())
}

async fn stop_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Checks the node id given on the command line.
pub fn check_id(node: i64) -> Result<u32> {
    match u32::try_from(node) {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("--node must be a positive node id from the cluster file, not {node}"),
    }
}
