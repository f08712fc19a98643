//! One node as a process: the protocol loop, the disk prober, the library
//! scanner, the load reporter, placement and the HTTP listener that carries
//! both the API and the zero-copy data path. This module wires the node's
//! parts together; nothing else in the crate uses it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringcast_config::live::RunningConfig;
use ringcast_config::settings::NodeSettings;
use ringcast_files::guard::Guard;
use ringcast_files::httpd::{HttpdConfig, Server};
use ringcast_files::stream::{HandoverHook, StreamCounters};
use ringcast_proto::verdict::{Verdict, DISK_FALL, DISK_RISE};
use ringcast_proto::{ClusterId, LocalEvent, NodeId, Reassign};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::host::addresses::holder::{Holder, Serve};
use crate::host::addresses::lan::Lan;
use crate::host::addresses::takeover::Takeover;
use crate::host::addresses::{AddressPlane, Loopback};
use crate::host::runtime::{NodeError, Runtime};
use crate::host::shared::{Rekey, Shared, Signal};
use crate::library::disks::{ProbeConfig, Prober};
use crate::placement::{Streaming, STREAM_PREFIX};

/// How often the HTTP listener's exempt addresses (the members') are
/// compared with the cluster map: a new member is exempt within this, so
/// that the placements it forwards are not limited as one client's.
pub const EXEMPT_REFRESH: Duration = Duration::from_millis(100);

/// How often each disk's library is rescanned for new and removed titles.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(2);
/// The least time a stream request waits on its disk (to open the file,
/// or for one batch of `sendfile`) before it is answered 503 or closed.
pub const REQUEST_DISK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the node reports its load on the ring.
pub const LOAD_INTERVAL: Duration = Duration::from_millis(250);

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The protocol node could not start.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The protocol loop's thread or runtime could not start.
    #[error("cannot start the protocol loop's thread: {0}")]
    Thread(std::io::Error),
    /// Service addresses cannot be held on this host.
    #[error("cannot hold service addresses beside {addr}: {source}")]
    Addresses {
        /// The node's own HTTP address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The node's HTTPS files cannot be used.
    #[error("cannot serve HTTPS: {0}")]
    Tls(#[from] ringcast_config::credentials::CredentialError),
    /// The HTTP port could not be opened.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a reloaded configuration was not applied.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReloadError {
    /// The configuration is another cluster's.
    #[error("the reloaded configuration is for cluster {got}, not this node's cluster {running}")]
    OtherCluster {
        /// The running node's cluster.
        running: ClusterId,
        /// The reloaded configuration's.
        got: ClusterId,
    },
    /// The configuration is another node's.
    #[error("the reloaded configuration is for node {got}, not this node {running}")]
    OtherNode {
        /// The running node.
        running: NodeId,
        /// The reloaded configuration's node.
        got: NodeId,
    },
    /// The configuration is older than the one the node runs.
    #[error(
        "the reloaded configuration is version {got}, older than the running version {running}"
    )]
    Older {
        /// The running version.
        running: u32,
        /// The reloaded version.
        got: u32,
    },
}

/// What a reload changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloaded {
    /// The keys changed (a key rotation stage).
    pub keys_changed: bool,
    /// The configuration version grew.
    pub version_changed: bool,
    /// Claim 1: the priority list changed; it takes effect by the claims'
    /// rules (a node that now outranks the supervisor preempts it).
    pub priority_changed: bool,
    /// Claim 4: the node's streaming capacity changed.
    pub capacity_changed: bool,
    /// The configuration version the node runs now.
    pub config_version: u32,
    /// Settings that differ from the running ones but take effect only when
    /// the node restarts.
    pub needs_restart: Vec<&'static str>,
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
    /// The HTTP listener's limits and refusal counters.
    pub guard: Arc<Guard>,
    /// The settings the node runs with (keys and version as last reloaded).
    running: Mutex<NodeSettings>,
    /// Takeovers of connections in flight (LAN service addresses only).
    takeover: Option<Arc<Takeover>>,
    tasks: Vec<JoinHandle<()>>,
    /// Stops the protocol loop's thread when the daemon is dropped.
    stop: Option<oneshot::Sender<()>>,
}

impl Daemon {
    /// The configuration version the node runs.
    pub fn config_version(&self) -> u32 {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.proto.config_version
    }

    /// Applies what a running node can change from a reloaded
    /// configuration: the cluster keys (a key rotation stage: frames, and
    /// the keys stream tokens derive from), the configuration version, the
    /// priority list and the node's streaming capacity.
    /// Anything else that changed is listed in [`Reloaded::needs_restart`].
    /// Counted in `ringcast_config_reloads_total{result}`.
    pub fn reload(&self, new: &NodeSettings) -> Result<Reloaded, ReloadError> {
        let result = self.try_reload(new);
        let counter = match &result {
            Ok(r)
                if r.keys_changed
                    || r.version_changed
                    || r.priority_changed
                    || r.capacity_changed =>
            {
                &self.shared.reloads.applied
            }
            Ok(_) => &self.shared.reloads.unchanged,
            Err(_) => &self.shared.reloads.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn try_reload(&self, new: &NodeSettings) -> Result<Reloaded, ReloadError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let (was, now) = (&running.proto, &new.proto);
        if now.cluster != was.cluster {
            return Err(ReloadError::OtherCluster {
                running: was.cluster,
                got: now.cluster,
            });
        }
        if now.node != was.node {
            return Err(ReloadError::OtherNode {
                running: was.node,
                got: now.node,
            });
        }
        if now.config_version < was.config_version {
            return Err(ReloadError::Older {
                running: was.config_version,
                got: now.config_version,
            });
        }
        let mut needs_restart = RunningConfig::of(&running).needs_restart(&RunningConfig::of(new));
        if new.admin_token_sha256 != running.admin_token_sha256 {
            needs_restart.push("admin_token");
        }
        let keys_changed = new.keys != running.keys;
        let version_changed = now.config_version != was.config_version;
        let priority = (now.priority != was.priority).then(|| now.priority.clone());
        // A draining node keeps announcing no capacity; the new one is
        // what it announces when it is undrained.
        let capacity = (now.capacity != was.capacity && !self.shared.draining.is_set())
            .then_some(now.capacity);
        let priority_changed = priority.is_some();
        let capacity_changed = capacity.is_some();
        if keys_changed || version_changed || priority_changed || capacity_changed {
            running.keys = new.keys.clone();
            running.proto.config_version = now.config_version;
            running.proto.priority = now.priority.clone();
            running.proto.capacity = now.capacity;
            *self
                .shared
                .running
                .write()
                .unwrap_or_else(|e| e.into_inner()) = RunningConfig::of(&running);
            let keys: Vec<[u8; 32]> = new.keys.iter().map(|(_, key)| *key).collect();
            if let Some(t) = &self.takeover {
                t.set_keys(keys.clone());
            }
            self.streaming.set_keys(keys);
            let rekey = Rekey {
                keyring: new.keyring(),
                config_version: now.config_version,
                priority,
                capacity,
            };
            self.shared.rekey.send_replace(Some(rekey));
        }
        Ok(Reloaded {
            keys_changed,
            version_changed,
            priority_changed,
            capacity_changed,
            config_version: running.proto.config_version,
            needs_restart,
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts every part of a node. `state_dir` keeps the node's last life
/// across restarts (see [`crate::host::life`]).
pub async fn start(
    settings: NodeSettings,
    state_dir: Option<&std::path::Path>,
) -> Result<Daemon, DaemonError> {
    start_with_seats(settings, Vec::new(), state_dir).await
}

/// [`start`] for a machine of a sub-cluster (claim 5): `seats` are the
/// settings of its seat in each ancestor cluster, nearest parent first,
/// held while it supervises below them (see [`crate::host::seat`]).
pub async fn start_with_seats(
    settings: NodeSettings,
    seats: Vec<NodeSettings>,
    state_dir: Option<&std::path::Path>,
) -> Result<Daemon, DaemonError> {
    let http = settings.proto.addrs.http;
    let me: NodeId = settings.proto.node;
    let key = settings.keys[0].1;
    let all_keys: Vec<[u8; 32]> = settings.keys.iter().map(|(_, k)| *k).collect();
    let disks = settings.proto.disks.clone();
    let probe = ProbeConfig::from_timing(&settings.proto.timing);
    let mut http_config = HttpdConfig::with_limits(STREAM_PREFIX, &settings.limits.http);
    // A request waits on a disk no longer than a probe does before calling
    // it hung (and never less than REQUEST_DISK_TIMEOUT): past it the player
    // gets 503 with Retry-After, never a hung connection.
    http_config.stream.disk_timeout = probe.timeout.max(REQUEST_DISK_TIMEOUT);
    let guard = Arc::new(Guard::new(&settings.limits.http));
    let http_limits = settings.limits.http.clone();
    // HTTPS (SECURITY.md): read before anything starts, so a bad file is
    // one clear error and not a node that half runs.
    let https = match &settings.tls {
        Some(tls) => Some((
            ringcast_config::credentials::https_server(tls)?,
            ringcast_config::credentials::https_client(tls)?,
        )),
        None => None,
    };
    let running = Mutex::new(settings.clone());
    let life = state_dir.map(|d| crate::host::life::LifeFile::new(d, me));
    let service = settings.service.clone();
    let proto = settings.proto.clone();
    let priority = proto.priority.clone();
    let (shared, node, stop) = start_protocol(settings, seats.clone(), life).await?;
    http_config.stream.closing = shared.draining.clone();
    if let Some((server, client)) = https {
        http_config.tls = Some(server);
        let _ = shared.web_setting.set(crate::host::web::Web::https(client));
    }
    let listener = tokio::net::TcpListener::bind(http)
        .await
        .map_err(|source| DaemonError::Listen { addr: http, source })?;
    let counters = Arc::new(StreamCounters::new());
    let _ = shared.streams.set(counters.clone());
    let mounts: BTreeMap<_, _> = disks
        .iter()
        .map(|d| (d.id, std::path::PathBuf::from(&d.mount)))
        .collect();
    let streaming = Streaming::new(
        &proto,
        key,
        mounts.clone(),
        shared.clone(),
        counters.clone(),
        service.clone(),
    );
    streaming.set_keys(all_keys.clone());
    streaming.set_placement_limits(&http_limits);
    shared
        .levels_above
        .store(seats.len(), std::sync::atomic::Ordering::Relaxed);
    {
        let s = streaming.clone();
        let _ = tokio::time::timeout(
            RESCAN_INTERVAL,
            tokio::task::spawn_blocking(move || s.rescan()),
        )
        .await;
    }
    let api = crate::operator::api::router(shared.clone())
        .merge(streaming.routes())
        .merge(crate::placement::address_routes(&streaming));
    let _ = shared.http_guard.set(guard.clone());
    let plane = if service.is_empty() {
        None
    } else {
        Some(address_plane(http)?)
    };
    // Claim 13: on a LAN, connections in flight outlive their holder.
    let takeover = match (&plane, http.ip()) {
        (Some(_), IpAddr::V4(ip)) if !ip.is_loopback() => match Takeover::bind(
            me,
            http,
            priority.clone(),
            service.clone(),
            shared.clone(),
            mounts.iter().map(|(d, p)| (d.0, p.clone())).collect(),
            all_keys.clone(),
        ) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("connections cannot be taken over here (UDP {http}: {e})");
                None
            }
        },
        _ => None,
    };
    if let Some(t) = &takeover {
        http_config.stream.handover = Some(HandoverHook(t.clone()));
    }
    let server = Server::new(
        api.clone(),
        streaming.clone(),
        counters.clone(),
        http_config.clone(),
        guard.clone(),
    );
    if let Some(t) = &takeover {
        t.set_server(server.clone());
    }
    let serve: Serve = {
        let server = server.clone();
        Arc::new(move |listener, closing| {
            tokio::spawn(server.clone().serve_closing(listener, closing))
        })
    };
    let mut tasks = vec![serve(listener, shared.draining.clone())];
    if let Some(plane) = plane {
        let holder = Holder::new(
            me,
            priority,
            service,
            plane,
            shared.clone(),
            serve.clone(),
            streaming.holdings.clone(),
        )
        .with_takeover(takeover.clone());
        tasks.push(tokio::spawn(holder.run()));
    }
    if let Some(t) = &takeover {
        tasks.push(tokio::spawn(t.clone().receive()));
    }
    tasks.extend([
        tokio::spawn(exempt_loop(guard.clone(), shared.clone())),
        tokio::spawn(rescan_loop(streaming.clone())),
        tokio::spawn(probe_loop(disks, probe, streaming.clone(), shared.clone())),
    ]);
    let s = streaming.clone();
    tasks.push(tokio::spawn(
        async move { s.report_load(LOAD_INTERVAL).await },
    ));
    tasks.push(tokio::spawn(reassign_loop(
        streaming.clone(),
        shared.clone(),
    )));
    Ok(Daemon {
        shared,
        streaming,
        node,
        guard,
        running,
        takeover,
        tasks,
        stop: Some(stop),
    })
}

/// The protocol loop on a thread and a tokio runtime of its own, so that
/// nothing the HTTP side does (a burst of requests, a disk that hangs a
/// worker) can delay a status or a notification. Returns the loop's shared
/// state, a task on the caller's runtime that ends when the loop ends, and
/// the sender that stops it.
async fn start_protocol(
    settings: NodeSettings,
    seats: Vec<NodeSettings>,
    life: Option<crate::host::life::LifeFile>,
) -> Result<(Arc<Shared>, JoinHandle<()>, oneshot::Sender<()>), DaemonError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("ringcast-protocol".into())
        .spawn(move || {
            raise_priority();
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(DaemonError::Thread(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let runtime = match Runtime::bind(settings, seats, life) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(DaemonError::Node(e)));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(runtime.shared()));
                tokio::select! {
                    () = runtime.run() => {}
                    _ = stop_rx => {}
                }
            });
            let _ = done_tx.send(());
        })
        .map_err(DaemonError::Thread)?;
    let shared = ready_rx.await.map_err(|_| {
        DaemonError::Thread(std::io::Error::other("the protocol thread ended at start"))
    })??;
    let node = tokio::spawn(async move {
        let _ = done_rx.await;
    });
    Ok((shared, node, stop_tx))
}

/// The niceness the protocol loop's thread asks for: on a machine whose
/// cores are busy serving streams, a status or a takeover must not wait
/// behind the data path's threads (a bench of 64 players on 2 cores saw
/// the loop's 20 ms timers fire 130 ms late, and false failure
/// declarations).
pub const PROTOCOL_NICENESS: i32 = -10;

/// Gives the calling thread (the protocol loop's) [`PROTOCOL_NICENESS`]
/// when the process may (root, or `CAP_SYS_NICE`); otherwise it keeps the
/// process's and says so once.
fn raise_priority() {
    let me = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(me), PROTOCOL_NICENESS) {
        tracing::info!(
            "the protocol loop runs at the process's priority (niceness {PROTOCOL_NICENESS} needs CAP_SYS_NICE: {e})"
        );
    }
}

/// Claim 13: how this host makes service addresses its own: by binding
/// them when its own listener is on loopback (one machine), else on the
/// LAN interface that carries its own address.
fn address_plane(http: SocketAddr) -> Result<Box<dyn AddressPlane>, DaemonError> {
    match http.ip() {
        IpAddr::V4(ip) if !ip.is_loopback() => Lan::new(ip)
            .map(|l| Box::new(l) as Box<dyn AddressPlane>)
            .map_err(|source| DaemonError::Addresses { addr: http, source }),
        _ => Ok(Box::new(Loopback)),
    }
}

/// The members' addresses skip the HTTP listener's per-client
/// limits (a member asks the supervisor to place every stream its clients
/// play). Refreshed from the cluster map.
async fn exempt_loop(guard: Arc<Guard>, shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(EXEMPT_REFRESH);
    loop {
        ticks.tick().await;
        // The members of this cluster and of every cluster above that this
        // machine holds a seat in (claim 5: supervisors of the tree ask
        // each other to place streams).
        let mut members: Vec<IpAddr> = Vec::new();
        for s in std::iter::once(shared.clone()).chain(shared.held_seats()) {
            let snap = s.snapshot.read().unwrap_or_else(|e| e.into_inner());
            if let Some(map) = snap.map.as_ref() {
                members.extend(
                    map.members
                        .iter()
                        .flat_map(|m| [m.addrs.http.ip(), m.addrs.ring.ip()]),
                );
            }
        }
        if members.is_empty() {
            continue;
        }
        // The guard keeps its set when it is the same.
        guard.set_exempt(members);
    }
}

/// Each disk's library is scanned on a blocking thread of its own, so a
/// disk that hangs stops only its own scans (a scan still running is not
/// started again).
async fn rescan_loop(streaming: Arc<Streaming>) {
    let mut ticks = tokio::time::interval(RESCAN_INTERVAL);
    let disks: Vec<_> = streaming.catalog_disks();
    loop {
        ticks.tick().await;
        for disk in &disks {
            let (s, disk) = (streaming.clone(), *disk);
            drop(tokio::task::spawn_blocking(move || s.rescan_disk(disk)));
        }
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
    let mut verdicts: BTreeMap<ringcast_proto::DiskId, Verdict> = BTreeMap::new();
    while let Some((disk, outcome)) = rx.recv().await {
        if let Some(e) = &outcome.error {
            tracing::warn!("disk {disk} probe failed: {e}");
        }
        shared
            .metrics
            .observe_probe(disk.0, outcome.latency, outcome.ok);
        // Claim 13: one failed probe is not a failed disk.
        let verdict = verdicts.entry(disk).or_default();
        let was = verdict.ok();
        let ok = verdict.observe(outcome.ok);
        if was && !ok {
            shared.metrics.count_verdict_failed(disk.0);
            tracing::warn!("disk {disk} failed {DISK_FALL} probes in a row: reporting it failed");
        } else if !was && ok {
            tracing::info!("disk {disk} passed {DISK_RISE} probes in a row: reporting it working");
        }
        let mut report = outcome.to_report(disk, streaming.digest(disk));
        report.ok = ok;
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
    let mut signals = shared.signals.subscribe();
    loop {
        let (node, why) = match signals.recv().await {
            Ok(Signal::Reassign(what)) => match what {
                Reassign::NodeFailed(node) => (Some(node), format!("{node} failed")),
                Reassign::NodeLeft(node) => (Some(node), format!("{node} left")),
                Reassign::DiskFailed(disk) => (None, format!("disk {disk} declared failed")),
                Reassign::PathBroken { node, disk } => (
                    Some(node),
                    format!("{node}'s path to disk {disk} is broken"),
                ),
            },
            Ok(Signal::ConfigOutdated(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                (None, "missed events".to_string())
            }
            Err(_) => return,
        };
        let moved = streaming.reassign();
        if moved > 0 {
            shared.metrics.count_reassigned(moved);
            shared.publish_local(
                "reassigned",
                node,
                format!("reassigned {moved} streams after: {why}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use ringcast_proto::KeyId;

    use super::*;
    use ringcast_config::clusterfile::{self, local_cluster};

    /// The runtime the test node runs on (two workers, like the machine).
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    }

    /// A reload applies new keys and a newer version at once, names
    /// what needs a restart, and refuses another node's, another cluster's
    /// or an older configuration.
    #[test]
    fn a_reload_applies_keys_and_refuses_foreign_or_older_configurations() {
        let dir = tempfile::tempdir().unwrap();
        let path = local_cluster(&dir.path().join("cluster"), 2, None).unwrap();
        let file = clusterfile::load(&path).unwrap();
        let settings = file.node_settings(NodeId(1)).unwrap();
        runtime().block_on(async {
            let d = start(settings.clone(), None).await.unwrap();
            let same = d.reload(&settings).unwrap();
            assert_eq!((same.keys_changed, same.needs_restart.len()), (false, 0));

            let mut next = settings.clone();
            next.keys = vec![(KeyId(2), [0x42; 32]), settings.keys[0]];
            next.proto.config_version += 1;
            next.proto.mtu = 1300;
            let r = d.reload(&next).unwrap();
            assert!(r.keys_changed);
            assert_eq!(r.config_version, settings.proto.config_version + 1);
            assert_eq!(r.needs_restart, vec!["mtu"]);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let snap = d.shared.snapshot();
                if snap.keys == vec![KeyId(2), KeyId(1)]
                    && snap.config_version == next.proto.config_version
                {
                    break;
                }
                assert!(Instant::now() < deadline, "the loop never took the keys");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }

            let mut other = file.node_settings(NodeId(2)).unwrap();
            other.proto.config_version = next.proto.config_version;
            assert!(matches!(
                d.reload(&other),
                Err(ReloadError::OtherNode { .. })
            ));
            let mut foreign = next.clone();
            foreign.proto.cluster = ClusterId(99);
            assert!(matches!(
                d.reload(&foreign),
                Err(ReloadError::OtherCluster { .. })
            ));
            assert_eq!(
                d.reload(&settings),
                Err(ReloadError::Older {
                    running: next.proto.config_version,
                    got: settings.proto.config_version
                })
            );
            let r = &d.shared.reloads;
            assert_eq!(
                [&r.applied, &r.unchanged, &r.failed].map(|c| c.load(Ordering::Relaxed)),
                [1, 1, 3]
            );
            d.node.abort();
        });
    }
}
