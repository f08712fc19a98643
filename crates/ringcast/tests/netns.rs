//! Three hosts in network namespaces joined by a bridge: multicast between
//! them, a partition by link down that yields two supervisors, and a heal
//! that yields one again. Needs root; skipped (and says so) otherwise.
//!
//! Everything lives in namespaces the test creates and removes: the hosts
//! `rc<pid>h1..3` and the bridge's own namespace `rc<pid>br`, with addresses
//! in 10.254.0.0/24 that exist only inside them.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

struct Net {
    prefix: String,
    hosts: u32,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    fn new(hosts: u32) -> Net {
        let prefix = format!("rc{}", std::process::id());
        let net = Net { prefix, hosts };
        let br = net.bridge_ns();
        ip(&["netns", "add", &br]);
        ip(&[
            "-n",
            &br,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for h in 1..=hosts {
            let ns = net.host(h);
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let (inner, outer) = (format!("h{h}eth"), format!("h{h}br"));
            ip(&[
                "-n", &ns, "link", "add", &inner, "type", "veth", "peer", "name", &outer, "netns",
                &br,
            ]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.254.0.{h}/24"),
                "dev",
                &inner,
            ]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
            ip(&["-n", &br, "link", "set", &outer, "master", "br0"]);
            ip(&["-n", &br, "link", "set", &outer, "up"]);
        }
        net
    }

    fn host(&self, h: u32) -> String {
        format!("{}h{h}", self.prefix)
    }

    fn bridge_ns(&self) -> String {
        format!("{}br", self.prefix)
    }

    /// Cuts (or restores) host `h`'s link to the bridge.
    fn link(&self, h: u32, up: bool) {
        ip(&[
            "-n",
            &self.bridge_ns(),
            "link",
            "set",
            &format!("h{h}br"),
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in 1..=self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.host(h)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.bridge_ns()])
            .status();
    }
}

/// The supervisor node `h` follows, in its own words.
fn own_supervisor(net: &Net, h: u32) -> Option<u64> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.host(h),
            common::BIN,
            "status",
            "--json",
            "--no-follow",
            "--url",
        ])
        .arg(format!("http://10.254.0.{h}:8500"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["supervisor"].as_u64()
}

fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < common::LIMIT,
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{what}: after {:?}", start.elapsed());
}

#[test]
fn three_hosts_on_a_bridge_split_into_two_supervisors_and_heal_into_one() {
    if !common::is_root() {
        eprintln!("skipped: creating network namespaces needs root");
        return;
    }
    let net = Net::new(3);
    let dir = std::env::temp_dir().join(format!("ringcast-netns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cluster.key"), common::key_hex(0x33)).unwrap();
    let mut toml = String::from(
        "[cluster]\nid = 7\nname = \"bridge\"\nconfig_version = 1\nbus = \"239.255.99.1:7400\"\n\
         transport = \"multicast\"\nttl = 1\nloopback = true\nkey_file = \"cluster.key\"\n\
         priority = [1, 2, 3]\n\n",
    );
    for h in 1..=3 {
        toml.push_str(&format!(
            "[[node]]\nid = {h}\nring = \"10.254.0.{h}:7501\"\nhttp = \"10.254.0.{h}:8500\"\n\
             interface = \"10.254.0.{h}\"\nmax_streams = 10\nmax_bytes_per_s = 1000000\n\n"
        ));
    }
    let file = dir.join("cluster.toml");
    std::fs::write(&file, toml).unwrap();
    let mut children: Vec<std::process::Child> = (1..=3)
        .map(|h| {
            let log = std::fs::File::create(dir.join(format!("node-{h}.log"))).unwrap();
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &net.host(h),
                    common::BIN,
                    "node",
                    "--config",
                ])
                .arg(&file)
                .args(["--node", &h.to_string()])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap()
        })
        .collect();
    let all_follow =
        |sup: u64, hosts: &[u32]| hosts.iter().all(|h| own_supervisor(&net, *h) == Some(sup));
    wait("the three hosts form one cluster under n1", || {
        all_follow(1, &[1, 2, 3])
    });
    net.link(3, false);
    wait("n3 is cut off and supervises itself", || {
        all_follow(1, &[1, 2]) && all_follow(3, &[3])
    });
    net.link(3, true);
    wait("the heal leaves n1 as the only supervisor", || {
        all_follow(1, &[1, 2, 3])
    });
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
