//! `ringcast node`: one cluster member as a process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ringcast_config::credentials::NodeCredentials;
use ringcast_config::settings::NodeSettings;
use ringcast_config::{clusterfile, service};
use ringcast_node::daemon;
use ringcast_node::host::shared::{Shared, Signal};
use ringcast_node::host::systemd;
use ringcast_node::proto::{LocalEvent, NodeId, Role};
use tokio::sync::{broadcast, mpsc};

/// Where a node gets its configuration.
#[derive(Clone, Debug)]
pub enum Source {
    /// The cluster file, read directly.
    File(PathBuf),
    /// The configuration service, with a local cache, and over https the
    /// node's credentials.
    Url {
        url: String,
        cache_dir: PathBuf,
        credentials: Option<Box<NodeCredentials>>,
    },
}

impl Source {
    /// The configuration service at `url` for node `node`: https needs
    /// the node's `credentials` folder, and credentials need https.
    pub fn url(
        url: String,
        cache_dir: PathBuf,
        credentials: Option<PathBuf>,
        node: u32,
    ) -> Result<Source> {
        let https = url.starts_with("https://");
        let credentials = match (https, credentials) {
            (true, Some(dir)) => Some(Box::new(NodeCredentials::load(&dir, NodeId(node))?)),
            (true, None) => bail!(
                "--config-url {url} is https: give --credentials DIR with this node's certificate (ringcast credentials init)"
            ),
            (false, Some(dir)) => bail!(
                "--credentials {} is for an https configuration service, and --config-url {url} is not https",
                dir.display()
            ),
            (false, None) => None,
        };
        Ok(Source::Url {
            url,
            cache_dir,
            credentials,
        })
    }
}

/// Loads the node's settings from the file or the configuration service.
pub fn settings(source: &Source, node: u32) -> Result<NodeSettings> {
    load(source, node, 8)
}

/// Loads the node's settings, trying the configuration service `attempts`
/// times (then its cached copy).
fn load(source: &Source, node: u32, attempts: u32) -> Result<NodeSettings> {
    let id = NodeId(node);
    match source {
        Source::File(path) => {
            let file = clusterfile::load(path)?;
            Ok(file.node_settings(id)?)
        }
        Source::Url {
            url,
            cache_dir,
            credentials,
        } => Ok(service::fetch_with(
            url,
            id,
            cache_dir,
            attempts,
            credentials.as_deref(),
        )?),
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
/// SIGHUP, or a newer configuration version seen on the bus, reloads the
/// configuration from `source` (key rotation without a restart).
pub fn run(settings: NodeSettings, state_dir: PathBuf, source: Source) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(settings, state_dir, source))
}

/// Why the configuration is reloaded.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    /// SIGHUP.
    Hangup,
    /// A frame carried this newer configuration version.
    Outdated(u32),
    /// The source itself serves this newer version (the watch below).
    Changed(u32),
}

/// How often a running node asks its source which configuration version
/// it holds: the cluster file's `config_version`, or the configuration
/// service's `/v1/cluster-file/version`. A changed file reaches every node
/// within this period even if no node is told by hand; the first node to
/// reload tells the others at once, through the version its frames carry.
const CONFIG_WATCH: Duration = Duration::from_secs(1);

/// The configuration version `source` holds now.
fn source_version(source: &Source) -> Result<u32> {
    match source {
        Source::File(path) => Ok(clusterfile::load(path)?.config_version()),
        Source::Url {
            url, credentials, ..
        } => Ok(service::served_version_with(url, credentials.as_deref())?),
    }
}

/// Watches `source` for a newer configuration version than the node runs,
/// off the async threads; each version seen is sent on `tx`.
fn spawn_watch(source: Source, tx: mpsc::Sender<u32>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CONFIG_WATCH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut failing = false;
        loop {
            tick.tick().await;
            let src = source.clone();
            match tokio::task::spawn_blocking(move || source_version(&src)).await {
                Ok(Ok(v)) => {
                    failing = false;
                    if tx.send(v).await.is_err() {
                        return;
                    }
                }
                // Said once per outage: the node runs on what it has.
                Ok(Err(e)) if !failing => {
                    failing = true;
                    tracing::warn!("cannot read the configuration's version: {e:#}");
                }
                Ok(Err(_)) => {}
                Err(_) => return,
            }
        }
    });
}

/// Whether loading the configuration failed because the source no longer
/// defines this node: it was removed from the cluster, and leaves (claim 19).
fn removed(error: &anyhow::Error) -> bool {
    use ringcast_config::clusterfile::ConfigFileError;
    error.chain().any(|e| {
        matches!(
            e.downcast_ref::<ConfigFileError>(),
            Some(ConfigFileError::UnknownNode { .. })
        ) || matches!(
            e.downcast_ref::<service::FetchError>(),
            Some(service::FetchError::Refused { status: 404, .. })
        )
    })
}

/// How often, and how far apart, a node refetches after seeing a newer
/// configuration version before it settles for what its source has.
const OUTDATED_ATTEMPTS: u32 = 5;
const OUTDATED_RETRY: Duration = Duration::from_millis(500);

/// Loads the configuration off the async threads and hands it to the loop.
fn spawn_reload(
    source: Source,
    node: u32,
    why: Trigger,
    done: mpsc::Sender<(Trigger, Result<NodeSettings>)>,
) {
    tokio::spawn(async move {
        let attempts = match why {
            Trigger::Hangup | Trigger::Changed(_) => 1,
            Trigger::Outdated(_) => OUTDATED_ATTEMPTS,
        };
        let mut last = Err(anyhow::anyhow!("not loaded"));
        for attempt in 1..=attempts {
            let src = source.clone();
            last = tokio::task::spawn_blocking(move || load(&src, node, 2))
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("the reload task failed: {e}")));
            let reached = match (&last, why) {
                (Ok(s), Trigger::Outdated(v) | Trigger::Changed(v)) => s.proto.config_version >= v,
                _ => true,
            };
            if reached || attempt == attempts {
                break;
            }
            tokio::time::sleep(OUTDATED_RETRY).await;
        }
        let _ = done.send((why, last)).await;
    });
}

async fn serve(settings: NodeSettings, state_dir: PathBuf, source: Source) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let http: SocketAddr = settings.proto.addrs.http;
    let id = settings.proto.node;
    let seats = settings.seats.clone();
    let mut daemon = daemon::start_with_seats(settings, seats, Some(&state_dir)).await?;
    let shared = daemon.shared.clone();
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut signals = shared.signals.subscribe();
    let (reloaded_tx, mut reloaded) = mpsc::channel(4);
    let (watched_tx, mut watched) = mpsc::channel(1);
    spawn_watch(source.clone(), watched_tx);
    tracing::info!(
        "node {id} running; HTTP on {}",
        daemon.shared.web().url(http, "")
    );
    // READY waits for the cluster: a unit ordered after this one starts
    // with a node that serves.
    let mut ready = false;
    let mut ready_check = tokio::time::interval(READY_CHECK);
    loop {
        tokio::select! {
            r = &mut daemon.node => {
                systemd::stopping(&format!("node {id} left the cluster"));
                r.context("the node's loop failed")?;
                return Ok(());
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = ready_check.tick(), if !ready => {
                if let Some(status) = joined(&shared) {
                    tracing::info!("{status}");
                    systemd::ready(&status);
                    ready = true;
                }
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                systemd::reloading();
                spawn_reload(source.clone(), id.0, Trigger::Hangup, reloaded_tx.clone());
            }
            signal = signals.recv() => match signal {
                Ok(Signal::ConfigOutdated(v)) => {
                    spawn_reload(source.clone(), id.0, Trigger::Outdated(v), reloaded_tx.clone());
                }
                Ok(Signal::Reassign(_)) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {}
            },
            Some(v) = watched.recv() => {
                if v > daemon.config_version() {
                    tracing::info!("the configuration source holds version {v}: reloading");
                    spawn_reload(source.clone(), id.0, Trigger::Changed(v), reloaded_tx.clone());
                }
            }
            Some((why, loaded)) = reloaded.recv() => {
                if loaded.as_ref().is_err_and(removed) {
                    tracing::warn!("node {id} is no longer in the cluster's configuration: leaving");
                    break;
                }
                apply(&daemon, why, loaded);
                if matches!(why, Trigger::Hangup) {
                    // Done, reloaded or not (the log says which); a node
                    // still forming says READY when it has formed.
                    if let Some(status) = joined(&shared).filter(|_| ready) {
                        systemd::ready(&status);
                    }
                }
            }
        }
    }
    tracing::info!("node {id} leaving the cluster");
    systemd::stopping(&format!("node {id} leaving the cluster"));
    if shared.control.send(LocalEvent::Leave).await.is_err() {
        return Ok(());
    }
    tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(3), &mut daemon.node) => {
            if r.is_err() {
                tracing::warn!("node {id} did not hear its leave acknowledged in 3 s; stopping anyway");
            }
        }
        _ = term.recv() => tracing::warn!("second signal: stopping at once"),
        _ = int.recv() => tracing::warn!("second signal: stopping at once"),
    }
    Ok(())
}

/// How often a starting node looks whether it has formed or joined its cluster.
const READY_CHECK: Duration = Duration::from_millis(50);

/// What `systemctl status` shows once the node is a listed member (or the
/// supervisor) of its cluster; `None` before.
fn joined(shared: &Shared) -> Option<String> {
    let snap = shared.snapshot.read().ok()?;
    let map = snap.map.as_ref()?;
    let listed = map.is_up(shared.node)
        && map.member(shared.node).map(|m| m.incarnation) == Some(snap.incarnation);
    match snap.role {
        Role::Supervisor if listed => Some(format!(
            "{} supervises cluster {} ({} nodes up)",
            shared.node,
            shared.cluster_name,
            map.members.iter().filter(|m| map.is_up(m.id)).count()
        )),
        Role::Member if listed => Some(format!(
            "{} is a member of cluster {}, supervisor {}",
            shared.node, shared.cluster_name, map.supervisor
        )),
        _ => None,
    }
}

/// Applies a reloaded configuration and says what happened.
fn apply(daemon: &daemon::Daemon, why: Trigger, loaded: Result<NodeSettings>) {
    let settings = match loaded {
        Ok(s) => s,
        Err(e) => {
            daemon
                .shared
                .reloads
                .failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!("reloading the configuration ({why:?}) failed: {e:#}");
            return;
        }
    };
    match daemon.reload(&settings) {
        Ok(r) => {
            let said = |changed: bool| if changed { "changed" } else { "unchanged" };
            tracing::info!(
                "configuration reloaded ({why:?}): version {}, keys {}, priority {}, capacity {}",
                r.config_version,
                said(r.keys_changed),
                said(r.priority_changed),
                said(r.capacity_changed),
            );
            if !r.needs_restart.is_empty() {
                tracing::warn!(
                    "changed settings that take effect only after a restart: {}",
                    r.needs_restart.join(", ")
                );
            }
        }
        Err(e) => tracing::warn!("configuration not reloaded ({why:?}): {e}"),
    }
}

/// Checks the node id given on the command line.
pub fn check_id(node: i64) -> Result<u32> {
    match u32::try_from(node) {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("--node must be a positive node id from the cluster file, not {node}"),
    }
}
