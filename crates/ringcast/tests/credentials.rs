//! The configuration service over TLS (SECURITY.md): only the holder of a
//! node's certificate gets that node's configuration, signed; a node
//! refuses a configuration altered on disk or older than one it ran.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::capture::{captured, contains};
use common::{isolate_network, key_hex, replace_file, Cluster, Reap, Spec, BIN};

/// `curl` of `path` at the service, with `args` (certificates); returns the
/// exit status, the HTTP status it printed and the body.
fn curl(url: &str, args: &[&Path]) -> (bool, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"]);
    let flags = ["--cacert", "--cert", "--key"];
    for (flag, path) in flags.iter().zip(args) {
        cmd.arg(flag).arg(path);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("curl is installed by scripts/install-test-deps");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (out.status.success(), code.to_string(), body.to_string())
}

fn serve(file: &Path, listen: &str, creds: &Path) -> Reap {
    let svc = Command::new(BIN)
        .args(["config", "serve"])
        .arg(file)
        .args(["--listen", listen, "--tls-dir"])
        .arg(creds)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Reap(vec![svc])
}

fn node_command(id: u32, url: &str, creds: &Path, cache: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["node", "--config-url", url, "--credentials"])
        .arg(creds)
        .arg("--cache-dir")
        .arg(cache)
        .args(["--node", &id.to_string()])
        .stdin(Stdio::null());
    cmd
}

/// Runs node `id` until it exits on its own (it must refuse to start).
fn refused(id: u32, url: &str, creds: &Path, cache: &Path) -> Output {
    let out = node_command(id, url, creds, cache).output().unwrap();
    assert!(!out.status.success(), "node {id} started");
    out
}

fn init_credentials(file: &Path, dir: &Path) {
    let out = Command::new(BIN)
        .args(["credentials", "init", "--config"])
        .arg(file)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn only_a_nodes_own_certificate_gets_its_configuration_and_the_node_checks_what_it_got() {
    isolate_network();
    let mut c = Cluster::write(&Spec::new(2));
    let text = std::fs::read_to_string(&c.file).unwrap();
    replace_file(
        &c.file,
        &text.replace("config_version = 1", "config_version = 2"),
    );
    let creds = c.dir.join("credentials");
    init_credentials(&c.file, &creds);
    let listen = format!("127.0.0.1:{}", common::free_port());
    let url = format!("https://{listen}");
    let config_of_1 = format!("{url}/v1/nodes/1/config");
    let svc = serve(&c.file, &listen, &creds);
    let key = key_hex(0x11);
    let ca = creds.join("ca.crt");
    let cert = |n: u32| {
        (
            creds.join(format!("node-{n}.crt")),
            creds.join(format!("node-{n}.key")),
        )
    };

    // Waits for the service: node 1's own certificate gets node 1's
    // configuration, signed, with the admin token's digest and not the token.
    let (crt1, key1) = cert(1);
    c.wait("the service answers node 1", |_| {
        curl(&config_of_1, &[&ca, &crt1, &key1]).1 == "200"
    });
    let (_, _, body) = curl(&config_of_1, &[&ca, &crt1, &key1]);
    assert!(body.contains(&key), "node 1 gets its key");
    assert!(!body.contains("test-admin-token"), "{body}");
    assert!(body.contains("admin_token_sha256"), "{body}");

    // No client certificate: no configuration, and no key byte, whether
    // the client checks the service (--cacert) or checks nothing (-k).
    let (ok, _, body) = curl(&config_of_1, &[&ca]);
    assert!(!ok, "answered without a certificate: {body}");
    assert!(!body.contains(&key), "{body}");
    let insecure = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "10", &config_of_1])
        .output()
        .unwrap();
    assert!(!insecure.status.success(), "{insecure:?}");
    assert!(!String::from_utf8_lossy(&insecure.stdout).contains(&key));
    // Node 2's certificate cannot fetch node 1's configuration.
    let (crt2, key2) = cert(2);
    let (_, code, body) = curl(&config_of_1, &[&ca, &crt2, &key2]);
    assert_eq!(code, "403", "{body}");
    assert!(!body.contains(&key), "{body}");
    assert!(body.contains("node 2's"), "{body}");
    // A certificate of another CA, even one named node 1, is refused.
    let other = c.dir.join("other-credentials");
    init_credentials(&c.file, &other);
    let (ok, _, body) = curl(
        &config_of_1,
        &[&ca, &other.join("node-1.crt"), &other.join("node-1.key")],
    );
    assert!(!ok && !body.contains(&key), "{body}");
    // A node given another cluster's credentials refuses the service, and
    // the service refuses it: it never starts.
    let out = Command::new(BIN)
        .args(["node", "--config-url", &url, "--credentials"])
        .arg(&other)
        .arg("--cache-dir")
        .arg(c.dir.join("other-cache"))
        .args(["--node", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!c.dir.join("other-cache/node-1.json").exists());

    // The real path: both nodes fetch over TLS and form.
    let cache = c.dir.join("cache");
    let nodes: Vec<_> = (1..=2)
        .map(|id| {
            node_command(id, &url, &creds, &cache)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let nodes = Reap(nodes);
    c.wait("the nodes fed over TLS form", |c| {
        c.agree_among(&[1, 2], 1, &[1, 2])
    });
    drop(nodes);
    c.children.clear();
    let cached = cache.join("node-1.json");
    let signed = std::fs::read(&cached).unwrap();
    let first = signed.split(|b| *b == b'\n').next().unwrap();
    assert!(
        first.len() == 128 && first.iter().all(u8::is_ascii_hexdigit),
        "a signed copy starts with its signature"
    );

    // The cached copy altered on disk is refused once the service is away.
    drop(svc);
    let text = String::from_utf8(signed.clone()).unwrap();
    let altered = text.replace("\"max_streams\":100", "\"max_streams\":999");
    assert_ne!(altered, text, "the copy holds max_streams: {text}");
    std::fs::write(&cached, altered).unwrap();
    let out = refused(1, &url, &creds, &cache);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("signature does not verify"), "{stderr}");
    std::fs::write(&cached, &signed).unwrap();

    // A signed configuration older than the one the node ran is a replay.
    let text = std::fs::read_to_string(&c.file).unwrap();
    replace_file(
        &c.file,
        &text.replace("config_version = 2", "config_version = 1"),
    );
    let _svc = serve(&c.file, &listen, &creds);
    c.wait("the service is back", |_| {
        curl(&config_of_1, &[&ca, &crt1, &key1]).1 == "200"
    });
    let out = refused(1, &url, &creds, &cache);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("older than version 2"), "{stderr}");
    assert_eq!(std::fs::read(&cached).unwrap(), signed, "the cache is kept");
    let _ = std::fs::remove_dir_all(&c.dir);
}

#[test]
fn plain_http_is_refused_where_other_hosts_reach_it_and_https_needs_credentials() {
    isolate_network();
    let c = Cluster::write(&Spec::new(2));
    // Refused at once: a service that started instead would never end, so
    // it is waited for with a deadline.
    let mut serve = Command::new(BIN)
        .args(["config", "serve"])
        .arg(&c.file)
        .args(["--listen", &format!("0.0.0.0:{}", common::free_port())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > common::LIMIT {
            let _ = serve.kill();
            panic!("config serve listened in plain HTTP on 0.0.0.0");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("--tls-dir"), "{err}");
    let out = Command::new(BIN)
        .args(["node", "--config-url", "https://127.0.0.1:1", "--node", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--credentials"), "{err}");
    let dir: PathBuf = c.dir.join("creds");
    init_credentials(&c.file, &dir);
    let out = Command::new(BIN)
        .args(["node", "--config-url", "http://127.0.0.1:1", "--node", "1"])
        .arg("--credentials")
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not https"), "{err}");
    let _ = std::fs::remove_dir_all(&c.dir);
}

#[test]
fn a_captured_fetch_over_tls_holds_no_key_and_no_admin_token() {
    isolate_network();
    if !common::is_root() {
        return; // capturing needs root; CI runs the suite as root
    }
    let c = Cluster::write(&Spec::new(2));
    let creds = c.dir.join("credentials");
    init_credentials(&c.file, &creds);
    let key_hex = key_hex(0x11);
    let secrets: [&[u8]; 3] = [key_hex.as_bytes(), &[0x11; 32], b"test-admin-token"];
    let fetch = |url: &str, credentials: Option<&Path>, cache: PathBuf| {
        let mut cmd = Command::new(BIN);
        cmd.args(["node", "--config-url", url, "--node", "1", "--cache-dir"])
            .arg(&cache)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(dir) = credentials {
            cmd.arg("--credentials").arg(dir);
        }
        let node = Reap(vec![cmd.spawn().unwrap()]);
        c.wait("node 1 fetched its configuration", |_| {
            cache.join("node-1.json").exists()
        });
        drop(node);
    };

    // Over TLS: nothing secret crosses the wire.
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let svc = serve(&c.file, &listen, &creds);
    let bytes = captured(&c.dir, port, || {
        fetch(&format!("https://{listen}"), Some(&creds), c.dir.join("c1"));
    });
    drop(svc);
    assert!(
        bytes.len() > 2000,
        "the capture holds the fetch: {} bytes",
        bytes.len()
    );
    for secret in secrets {
        assert!(
            !contains(&bytes, secret),
            "{:?} was captured",
            String::from_utf8_lossy(secret)
        );
    }

    // The same fetch over plain HTTP (loopback only): the capture sees the
    // key, so the capture above would have seen it too.
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let plain = Command::new(BIN)
        .args(["config", "serve"])
        .arg(&c.file)
        .args(["--listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let plain = Reap(vec![plain]);
    let bytes = captured(&c.dir, port, || {
        fetch(&format!("http://{listen}"), None, c.dir.join("c2"));
    });
    drop(plain);
    assert!(
        contains(&bytes, key_hex.as_bytes()),
        "plain HTTP shows the key"
    );
    assert!(
        !contains(&bytes, b"test-admin-token"),
        "never the admin token"
    );
    let _ = std::fs::remove_dir_all(&c.dir);
}

#[test]
fn a_node_refuses_a_service_that_shows_another_certificate_of_the_cluster() {
    // A compromised node holds a certificate of the cluster's CA valid for
    // its own address; posing as the configuration service with it, it
    // must get no node to run what it serves.
    isolate_network();
    let c = Cluster::write(&Spec::new(2));
    let creds = c.dir.join("credentials");
    init_credentials(&c.file, &creds);
    let impostor = c.dir.join("impostor");
    std::fs::create_dir_all(&impostor).unwrap();
    for f in ["ca.crt", "config-signing.key"] {
        std::fs::copy(creds.join(f), impostor.join(f)).unwrap();
    }
    std::fs::copy(creds.join("node-2.crt"), impostor.join("service.crt")).unwrap();
    std::fs::copy(creds.join("node-2.key"), impostor.join("service.key")).unwrap();
    let listen = format!("127.0.0.1:{}", common::free_port());
    let _svc = serve(&c.file, &listen, &impostor);
    let cache = c.dir.join("cache");
    let out = refused(1, &format!("https://{listen}"), &creds, &cache);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not the configuration service"), "{stderr}");
    assert!(
        !cache.join("node-1.json").exists(),
        "nothing was taken from it"
    );
    let _ = std::fs::remove_dir_all(&c.dir);
}
