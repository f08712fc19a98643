//! The configuration service and its client, through real sockets.

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
        let response = match agent(None).get(&url).call() {
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
