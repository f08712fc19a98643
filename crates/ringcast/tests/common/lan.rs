//! Hosts in network namespaces on one bridge, as a LAN for tests that run
//! as root: each host a namespace with loopback and an `eth0` on the
//! bridge, which lives in a namespace of its own. Everything is removed
//! when the value is dropped; nothing is reachable from outside.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `ip args`, panicking with its error output when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The bridge and its hosts.
pub struct Lan {
    /// Unique to this test process and value: every name starts with it.
    pub prefix: String,
    made: Vec<String>,
}

impl Lan {
    /// A bridge (multicast to every port, no snooping) with `hosts`, each
    /// a name and an address with its prefix length (`10.254.0.1/24`).
    pub fn new(tag: &str, hosts: &[(&str, &str)]) -> Lan {
        let prefix = format!(
            "rc{tag}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut lan = Lan {
            prefix,
            made: Vec::new(),
        };
        let br = lan.ns("br");
        lan.add_ns(&br);
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
        for (host, addr) in hosts {
            lan.add_host(host, addr);
        }
        lan
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    fn add_ns(&mut self, ns: &str) {
        ip(&["netns", "add", ns]);
        self.made.push(ns.to_string());
    }

    fn add_host(&mut self, host: &str, addr: &str) {
        let (ns, br) = (self.ns(host), self.ns("br"));
        self.add_ns(&ns);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let port = format!("p{host}");
        ip(&[
            "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &br,
        ]);
        ip(&["-n", &ns, "addr", "add", addr, "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &br, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &br, "link", "set", &port, "up"]);
    }

    /// Cuts (or restores) `host`'s link to the bridge.
    pub fn link(&self, host: &str, up: bool) {
        ip(&[
            "-n",
            &self.ns("br"),
            "link",
            "set",
            &format!("p{host}"),
            if up { "up" } else { "down" },
        ]);
    }

    /// `program` run in `host`'s namespace (`ip netns exec` execs it, so
    /// the child is the program itself), with no proxy from the
    /// environment.
    pub fn exec(&self, host: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)]).arg(program);
        for proxy in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
            c.env_remove(proxy);
        }
        c
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
