//! The configuration service (claims 1-3): it hands each node its
//! [`NodeSettings`] over HTTP, and [`fetch`] is the node's side.
//!
//! Endpoints of [`serve`]:
//!
//! - `GET /v1/nodes/{id}/config`: the node's settings as the JSON of
//!   [`NodeSettings`]; 404 for a node the cluster file does not define, 400
//!   for an id that is not a number. Errors are one line of JSON,
//!   `{"error": "..."}`.
//! - `GET /v1/cluster-file/version`: `{"config_version": N}`.
//!
//! The service rereads the cluster file when its modification time (or size)
//! changes, checked on each request. A file that no longer validates is not
//! used: the service keeps serving the last good one and logs a warning. The
//! answers hold the cluster key, so the service should listen on loopback or a
//! trusted network only.
//!
//! [`fetch`] treats the answer as hostile: it reads at most [`MAX_BODY`]
//! bytes, refuses unknown fields, validates the settings and checks that they
//! are for the node it asked about. It keeps the last good answer on disk so a
//! node restarts while the service is down.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ringcast_proto::NodeId;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::clusterfile::{self, write_private_bytes, ClusterFile, ConfigFileError};
use crate::settings::NodeSettings;

/// The largest answer (and cached copy) [`fetch`] reads, in bytes.
pub const MAX_BODY: u64 = 1 << 20;
/// The wait before [`fetch`]'s second attempt; it doubles after each failure.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts of [`fetch`].
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long one request of [`fetch`] may take, from connecting to the last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The most [`fetch`] reads of an error answer.
const ERROR_BODY_LIMIT: u64 = 4096;
/// How long after a file change the service keeps rechecking the file on every
/// request, because a second change within the file system's timestamp
/// granularity would leave the modification time unchanged.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Why the configuration service stopped or could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The cluster file did not load at start.
    #[error(transparent)]
    Load(#[from] ConfigFileError),
    /// Serving failed.
    #[error("the configuration service failed: {0}")]
    Io(#[source] io::Error),
}

/// Claims 1-3: serves the cluster file at `path` on `listener` until an I/O
/// error stops it. The file must load at start; later changes are picked up
/// as the module doc describes.
pub async fn serve(path: PathBuf, listener: TcpListener) -> Result<(), ServeError> {
    let service = Service::start(path).await?;
    let app = Router::new()
        .route("/v1/nodes/{id}/config", get(node_config))
        .route("/v1/cluster-file/version", get(version))
        .fallback(not_found)
        .with_state(Arc::new(service));
    axum::serve(listener, app).await.map_err(ServeError::Io)
}

/// The cluster file being served and how to tell it changed.
struct Service {
    path: PathBuf,
    current: Mutex<Current>,
}

struct Current {
    file: Arc<ClusterFile>,
    stamp: Option<Stamp>,
    /// The file changed so recently that another change may share its stamp.
    racy: bool,
}

/// What tells one version of the file from the next without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: SystemTime,
    len: u64,
}

impl Service {
    async fn start(path: PathBuf) -> Result<Self, ServeError> {
        let stamp = stamp_of(&path).await.ok();
        let file = load_off_thread(path.clone()).await?;
        info!(
            path = %path.display(),
            config_version = file.config_version(),
            "serving the cluster file"
        );
        let current = Current {
            file: Arc::new(file),
            stamp,
            racy: stamp.is_some_and(is_racy),
        };
        Ok(Service {
            path,
            current: Mutex::new(current),
        })
    }

    /// The cluster file to answer from, reloaded first if it changed.
    async fn file(&self) -> Arc<ClusterFile> {
        let mut current = self.current.lock().await;
        let stamp = match stamp_of(&self.path).await {
            Ok(stamp) => Some(stamp),
            Err(err) => {
                if current.stamp.is_some() {
                    warn!(path = %self.path.display(), "cannot read the cluster file, serving the last good one: {err}");
                }
                None
            }
        };
        if let Some(stamp) = stamp {
            if current.stamp != Some(stamp) || current.racy {
                self.reload(&mut current).await;
                current.racy = is_racy(stamp);
            }
        }
        current.stamp = stamp;
        Arc::clone(&current.file)
    }

    async fn reload(&self, current: &mut Current) {
        match load_off_thread(self.path.clone()).await {
            Ok(file) => {
                if file.config_version() != current.file.config_version() {
                    info!(
                        path = %self.path.display(),
                        config_version = file.config_version(),
                        "reloaded the cluster file"
                    );
                }
                current.file = Arc::new(file);
            }
            Err(err) => warn!(
                path = %self.path.display(),
                config_version = current.file.config_version(),
                "the changed cluster file is not valid, serving the last good one: {err}"
            ),
        }
    }
}

async fn stamp_of(path: &Path) -> io::Result<Stamp> {
    let meta = tokio::fs::metadata(path).await?;
    Ok(Stamp {
        modified: meta.modified()?,
        len: meta.len(),
    })
}

fn is_racy(stamp: Stamp) -> bool {
    match SystemTime::now().duration_since(stamp.modified) {
        Ok(age) => age < RACY_WINDOW,
        Err(_) => true, // modified in the future: trust nothing
    }
}

async fn load_off_thread(path: PathBuf) -> Result<ClusterFile, ServeError> {
    tokio::task::spawn_blocking(move || clusterfile::load(&path))
        .await
        .map_err(|err| ServeError::Io(io::Error::other(err)))?
        .map_err(ServeError::Load)
}

async fn node_config(
    State(service): State<Arc<Service>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let Ok(id) = id.parse::<u32>() else {
        let shown: String = id.chars().take(64).collect();
        return error(
            StatusCode::BAD_REQUEST,
            format!("node id {shown:?} is not a number"),
        );
    };
    let file = service.file().await;
    match file.node_settings(NodeId(id)) {
        Ok(settings) => {
            let mut response = Json(settings).into_response();
            // The answer holds the cluster key: no cache may keep it.
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(ConfigFileError::UnknownNode { .. }) => error(
            StatusCode::NOT_FOUND,
            format!("node {id} is not in the cluster file"),
        ),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    }
}

async fn version(State(service): State<Arc<Service>>) -> Response {
    let file = service.file().await;
    Json(serde_json::json!({ "config_version": file.config_version() })).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint".to_string())
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

// ---- the client ----------------------------------------------------------------

/// Why one source (an answer of the service, or the cached copy) gave no
/// usable settings.
#[derive(Debug, Error)]
pub enum SourceError {
    /// The request failed: no connection, a timeout, a broken answer.
    #[error("{0}")]
    Transport(#[source] Box<ureq::Transport>),
    /// The service answered with an error status.
    #[error("the service answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The service's error message, shortened and stripped of control characters.
        message: String,
    },
    /// Reading the answer's body or the cached copy failed.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// The answer or the cached copy is larger than [`MAX_BODY`].
    #[error("it is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The JSON does not decode or the settings do not validate.
    #[error("it does not hold valid settings: {0}")]
    Invalid(#[source] serde_json::Error),
    /// The settings are for another node.
    #[error("it holds the settings of node {}, not node {}", got.0, asked.0)]
    WrongNode {
        /// The node asked for.
        asked: NodeId,
        /// The node the settings are for.
        got: NodeId,
    },
}

/// Why [`fetch`] has no settings for the node; every variant names the URL or file.
#[derive(Debug, Error)]
pub enum FetchError {
    /// The service refused the request (a 4xx status, such as 404 for a node
    /// the cluster file does not define). Not retried, and the cached copy is
    /// not used: the service's answer is authoritative.
    #[error("{url} refused to give node {}'s configuration ({status}): {message}", node.0)]
    Refused {
        /// The URL asked.
        url: String,
        /// The node asked for.
        node: NodeId,
        /// The HTTP status.
        status: u16,
        /// The service's error message.
        message: String,
    },
    /// Every attempt failed and the cached copy cannot be used either.
    #[error(
        "{url} gave no configuration for node {} in {attempts} attempts (last: {last}), and the cached copy {} cannot be used: {cache_problem}",
        node.0,
        cache.display()
    )]
    Unavailable {
        /// The URL asked.
        url: String,
        /// The node asked for.
        node: NodeId,
        /// How many attempts were made.
        attempts: u32,
        /// Why the last attempt failed.
        last: Box<SourceError>,
        /// The cached copy's path.
        cache: PathBuf,
        /// Why the cached copy cannot be used.
        cache_problem: Box<SourceError>,
    },
    /// The settings arrived but could not be cached.
    #[error("cannot write the cached copy {}: {source}", path.display())]
    CacheWrite {
        /// The cache file (or directory) that failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Claims 1-3: fetches node `node`'s settings from the configuration service
/// at `url` (such as `http://127.0.0.1:7400`), blocking.
///
/// Makes up to `attempts` attempts (at least one), waiting [`FIRST_BACKOFF`]
/// after the first failure and twice as long after each next one, at most
/// [`MAX_BACKOFF`]. On success the settings are written atomically, readable
/// by the owner only, to `cache_dir/node-<id>.json`. When every attempt fails
/// the cached copy is used (with a warning), if there is a valid one. A 4xx
/// answer is final: no retry, no cached copy.
pub fn fetch(
    url: &str,
    node: NodeId,
    cache_dir: &Path,
    attempts: u32,
) -> Result<NodeSettings, FetchError> {
    let url = format!("{}/v1/nodes/{}/config", url.trim_end_matches('/'), node.0);
    let attempts = attempts.max(1);
    let agent = agent();
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match fetch_once(&agent, &url, node) {
            Ok(settings) => {
                write_cache(cache_dir, &settings)?;
                return Ok(settings);
            }
            Err(SourceError::Status { status, message }) if (400..500).contains(&status) => {
                return Err(FetchError::Refused {
                    url,
                    node,
                    status,
                    message,
                });
            }
            Err(last) if attempt >= attempts => {
                return fall_back_to_cache(url, node, cache_dir, attempts, last);
            }
            Err(err) => {
                warn!(%url, attempt, attempts, "fetching the configuration failed: {err}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempt += 1;
            }
        }
    }
}

fn fall_back_to_cache(
    url: String,
    node: NodeId,
    cache_dir: &Path,
    attempts: u32,
    last: SourceError,
) -> Result<NodeSettings, FetchError> {
    let cache = cache_path(cache_dir, node);
    match read_cache(&cache, node) {
        Ok(settings) => {
            warn!(
                %url,
                cache = %cache.display(),
                config_version = settings.proto.config_version,
                "the configuration service is unreachable ({last}); using the cached copy"
            );
            Ok(settings)
        }
        Err(cache_problem) => Err(FetchError::Unavailable {
            url,
            node,
            attempts,
            last: Box::new(last),
            cache,
            cache_problem: Box::new(cache_problem),
        }),
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .redirects(0)
        .build()
}

/// `GET url`: the response, or the service's error status with its message.
fn get_from(agent: &ureq::Agent, url: &str) -> Result<ureq::Response, SourceError> {
    match agent.get(url).call() {
        Ok(response) => Ok(response),
        Err(ureq::Error::Status(status, response)) => {
            let body = read_limited(response.into_reader(), ERROR_BODY_LIMIT).unwrap_or_default();
            Err(SourceError::Status {
                status,
                message: error_message(&body),
            })
        }
        Err(ureq::Error::Transport(err)) => Err(SourceError::Transport(Box::new(err))),
    }
}

fn fetch_once(agent: &ureq::Agent, url: &str, node: NodeId) -> Result<NodeSettings, SourceError> {
    let response = get_from(agent, url)?;
    if response.status() != 200 {
        return Err(SourceError::Status {
            status: response.status(),
            message: response.status_text().chars().take(200).collect(),
        });
    }
    let body = read_limited(response.into_reader(), MAX_BODY)?;
    decode(&body, node)
}

/// The configuration version the service at `url` serves now (`GET
/// /v1/cluster-file/version`, one attempt, blocking): how a running node
/// notices a changed cluster file without fetching its settings.
pub fn served_version(url: &str) -> Result<u32, SourceError> {
    #[derive(serde::Deserialize)]
    struct Version {
        config_version: u32,
    }
    let url = format!("{}/v1/cluster-file/version", url.trim_end_matches('/'));
    let response = get_from(&agent(), &url)?;
    let body = read_limited(response.into_reader(), ERROR_BODY_LIMIT)?;
    let v: Version = serde_json::from_slice(&body).map_err(SourceError::Invalid)?;
    Ok(v.config_version)
}

/// Reads at most `limit` bytes; more is [`SourceError::TooLarge`].
fn read_limited(reader: impl Read, limit: u64) -> Result<Vec<u8>, SourceError> {
    let mut bytes = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(SourceError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(SourceError::TooLarge);
    }
    Ok(bytes)
}

/// The `error` field of a JSON error body, or the body itself; at most 200
/// characters, without control characters.
fn error_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    message
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

fn decode(bytes: &[u8], node: NodeId) -> Result<NodeSettings, SourceError> {
    let settings: NodeSettings = serde_json::from_slice(bytes).map_err(SourceError::Invalid)?;
    if settings.proto.node != node {
        return Err(SourceError::WrongNode {
            asked: node,
            got: settings.proto.node,
        });
    }
    Ok(settings)
}

/// Where [`fetch`] keeps node `node`'s last good settings.
pub fn cache_path(cache_dir: &Path, node: NodeId) -> PathBuf {
    cache_dir.join(format!("node-{}.json", node.0))
}

fn read_cache(path: &Path, node: NodeId) -> Result<NodeSettings, SourceError> {
    let file = std::fs::File::open(path).map_err(SourceError::Io)?;
    decode(&read_limited(file, MAX_BODY)?, node)
}

/// Writes the settings to a temporary file and renames it over the cached
/// copy, so a crash leaves either the old copy or the new one.
fn write_cache(cache_dir: &Path, settings: &NodeSettings) -> Result<(), FetchError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FetchError::CacheWrite { path, source }
    };
    std::fs::create_dir_all(cache_dir).map_err(fail(cache_dir))?;
    let path = cache_path(cache_dir, settings.proto.node);
    let temp = cache_dir.join(format!(
        ".node-{}.json.{}-{}.tmp",
        settings.proto.node.0,
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let json = serde_json::to_vec_pretty(settings).map_err(|err| FetchError::CacheWrite {
        path: path.clone(),
        source: io::Error::other(err),
    })?;
    let written = write_private_bytes(&temp, &json).and_then(|()| std::fs::rename(&temp, &path));
    if let Err(source) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(FetchError::CacheWrite { path, source });
    }
    // Make the rename itself durable; a failure here leaves a valid file either way.
    if let Ok(dir) = std::fs::File::open(cache_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use super::*;
    use crate::clusterfile::local_cluster;

    /// A local three-node cluster file and a cache directory, removed on drop.
    struct Fixture {
        dir: tempfile::TempDir,
        path: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = local_cluster(&dir.path().join("cluster"), 3, None).unwrap();
            Fixture { dir, path }
        }

        fn cache(&self) -> PathBuf {
            self.dir.path().join("cache")
        }

        fn expected(&self, node: u32) -> NodeSettings {
            clusterfile::load(&self.path)
                .unwrap()
                .node_settings(NodeId(node))
                .unwrap()
        }

        fn set_config_version(&self, version: u32) {
            let text = std::fs::read_to_string(&self.path).unwrap();
            let line = text
                .lines()
                .find(|l| l.starts_with("config_version"))
                .unwrap();
            let text = text.replace(line, &format!("config_version = {version}"));
            std::fs::write(&self.path, text).unwrap();
        }
    }

    /// Starts the service on 127.0.0.1 and returns its base URL once it answers.
    async fn start(path: PathBuf) -> (String, tokio::task::JoinHandle<Result<(), ServeError>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(path, listener));
        let url = format!("http://{addr}");
        // The listener is bound, so this request waits in its backlog until
        // the service has loaded the file and accepts.
        config_version(&url).await;
        (url, task)
    }

    /// Serves `body` with `status` for every request, as a hostile service might.
    async fn start_fake(status: StatusCode, body: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(move || {
            let body = body.clone();
            async move { (status, body) }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    async fn fetch_off_thread(
        url: &str,
        node: u32,
        cache: &Path,
        attempts: u32,
    ) -> Result<NodeSettings, FetchError> {
        let (url, cache) = (url.to_string(), cache.to_path_buf());
        tokio::task::spawn_blocking(move || fetch(&url, NodeId(node), &cache, attempts))
            .await
            .unwrap()
    }

    /// GET `url`, returning the status and the body.
    async fn get_raw(url: String) -> (u16, String) {
        tokio::task::spawn_blocking(move || {
            let response = match agent().get(&url).call() {
                Ok(response) => response,
                Err(ureq::Error::Status(_, response)) => response,
                Err(err) => panic!("GET {url}: {err}"),
            };
            (response.status(), response.into_string().unwrap())
        })
        .await
        .unwrap()
    }

    async fn config_version(url: &str) -> u64 {
        let (status, body) = get_raw(format!("{url}/v1/cluster-file/version")).await;
        assert_eq!(status, 200, "{body}");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        value["config_version"].as_u64().unwrap()
    }

    /// Polls the version endpoint until it reports `version`, for at most ten seconds.
    async fn wait_for_version(url: &str, version: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = config_version(url).await;
            if seen == version {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the service still reports config_version {seen}, not {version}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A TCP address on 127.0.0.1 where nothing listens.
    fn closed_port() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    #[tokio::test]
    async fn a_node_fetches_the_settings_the_file_gives_it_and_caches_them() {
        let fx = Fixture::new();
        let (url, _server) = start(fx.path.clone()).await;
        for node in 1..=3 {
            let settings = fetch_off_thread(&url, node, &fx.cache(), 3).await.unwrap();
            assert_eq!(settings, fx.expected(node));
        }
        let cached = std::fs::read(cache_path(&fx.cache(), NodeId(2))).unwrap();
        assert_eq!(decode(&cached, NodeId(2)).unwrap(), fx.expected(2));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(cache_path(&fx.cache(), NodeId(2))).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
        let leftovers = std::fs::read_dir(fx.cache()).unwrap().count();
        assert_eq!(leftovers, 3, "temporary files were left behind");
    }

    #[tokio::test]
    async fn fetch_falls_back_to_the_cached_copy_when_the_service_is_gone() {
        let fx = Fixture::new();
        let (url, server) = start(fx.path.clone()).await;
        let fetched = fetch_off_thread(&url, 2, &fx.cache(), 1).await.unwrap();
        server.abort();
        assert!(server.await.unwrap_err().is_cancelled());
        let fallback = fetch_off_thread(&url, 2, &fx.cache(), 2).await.unwrap();
        assert_eq!(fallback, fetched);
    }

    #[tokio::test]
    async fn fetch_without_a_service_or_a_cached_copy_names_the_url_and_the_cache() {
        let fx = Fixture::new();
        let url = format!("http://{}", closed_port());
        let err = fetch_off_thread(&url, 2, &fx.cache(), 2).await.unwrap_err();
        assert!(
            matches!(err, FetchError::Unavailable { attempts: 2, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&format!("{url}/v1/nodes/2/config")), "{text}");
        assert!(text.contains("node-2.json"), "{text}");
    }

    #[tokio::test]
    async fn fetching_an_unknown_node_is_refused_without_the_cache() {
        let fx = Fixture::new();
        let (url, _server) = start(fx.path.clone()).await;
        // A cached copy for node 9 must not hide the service's answer.
        let mut stale = fx.expected(1);
        stale.proto.node = NodeId(9);
        std::fs::create_dir_all(fx.cache()).unwrap();
        let json = serde_json::to_vec(&stale).unwrap();
        std::fs::write(cache_path(&fx.cache(), NodeId(9)), json).unwrap();

        let err = fetch_off_thread(&url, 9, &fx.cache(), 5).await.unwrap_err();
        let FetchError::Refused {
            status, message, ..
        } = &err
        else {
            panic!("expected a refusal, got {err:?}");
        };
        assert_eq!(*status, 404);
        assert_eq!(message, "node 9 is not in the cluster file");
        assert!(err.to_string().contains("/v1/nodes/9/config"), "{err}");
    }

    #[tokio::test]
    async fn a_node_id_that_is_not_a_number_gets_400_with_a_json_error() {
        let fx = Fixture::new();
        let (url, _server) = start(fx.path.clone()).await;
        let (status, body) = get_raw(format!("{url}/v1/nodes/two/config")).await;
        assert_eq!(status, 400);
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            value["error"].as_str().unwrap().contains("not a number"),
            "{body}"
        );
        assert!(!body.trim().contains('\n'), "{body}");
    }

    #[tokio::test]
    async fn a_changed_cluster_file_is_served_after_a_reload() {
        let fx = Fixture::new();
        let (url, _server) = start(fx.path.clone()).await;
        assert_eq!(config_version(&url).await, 1);
        fx.set_config_version(2);
        wait_for_version(&url, 2).await;
        let settings = fetch_off_thread(&url, 1, &fx.cache(), 1).await.unwrap();
        assert_eq!(settings.proto.config_version, 2);
    }

    #[tokio::test]
    async fn an_invalid_cluster_file_leaves_the_last_good_one_served() {
        let fx = Fixture::new();
        let (url, _server) = start(fx.path.clone()).await;
        let expected = fx.expected(3);
        let good = std::fs::read_to_string(&fx.path).unwrap();
        std::fs::write(&fx.path, format!("{good}\n[surprise]\n")).unwrap();
        assert_eq!(config_version(&url).await, 1);
        let settings = fetch_off_thread(&url, 3, &fx.cache(), 1).await.unwrap();
        assert_eq!(settings, expected);
        std::fs::write(&fx.path, good).unwrap();
        fx.set_config_version(3);
        wait_for_version(&url, 3).await;
    }

    #[tokio::test]
    async fn the_service_does_not_start_on_an_invalid_file() {
        let fx = Fixture::new();
        std::fs::write(&fx.path, "[cluster]\nid = 1\n").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = serve(fx.path.clone(), listener).await.unwrap_err();
        assert!(
            matches!(err, ServeError::Load(ConfigFileError::Invalid { .. })),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("cluster.toml:1: cluster.name: missing field"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_limit_is_refused() {
        let fx = Fixture::new();
        let url = start_fake(StatusCode::OK, vec![b' '; MAX_BODY as usize + 1]).await;
        let err = fetch_off_thread(&url, 1, &fx.cache(), 1).await.unwrap_err();
        let FetchError::Unavailable { last, .. } = &err else {
            panic!("expected no settings, got {err:?}");
        };
        assert!(matches!(**last, SourceError::TooLarge), "{err}");
    }

    #[tokio::test]
    async fn settings_for_another_node_are_refused() {
        let fx = Fixture::new();
        let body = serde_json::to_vec(&fx.expected(1)).unwrap();
        let url = start_fake(StatusCode::OK, body).await;
        let err = fetch_off_thread(&url, 2, &fx.cache(), 1).await.unwrap_err();
        let FetchError::Unavailable { last, .. } = &err else {
            panic!("expected no settings, got {err:?}");
        };
        assert!(
            matches!(
                **last,
                SourceError::WrongNode {
                    asked: NodeId(2),
                    got: NodeId(1)
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn settings_that_do_not_validate_are_refused_and_the_cache_is_used() {
        let fx = Fixture::new();
        let (url, server) = start(fx.path.clone()).await;
        let good = fetch_off_thread(&url, 1, &fx.cache(), 1).await.unwrap();
        server.abort();
        let mut value = serde_json::to_value(&good).unwrap();
        value["priority"] = serde_json::json!([]);
        let url = start_fake(StatusCode::OK, serde_json::to_vec(&value).unwrap()).await;
        let fallback = fetch_off_thread(&url, 1, &fx.cache(), 1).await.unwrap();
        assert_eq!(fallback, good);
    }

    #[tokio::test]
    async fn a_server_error_is_retried_then_reported_with_its_message() {
        let fx = Fixture::new();
        let body = br#"{"error":"disk on fire\u0007"}"#.to_vec();
        let url = start_fake(StatusCode::INTERNAL_SERVER_ERROR, body).await;
        let err = fetch_off_thread(&url, 1, &fx.cache(), 2).await.unwrap_err();
        let FetchError::Unavailable { last, attempts, .. } = &err else {
            panic!("expected no settings, got {err:?}");
        };
        assert_eq!(*attempts, 2);
        let SourceError::Status { status, message } = &**last else {
            panic!("expected a status, got {last:?}");
        };
        assert_eq!((*status, message.as_str()), (500, "disk on fire"));
    }
}
