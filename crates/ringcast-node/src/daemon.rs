//! One node as a process: the protocol loop, the disk prober, the library
//! scanner, the load reporter, placement and the HTTP listener that carries
//! both the API and the zero-copy data path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ringcast_proto::{LocalEvent, NodeId};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::disks::{ProbeConfig, Prober};
use crate::runtime::{NodeError, Runtime, Shared};
use crate::settings::NodeSettings;
use crate::stream::StreamCounters;
use crate::streaming::{Streaming, STREAM_PREFIX};

/// How often each disk's library is rescanned for new and removed titles.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(2);
/// How often the node reports its load on the ring.
pub const LOAD_INTERVAL: Duration = Duration::from_millis(250);

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The protocol node could not start.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The HTTP port could not be opened.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running node: its shared state and the protocol loop's task.
#[derive(Debug)]
pub struct Daemon {
    /// State shared with the API.
    pub shared: Arc<Shared>,
    /// Placement and serving.
    pub streaming: Arc<Streaming>,
    /// The protocol loop; it ends when the node has left.
    pub node: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts every part of a node. `state_dir` keeps the node's last life
/// across restarts (see [`crate::life`]).
pub async fn start(
    settings: NodeSettings,
    state_dir: Option<&std::path::Path>,
) -> Result<Daemon, DaemonError> {
    let http = settings.proto.addrs.http;
    let me: NodeId = settings.proto.node;
    let key = settings.keys[0].1;
    let disks = settings.proto.disks.clone();
    let probe = ProbeConfig::from_timing(&settings.proto.timing);
    let life = state_dir.map(|d| crate::life::LifeFile::new(d, me));
    let runtime = Runtime::bind(settings, life)?;
    let shared = runtime.shared();
    let listener = tokio::net::TcpListener::bind(http)
        .await
        .map_err(|source| DaemonError::Listen { addr: http, source })?;
    let counters = Arc::new(StreamCounters::new());
    let _ = shared.streams.set(counters.clone());
    let mounts: BTreeMap<_, _> = disks
        .iter()
        .map(|d| (d.id, std::path::PathBuf::from(&d.mount)))
        .collect();
    let streaming = Streaming::new(me, key, mounts, shared.clone(), counters.clone());
    streaming.rescan();
    let api = crate::api::router(shared.clone()).merge(streaming.routes());
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(crate::httpd::serve(
        listener,
        api,
        streaming.clone(),
        counters,
        STREAM_PREFIX,
    )));
    tasks.push(tokio::spawn(rescan_loop(streaming.clone())));
    tasks.push(tokio::spawn(probe_loop(
        disks,
        probe,
        streaming.clone(),
        shared.clone(),
    )));
    let s = streaming.clone();
    tasks.push(tokio::spawn(
        async move { s.report_load(LOAD_INTERVAL).await },
    ));
    tasks.push(tokio::spawn(reassign_loop(
        streaming.clone(),
        shared.clone(),
    )));
    let node = tokio::spawn(runtime.run());
    Ok(Daemon {
        shared,
        streaming,
        node,
        tasks,
    })
}

async fn rescan_loop(streaming: Arc<Streaming>) {
    let mut ticks = tokio::time::interval(RESCAN_INTERVAL);
    loop {
        ticks.tick().await;
        let s = streaming.clone();
        let _ = tokio::task::spawn_blocking(move || s.rescan()).await;
    }
}

/// Claim 13: every probe outcome becomes a disk report for the ring.
async fn probe_loop(
    disks: Vec<ringcast_proto::DiskAccess>,
    cfg: ProbeConfig,
    streaming: Arc<Streaming>,
    shared: Arc<Shared>,
) {
    if disks.is_empty() {
        return;
    }
    let (tx, mut rx) = mpsc::channel(64);
    let _prober = Prober::spawn(disks, cfg, tx);
    while let Some((disk, outcome)) = rx.recv().await {
        if let Some(e) = &outcome.error {
            tracing::warn!("disk {disk} probe failed: {e}");
        }
        shared
            .metrics
            .observe_probe(disk.0, outcome.latency, outcome.ok);
        let mut report = outcome.to_report(disk, streaming.digest(disk));
        // Claim 4: the disk's load as this node reads it.
        let (streams, bytes_per_s) = streaming.disk_load(disk);
        report.streams = streams;
        report.bytes_per_s = bytes_per_s;
        if shared
            .control
            .send(LocalEvent::DiskProbe(report))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Claim 13: when a node or disk fails, the supervisor reassigns its streams at once.
async fn reassign_loop(streaming: Arc<Streaming>, shared: Arc<Shared>) {
    let mut events = shared.events.subscribe();
    loop {
        match events.recv().await {
            Ok(e) if matches!(e.kind, "failed" | "left" | "disk_failed" | "path_broken") => {
                let moved = streaming.reassign();
                if moved > 0 {
                    shared.metrics.count_reassigned(moved);
                    shared.publish_local(
                        "reassigned",
                        e.node,
                        format!("reassigned {moved} streams after: {}", e.text),
                    );
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                let moved = streaming.reassign();
                if moved > 0 {
                    shared.metrics.count_reassigned(moved);
                    shared.publish_local(
                        "reassigned",
                        None,
                        format!("reassigned {moved} streams after missed events"),
                    );
                }
            }
            Err(_) => return,
        }
    }
}
