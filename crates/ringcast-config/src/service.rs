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

use axum::extract::{Extension, Path as UrlPath, State};
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
use crate::credentials::{NodeCredentials, ServiceCredentials, SIGNATURE_HEADER};
use crate::settings::NodeSettings;
use crate::tls::Peer;

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
/// as the module doc describes. Plain HTTP: any client that reaches it
/// gets every node's keys, so only on loopback (`ringcast up`).
pub async fn serve(path: PathBuf, listener: TcpListener) -> Result<(), ServeError> {
    let service = Service::start(path, None).await?;
    axum::serve(listener, router(service))
        .await
        .map_err(ServeError::Io)
}

/// [`serve`] over TLS with the service's `credentials` (`SECURITY.md`): a
/// client must present a node certificate of the cluster's CA and gets
/// that node's configuration only, signed with the service's key.
pub async fn serve_tls(
    path: PathBuf,
    listener: TcpListener,
    credentials: ServiceCredentials,
) -> Result<(), ServeError> {
    let tls = credentials.tls.clone();
    let service = Service::start(path, Some(credentials)).await?;
    crate::tls::serve(listener, router(service), tls)
        .await
        .map_err(ServeError::Io)
}

fn router(service: Service) -> Router {
    Router::new()
        .route("/v1/nodes/{id}/config", get(node_config))
        .route("/v1/cluster-file/version", get(version))
        .fallback(not_found)
        .with_state(Arc::new(service))
}

/// The cluster file being served and how to tell it changed.
struct Service {
    path: PathBuf,
    current: Mutex<Current>,
    /// Over TLS: who may fetch what, and the key that signs it.
    credentials: Option<ServiceCredentials>,
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
    async fn start(
        path: PathBuf,
        credentials: Option<ServiceCredentials>,
    ) -> Result<Self, ServeError> {
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
            credentials,
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
    peer: Option<Extension<Peer>>,
) -> Response {
    let Ok(id) = id.parse::<u32>() else {
        let shown: String = id.chars().take(64).collect();
        return error(
            StatusCode::BAD_REQUEST,
            format!("node id {shown:?} is not a number"),
        );
    };
    if service.credentials.is_some() {
        // The TLS handshake proved the certificate is the cluster's; it
        // must also be this node's.
        match peer.and_then(|Extension(p)| p.0) {
            Some(n) if n.0 == id => {}
            Some(n) => {
                return error(
                    StatusCode::FORBIDDEN,
                    format!(
                        "the certificate presented is node {}'s; it may fetch only node {}'s configuration",
                        n.0, n.0
                    ),
                )
            }
            None => {
                return error(
                    StatusCode::FORBIDDEN,
                    "the certificate presented names no ringcast node".to_string(),
                )
            }
        }
    }
    let file = service.file().await;
    match file.node_settings(NodeId(id)) {
        Ok(settings) => {
            let body = match serde_json::to_vec(&settings) {
                Ok(body) => body,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
            let mut response = Response::new(axum::body::Body::from(body.clone()));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            // The answer holds the cluster key: no cache may keep it.
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Some(credentials) = &service.credentials {
                if let Ok(v) = HeaderValue::from_str(&credentials.sign(&body)) {
                    headers.insert(SIGNATURE_HEADER, v);
                }
            }
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
    /// The node has credentials, so its configuration must be signed, and
    /// this one carries no signature.
    #[error("it is not signed, and this node accepts only configurations signed by its service ({})", trusted.display())]
    Unsigned {
        /// The public key file the node trusts.
        trusted: PathBuf,
    },
    /// The signature does not verify: the bytes were altered, or signed by
    /// another key.
    #[error("its signature does not verify with {}: it was altered, or signed by another service", trusted.display())]
    BadSignature {
        /// The public key file the node trusts.
        trusted: PathBuf,
    },
}

impl SourceError {
    /// Whether the source is untrusted rather than unreachable: not retried.
    fn is_untrusted(&self) -> bool {
        matches!(
            self,
            SourceError::Unsigned { .. } | SourceError::BadSignature { .. }
        )
    }
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
    /// The service's answer is not signed by the key the node trusts. Not
    /// retried, and the cached copy is not used.
    #[error("{url} gave node {}'s configuration, but {why}", node.0)]
    Untrusted {
        /// The URL asked.
        url: String,
        /// The node asked for.
        node: NodeId,
        /// What is wrong with it.
        why: Box<SourceError>,
    },
    /// A signed configuration older than the one this node already ran: a
    /// replay, or a cluster file whose `config_version` went down.
    #[error(
        "{url} gave node {}'s configuration version {got}, older than version {have} that this node already ran ({}), or of that version with other contents; a replayed configuration is refused (a changed cluster file must raise config_version)",
        node.0,
        cache.display()
    )]
    Older {
        /// The URL asked.
        url: String,
        /// The node asked for.
        node: NodeId,
        /// The version served.
        got: u32,
        /// The version of the signed cached copy.
        have: u32,
        /// The cached copy.
        cache: PathBuf,
    },
    /// The signed cached copy, the record of what this node ran, does not
    /// verify: it was altered. Nothing is trusted until it is removed.
    #[error("the cached copy {} {why}; remove it if its folder was restored from elsewhere", cache.display())]
    CacheUntrusted {
        /// The cached copy.
        cache: PathBuf,
        /// What is wrong with it.
        why: Box<SourceError>,
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
    fetch_with(url, node, cache_dir, attempts, None)
}

/// [`fetch`] from a service over TLS with the node's `credentials`
/// (`SECURITY.md`): the node presents its certificate, accepts only the
/// cluster CA's service, and only configurations signed by the service's
/// key and no older than the signed copy it cached (no replay). The cached
/// copy is kept with its signature and checked again when it is used.
pub fn fetch_with(
    url: &str,
    node: NodeId,
    cache_dir: &Path,
    attempts: u32,
    credentials: Option<&NodeCredentials>,
) -> Result<NodeSettings, FetchError> {
    let url = format!("{}/v1/nodes/{}/config", url.trim_end_matches('/'), node.0);
    let attempts = attempts.max(1);
    let agent = agent(credentials);
    // One fetch at a time in this process (a reload by signal, by a newer
    // version seen on the bus, by the watch): the replay check and the
    // cache it reads and writes belong together.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match fetch_once(&agent, &url, node, credentials) {
            Ok(fetched) => {
                if credentials.is_some() {
                    check_not_replayed(&url, node, cache_dir, &fetched.settings, credentials)?;
                }
                write_cache(cache_dir, &fetched)?;
                return Ok(fetched.settings);
            }
            Err(why) if why.is_untrusted() => {
                return Err(FetchError::Untrusted {
                    url,
                    node,
                    why: Box::new(why),
                });
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
                return fall_back_to_cache(url, node, cache_dir, attempts, last, credentials);
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

/// A signed configuration is no older than the signed copy this node ran,
/// and of the same version only if it is the same: anything else is a
/// replay (or a cluster file changed without raising its version). A
/// cached copy whose signature fails was altered: nothing is trusted then.
fn check_not_replayed(
    url: &str,
    node: NodeId,
    cache_dir: &Path,
    fetched: &NodeSettings,
    credentials: Option<&NodeCredentials>,
) -> Result<(), FetchError> {
    let cache = cache_path(cache_dir, node);
    let have = match read_cache(&cache, node, credentials) {
        Ok(have) => have,
        // Nothing signed ran here yet (no copy, or one from before the
        // node had credentials).
        Err(SourceError::Io(_) | SourceError::Unsigned { .. }) => return Ok(()),
        Err(why) => {
            return Err(FetchError::CacheUntrusted {
                cache,
                why: Box::new(why),
            })
        }
    };
    let (got, ran) = (fetched.proto.config_version, have.proto.config_version);
    if got < ran || (got == ran && *fetched != have) {
        return Err(FetchError::Older {
            url: url.to_string(),
            node,
            got,
            have: ran,
            cache,
        });
    }
    Ok(())
}

fn fall_back_to_cache(
    url: String,
    node: NodeId,
    cache_dir: &Path,
    attempts: u32,
    last: SourceError,
    credentials: Option<&NodeCredentials>,
) -> Result<NodeSettings, FetchError> {
    let cache = cache_path(cache_dir, node);
    match read_cache(&cache, node, credentials) {
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

fn agent(credentials: Option<&NodeCredentials>) -> ureq::Agent {
    let builder = ureq::AgentBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .redirects(0);
    match credentials {
        Some(c) => builder.tls_config(c.tls.clone()),
        None => builder,
    }
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

/// Settings as fetched: decoded, with the bytes and signature they came in.
struct Fetched {
    settings: NodeSettings,
    body: Vec<u8>,
    signature: Option<String>,
}

fn fetch_once(
    agent: &ureq::Agent,
    url: &str,
    node: NodeId,
    credentials: Option<&NodeCredentials>,
) -> Result<Fetched, SourceError> {
    let response = get_from(agent, url)?;
    if response.status() != 200 {
        return Err(SourceError::Status {
            status: response.status(),
            message: response.status_text().chars().take(200).collect(),
        });
    }
    let signature = response.header(SIGNATURE_HEADER).map(str::to_string);
    let body = read_limited(response.into_reader(), MAX_BODY)?;
    if let Some(c) = credentials {
        check_signature(c, &body, signature.as_deref())?;
    }
    Ok(Fetched {
        settings: decode(&body, node)?,
        body,
        signature,
    })
}

/// Whether `body` carries the service's signature (checked before the
/// bytes are decoded).
fn check_signature(
    credentials: &NodeCredentials,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), SourceError> {
    let trusted = credentials.dir.join(crate::credentials::SIGNING_PUB);
    match signature {
        None => Err(SourceError::Unsigned { trusted }),
        Some(sig) if credentials.verify(body, sig) => Ok(()),
        Some(_) => Err(SourceError::BadSignature { trusted }),
    }
}

/// The configuration version the service at `url` serves now (`GET
/// /v1/cluster-file/version`, one attempt, blocking): how a running node
/// notices a changed cluster file without fetching its settings.
pub fn served_version(url: &str) -> Result<u32, SourceError> {
    served_version_with(url, None)
}

/// [`served_version`] from a service over TLS with the node's `credentials`.
pub fn served_version_with(
    url: &str,
    credentials: Option<&NodeCredentials>,
) -> Result<u32, SourceError> {
    #[derive(serde::Deserialize)]
    struct Version {
        config_version: u32,
    }
    let url = format!("{}/v1/cluster-file/version", url.trim_end_matches('/'));
    let response = get_from(&agent(credentials), &url)?;
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

/// The cached copy at `path`; with `credentials`, only if its signature
/// (kept beside it) verifies: a copy altered on disk is refused.
fn read_cache(
    path: &Path,
    node: NodeId,
    credentials: Option<&NodeCredentials>,
) -> Result<NodeSettings, SourceError> {
    let file = std::fs::File::open(path).map_err(SourceError::Io)?;
    let bytes = read_limited(file, MAX_BODY + SIGNATURE_LINE as u64)?;
    let Some(c) = credentials else {
        return decode(&bytes, node);
    };
    // A signed copy is its signature's line, then the bytes signed.
    let (signature, body) = match bytes.iter().position(|b| *b == b'\n') {
        Some(i) if i + 1 == SIGNATURE_LINE => {
            (std::str::from_utf8(&bytes[..i]).ok(), &bytes[i + 1..])
        }
        _ => (None, &bytes[..]),
    };
    check_signature(c, body, signature)?;
    decode(body, node)
}

/// The first line of a signed cached copy: 128 hexadecimal characters.
const SIGNATURE_LINE: usize = 129;

/// Writes the settings to a temporary file and renames it over the cached
/// copy, so a crash leaves either the old copy or the new one. A signed
/// copy is one file, its signature's line then the bytes signed, so that
/// the two never come apart.
fn write_cache(cache_dir: &Path, fetched: &Fetched) -> Result<(), FetchError> {
    let settings = &fetched.settings;
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
    // A signed copy keeps the bytes signed; an unsigned one is written
    // readable.
    let json = match &fetched.signature {
        Some(sig) => {
            let mut signed = format!("{}\n", sig.trim()).into_bytes();
            signed.extend_from_slice(&fetched.body);
            signed
        }
        None => serde_json::to_vec_pretty(settings).map_err(|err| FetchError::CacheWrite {
            path: path.clone(),
            source: io::Error::other(err),
        })?,
    };
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
mod tests;
