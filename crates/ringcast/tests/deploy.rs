//! `docs/deploy.md` followed on three hosts: three network namespaces on a
//! bridge, each with the Debian package installed into a root of its own,
//! the guide's cluster file (multicast bus, service addresses and a cluster
//! address on the LAN), its secrets from `ringcast config init`, and each
//! node started from the installed unit's command line, READY by
//! sd_notify. A player on a fourth host downloads through the cluster
//! address; then the rolling upgrade of the guide (drain, restart, undrain,
//! lowest priority first, the supervisor last), with a download after every
//! step, each byte-exact, and every node up at the end. Needs root.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::lan::Lan;
use common::notify::Manager;
use common::package::{install, run, unit_command, Scratch};
use common::{is_root, LIMIT};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The LAN: 10.253.0.0/24; hosts at .1 to .3, the player at .9.
const LAN: &str = "10.253.0";

fn lan() -> Lan {
    let hosts: Vec<(String, String)> = [("h1", 1), ("h2", 2), ("h3", 3), ("cl", 9)]
        .iter()
        .map(|(h, o)| (h.to_string(), format!("{LAN}.{o}/24")))
        .collect();
    let refs: Vec<(&str, &str)> = hosts
        .iter()
        .map(|(h, a)| (h.as_str(), a.as_str()))
        .collect();
    Lan::new("dp", &refs)
}

/// The guide's cluster file, on this LAN: node `h` on host `h`, the movie's
/// disk (id 1) replicated on every host under `disks/h<h>`.
fn cluster_file(disks: &Path) -> String {
    let mut toml = format!(
        "[cluster]\nid = 1\nname = \"video\"\nconfig_version = 1\nbus = \"239.255.42.1:7400\"\n\
         ttl = 1\nkey_file = \"cluster.key\"\nadmin_token_file = \"admin.token\"\n\
         priority = [1, 2, 3]\naddress = \"{LAN}.100:80\"\n\n"
    );
    for h in 1..=3 {
        let mount = disks.join(format!("h{h}"));
        toml.push_str(&format!(
            "[[node]]\nid = {h}\nring = \"{LAN}.{h}:7401\"\nhttp = \"{LAN}.{h}:8500\"\n\
             service = \"{LAN}.10{h}:80\"\nmax_streams = 500\nmax_bytes_per_s = 1250000000\n\n\
             [[node.disk]]\nid = 1\nmount = \"{m}\"\nprobe = \"{m}/.ringcast-probe-n{h}\"\n\n",
            m = mount.display()
        ));
    }
    toml
}

/// One host: its installed root, its node process and its service manager.
struct Host {
    name: String,
    root: Scratch,
    node: Option<Child>,
    manager: Manager,
}

impl Host {
    fn bin(&self) -> PathBuf {
        self.root.join("usr/bin/ringcast")
    }

    fn file(&self) -> PathBuf {
        self.root.join("etc/ringcast/cluster.toml")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("node.log")).unwrap_or_default()
    }

    /// Starts the node as systemd would (the unit's command line, its
    /// defaults file) and waits for READY.
    fn start(&mut self, net: &Lan) {
        let words = unit_command(&self.root);
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.root.join("node.log"))
            .unwrap();
        let child = net
            .exec(&self.name, &words[0])
            .args(&words[1..])
            .env("NOTIFY_SOCKET", self.root.join("notify.sock"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the installed node");
        self.node = Some(child);
        let ready = self.manager.expect("READY=1", || self.log());
        eprintln!(
            "{}: {}",
            self.name,
            ready
                .lines()
                .find(|l| l.starts_with("STATUS="))
                .unwrap_or("")
        );
    }

    /// `systemctl stop`: SIGTERM, STOPPING, a clean exit.
    fn stop(&mut self) {
        let mut child = self.node.take().expect("a running node");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.manager.expect("STOPPING=1", || self.log());
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "{} did not stop", self.name);
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "{} exited {status}\n{}",
            self.name,
            self.log()
        );
    }

    /// `ringcast ARGS --config <this host's cluster file>` in this host's namespace.
    fn ringcast(&self, net: &Lan, args: &[&str]) -> String {
        let out = net
            .exec(&self.name, self.bin())
            .args(args)
            .arg("--config")
            .arg(self.file())
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{}: ringcast {args:?}: {said}\n{}",
            self.name,
            self.log()
        );
        said
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.node.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The cluster as host `h`'s node sees it: supervisor and the ids up.
fn seen(net: &Lan, host: &Host, h: u32) -> Option<(u64, Vec<u64>)> {
    let out = net
        .exec(&host.name, host.bin())
        .args([
            "status",
            "--json",
            "--no-follow",
            "--url",
            &format!("http://{LAN}.{h}:8500"),
        ])
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let up = v["nodes"]
        .as_array()?
        .iter()
        .filter(|n| n["status"] == "up")
        .filter_map(|n| n["id"].as_u64())
        .collect();
    Some((v["supervisor"].as_u64()?, up))
}

fn wait_cluster(net: &Lan, hosts: &[Host], sup: u64, what: &str) {
    let start = Instant::now();
    while !(1..=3).all(|h| seen(net, &hosts[h as usize - 1], h) == Some((sup, vec![1, 2, 3]))) {
        assert!(
            start.elapsed() < LIMIT,
            "{what}: not every node follows n{sup} with all three up\n{}",
            hosts
                .iter()
                .map(|h| format!("--- {}\n{}", h.name, h.log()))
                .collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The player on its own host downloads the movie through the cluster
/// address; it must be the movie, byte for byte.
fn download(net: &Lan, dir: &Path, movie: &[u8], step: &str) {
    let out = dir.join("download.mp4");
    let _ = std::fs::remove_file(&out);
    let got = net
        .exec("cl", "curl")
        .args(["-sS", "-L", "--fail", "--max-time", "20", "-o"])
        .arg(&out)
        .arg(format!("http://{LAN}.100/v1/play/movie.mp4"))
        .output()
        .expect("curl is installed by scripts/install-test-deps");
    assert!(
        got.status.success(),
        "{step}: curl failed: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes.len(), movie.len(), "{step}: length");
    assert_eq!(
        Sha256::digest(&bytes),
        Sha256::digest(movie),
        "{step}: SHA-256"
    );
}

#[test]
fn the_deployment_guide_runs_three_hosts_through_a_rolling_upgrade() {
    if !is_root() {
        eprintln!(
            "skipped: hosts in network namespaces and service addresses on their LAN need root"
        );
        return;
    }
    let net = lan();
    let shared = common::package::scratch("deploy");
    // One replica of the movie per host, same bytes and time (the guide's
    // "replicas kept in step").
    let movie = common::random_bytes(3 << 20, 53);
    let mtime = SystemTime::now();
    for h in 1..=3 {
        let lib = shared.join(format!("disks/h{h}/library"));
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("movie.part"), &movie).unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(lib.join("movie.part"))
            .unwrap();
        f.set_modified(mtime).unwrap();
        std::fs::rename(lib.join("movie.part"), lib.join("movie.mp4")).unwrap();
    }

    // 1. The package on every host.
    let mut hosts: Vec<Host> = (1..=3)
        .map(|h| {
            let root = install(&format!("deploy-h{h}"));
            let manager = Manager::bind(&root.join("notify.sock"));
            Host {
                name: format!("h{h}"),
                root,
                node: None,
                manager,
            }
        })
        .collect();
    // 2. One cluster file, fresh secrets, checked, copied to every host.
    let secrets = shared.join("secrets");
    run(Command::new(hosts[0].bin())
        .args(["config", "init", "--dir"])
        .arg(&secrets));
    let text = cluster_file(&shared.join("disks"));
    for host in &hosts {
        let etc = host.root.join("etc/ringcast");
        std::fs::write(etc.join("cluster.toml"), &text).unwrap();
        for f in ["cluster.key", "admin.token"] {
            std::fs::copy(secrets.join(f), etc.join(f)).unwrap();
        }
    }
    let checked = run(Command::new(hosts[0].bin())
        .args(["config", "check"])
        .arg(hosts[0].file()));
    assert!(checked.contains("ok (3 nodes"), "{checked}");
    // 3. Each host's node id, then the node.
    for (i, host) in hosts.iter_mut().enumerate() {
        std::fs::write(
            host.root.join("etc/default/ringcast"),
            format!("RINGCAST_NODE={}\n", i + 1),
        )
        .unwrap();
        host.start(&net);
    }
    wait_cluster(&net, &hosts, 1, "after the start");
    download(&net, &shared, &movie, "after the start");

    // 5. The rolling upgrade: lowest priority first, the supervisor last.
    for h in [3u32, 2, 1] {
        let host = &mut hosts[h as usize - 1];
        let said = host.ringcast(&net, &["drain", &h.to_string(), "--wait-seconds", "30"]);
        assert!(said.contains(&format!("node {h}: empty")), "{said}");
        download(&net, &shared, &movie, &format!("n{h} drained"));
        host.stop();
        download(&net, &shared, &movie, &format!("n{h} stopped"));
        host.start(&net);
        host.ringcast(&net, &["undrain", &h.to_string()]);
        wait_cluster(&net, &hosts, 1, &format!("n{h} upgraded"));
        download(&net, &shared, &movie, &format!("n{h} upgraded"));
    }
}
