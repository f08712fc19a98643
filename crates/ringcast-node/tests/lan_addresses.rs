//! The LAN address plane for real: a service address held by a process on
//! one host moves to another host's process when the first is killed, and a
//! client on the same LAN that was already trying to connect reaches the new
//! holder, because the gratuitous ARP updated its neighbour cache and the
//! dead holder's host dropped its first SYN instead of refusing it.
//!
//! Three hosts in network namespaces the test creates and removes, joined by
//! a bridge in a namespace of its own: holders `…a` and `…b`, the client
//! `…c`, the bridge `…br`, with addresses in 10.77.0.0/24 that exist only
//! inside them. Each holder is this test binary again, run in its host's
//! namespace with `RINGCAST_LAN_TEST_HELPER` set: it holds the service
//! address with [`Lan`] and answers every connection to it with one letter.
//! Needs root; skipped (and says so) otherwise.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use ringcast_node::host::addresses::lan::Lan;
use ringcast_node::host::addresses::AddressPlane;

/// Set in a holder: its host's own LAN address and the letter it answers.
const HELPER: &str = "RINGCAST_LAN_TEST_HELPER";
/// The service address that moves.
const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const PORT: u16 = 8080;
/// This test's name, which a holder runs alone.
const TEST: &str = "a_service_address_moves_to_the_next_holder_when_its_holder_is_killed";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `ip` and returns what it printed; panics when it fails.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The three hosts and the bridge, removed on drop.
struct Net {
    prefix: String,
}

/// The hosts: name suffix and the last byte of its LAN address.
const HOSTS: [(&str, u8); 3] = [("a", 1), ("b", 2), ("c", 3)];

impl Net {
    fn new() -> Net {
        let prefix = format!(
            "rcl{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // Made before anything is created, so a failure half-way still
        // removes what was.
        let net = Net { prefix };
        let br = net.ns("br");
        ip(&["netns", "add", &br]);
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for (h, byte) in HOSTS {
            let ns = net.ns(h);
            let port = format!("v{h}");
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &br,
            ]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.77.0.{byte}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &br, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &br, "link", "set", &port, "up"]);
        }
        net
    }

    fn ns(&self, h: &str) -> String {
        format!("{}{h}", self.prefix)
    }

    /// The MAC of host `h`'s LAN interface.
    fn mac(&self, h: &str) -> String {
        let link = ip(&["-n", &self.ns(h), "-o", "link", "show", "eth0"]);
        link.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC in {link:?}"))
            .to_owned()
    }

    /// What the client's neighbour cache says of the service address.
    fn client_neighbour(&self) -> String {
        ip(&[
            "-n",
            &self.ns("c"),
            "neigh",
            "show",
            &SERVICE.to_string(),
            "dev",
            "eth0",
        ])
        .trim()
        .to_owned()
    }

    /// Starts a holder on host `h` (address byte `byte`) answering
    /// `answer`; returns once it holds the address and listens.
    fn holder(&self, h: &str, byte: u8, answer: &str) -> Holder {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(h)])
            .arg(exe)
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(HELPER, format!("10.77.0.{byte},{answer}"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a holder");
        let stdout = child.stdout.take().unwrap();
        let holder = Holder { child };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("holder ready") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("the holder on host {h} did not get ready"));
        eprintln!("host {h}: {line}");
        holder
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in ["a", "b", "c", "br"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(h)])
                .status();
        }
    }
}

/// A holder process, killed on drop.
struct Holder {
    child: Child,
}

impl Holder {
    /// Kills it with SIGKILL, as a crash would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `f` on a thread of its own in namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        setns(file, CloneFlags::CLONE_NEWNET).expect("enter the namespace");
        f()
    })
    .join()
    .unwrap()
}

/// Connects to the service address (giving up after `patience`) and reads
/// the holder's answer.
fn fetch(patience: Duration) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from((SERVICE, PORT)), patience)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Waits up to `limit` until `done` holds; how long it took.
fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// A holder's life: hold the service address, answer every connection.
fn run_holder(spec: &str) -> ! {
    let (lan_ip, answer) = spec.split_once(',').expect("LAN address,answer");
    let lan = Lan::new(lan_ip.parse().unwrap()).expect("find the LAN interface");
    lan.acquire(IpAddr::V4(SERVICE))
        .expect("acquire the service address");
    // Idempotent: a second acquire is no error.
    lan.acquire(IpAddr::V4(SERVICE))
        .expect("acquire the service address again");
    let listener = TcpListener::bind((SERVICE, PORT)).expect("listen on the service address");
    println!("holder ready: {lan:?}");
    std::io::stdout().flush().unwrap();
    for mut stream in listener.incoming().flatten() {
        let _ = stream.write_all(answer.as_bytes());
    }
    unreachable!("incoming() never ends")
}

#[test]
fn a_service_address_moves_to_the_next_holder_when_its_holder_is_killed() {
    if let Ok(spec) = std::env::var(HELPER) {
        run_holder(&spec);
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: creating network namespaces and TUN devices needs root");
        return;
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        eprintln!("skipped: this machine has no /dev/net/tun");
        return;
    }
    let start = Instant::now();
    // Dropped after the holders (declared before them), even on a panic.
    let net = Net::new();
    let (mac_a, mac_b) = (net.mac("a"), net.mac("b"));
    let client = net.ns("c");

    // Host a holds the address: the client reaches it, and its neighbour
    // cache says where the address is.
    let mut a = net.holder("a", 1, "A");
    let c = client.clone();
    let answer = in_ns(&c, || fetch(Duration::from_secs(3)));
    assert_eq!(answer.expect("connect to the service address on a"), "A");
    let before = net.client_neighbour();
    assert!(
        before.contains(&mac_a),
        "client's neighbour entry: {before}"
    );

    // Killed: the kernel deletes the device, and the address with it.
    a.kill();
    let gone = wait(
        "the address is gone from host a",
        Duration::from_secs(2),
        || {
            let addrs = ip(&["-n", &net.ns("a"), "-o", "addr", "show"]);
            let links = ip(&["-n", &net.ns("a"), "-o", "link", "show"]);
            !addrs.contains(&SERVICE.to_string()) && !links.contains("rcsvc")
        },
    );
    eprintln!("the address and the device were gone from host a {gone:?} after the kill");

    // A player already trying again: its first SYN still goes to a's MAC,
    // which drops it (no RST), so it retransmits.
    let c = client.clone();
    let retry = std::thread::spawn(move || {
        let t = Instant::now();
        let answer = in_ns(&c, || fetch(Duration::from_secs(6)));
        (answer, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));

    // Host b takes over; its gratuitous ARP moves the client's entry.
    let _b = net.holder("b", 2, "B");
    let moved = wait(
        "the client's neighbour entry names b's MAC",
        Duration::from_secs(2),
        || net.client_neighbour().contains(&mac_b),
    );
    eprintln!(
        "the client's neighbour entry moved to b {moved:?} after b was ready: {}",
        net.client_neighbour()
    );
    let (answer, took) = retry.join().unwrap();
    assert_eq!(
        answer.expect("the connection attempt started before b held the address reaches b"),
        "B"
    );
    eprintln!(
        "a connection attempt started while no one held the address reached b after {took:?}"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let c = client.clone();
    let answer = in_ns(&c, || fetch(Duration::from_secs(2)));
    assert_eq!(answer.expect("a new connection reaches b"), "B");
    eprintln!("whole test: {:?}", start.elapsed());
}

#[test]
fn acquiring_and_releasing_are_idempotent_and_the_device_goes_with_the_plane() {
    if !nix::unistd::geteuid().is_root() || !std::path::Path::new("/dev/net/tun").exists() {
        eprintln!("skipped: needs root and /dev/net/tun");
        return;
    }
    let net = Net::new();
    let ns = net.ns("c");
    let addrs = {
        let ns = ns.clone();
        move || ip(&["-n", &ns, "-o", "addr", "show"])
    };
    let other: IpAddr = "10.77.0.200".parse().unwrap();
    let check = addrs.clone();
    // In the client's namespace, where the plane's sockets and device are
    // made by the thread that makes them.
    in_ns(&ns, move || {
        let lan = Lan::new(Ipv4Addr::new(10, 77, 0, 3)).unwrap();
        assert_eq!(lan.interface(), "eth0");
        assert_eq!(lan.device(), None);
        lan.release(other).unwrap();
        lan.acquire(other).unwrap();
        lan.acquire(other).unwrap();
        let device = lan.device().expect("a device once an address is held");
        let held = check();
        assert!(
            held.lines()
                .any(|l| l.contains(&device) && l.contains("10.77.0.200/32")),
            "{held}"
        );
        lan.release(other).unwrap();
        lan.release(other).unwrap();
        assert!(!check().contains("10.77.0.200"), "{}", check());
        lan.acquire(other).unwrap();
        assert!(check().contains("10.77.0.200/32"));
        // Dropping the plane closes the device's descriptor.
        drop(lan);
    });
    // The device goes with the plane (the kernel unregisters it as the
    // last descriptor closes).
    let gone = wait(
        "the device is gone with the plane",
        Duration::from_secs(1),
        || !ip(&["-n", &ns, "-o", "link", "show"]).contains("rcsvc"),
    );
    eprintln!("the device was gone {gone:?} after the plane was dropped");
    assert!(!addrs().contains("10.77.0.200"));
}
