//! A local cluster on 127.0.0.1, as `ringcast up` and the tests run it: the
//! cluster file, a fresh key and admin token, and optionally shared disks.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringcast_proto::config::MAX_NODES;
use ringcast_proto::Timing;

use super::error::ConfigFileError;
use super::schema::DEFAULT_MTU;
use super::secrets::{write_fresh_secrets, write_private};
use crate::settings::LIBRARY_DIR;

/// The ports of a local cluster: the bus, then each node's ring and HTTP port.
struct LocalPorts {
    bus: u16,
    ring: Vec<u16>,
    http: Vec<u16>,
}

/// Writes `cluster.toml`, `cluster.key` (a fresh random key) and `admin.token`
/// into `dir` for `nodes` nodes on 127.0.0.1, and returns the cluster file's path.
///
/// The bus is multicast on a random group in 239.255.0.0/16 with interface
/// 127.0.0.1 and TTL 0, so no traffic leaves the host; timing is 20 ms
/// (`Timing::lan()`). With `base_port` the bus uses `base_port`, node `i`
/// (from 1) rings on `base_port + i` and serves HTTP on `base_port + nodes + i`.
/// Without it every port is one the system reports free right now (another
/// program may still take it before the nodes start). Disk lists are empty.
pub fn local_cluster(
    dir: &Path,
    nodes: u32,
    base_port: Option<u16>,
) -> Result<PathBuf, ConfigFileError> {
    local_cluster_with_disks(dir, nodes, base_port, false)
}

/// [`local_cluster`], and with `disks` one disk per node under `dir/disks/d<k>`,
/// each shared by two nodes (disk k by nodes k and k+1, the last with node 1),
/// each node probing its own failure detection location on it (claim 3).
pub fn local_cluster_with_disks(
    dir: &Path,
    nodes: u32,
    base_port: Option<u16>,
    disks: bool,
) -> Result<PathBuf, ConfigFileError> {
    if nodes == 0 || nodes as usize > MAX_NODES {
        return Err(ConfigFileError::NodeCount(nodes));
    }
    let ports = match base_port {
        Some(base) => fixed_ports(base, nodes)?,
        None => free_ports(nodes).map_err(ConfigFileError::FreePort)?,
    };
    let mut group = [0u8; 2];
    getrandom::getrandom(&mut group).map_err(ConfigFileError::Random)?;
    let group = Ipv4Addr::new(239, 255, group[0].clamp(1, 254), group[1].clamp(1, 254));
    write_fresh_secrets(dir)?;
    let path = dir.join("cluster.toml");
    let mut text = local_cluster_toml(group, &ports);
    if disks {
        text = with_shared_disks(&text, dir, nodes)?;
    }
    write_private(&path, &text)?;
    Ok(path)
}

/// Adds the shared disks of a local cluster to each `[[node]]` table, and
/// creates their mount points and library folders.
fn with_shared_disks(text: &str, dir: &Path, nodes: u32) -> Result<String, ConfigFileError> {
    let mount = |k: u32| dir.join("disks").join(format!("d{k}"));
    for k in 1..=nodes {
        let lib = mount(k).join(LIBRARY_DIR);
        fs::create_dir_all(&lib).map_err(|source| ConfigFileError::Write { path: lib, source })?;
    }
    let mut out = String::new();
    let mut blocks = text.split("\n[[node]]\n");
    out.push_str(blocks.next().unwrap_or_default());
    for (i, block) in blocks.enumerate() {
        let node = i as u32 + 1;
        out.push_str("\n[[node]]\n");
        out.push_str(block);
        let previous = if node == 1 { nodes } else { node - 1 };
        let mut reached = vec![node];
        if previous != node {
            reached.push(previous);
        }
        for k in reached {
            let m = mount(k);
            out.push_str(&format!(
                "\n[[node.disk]]\nid = {k}\nmount = \"{}\"\nprobe = \"{}\"\n",
                m.display(),
                m.join(format!(".ringcast-probe-n{node}")).display()
            ));
        }
    }
    Ok(out)
}

fn fixed_ports(base: u16, nodes: u32) -> Result<LocalPorts, ConfigFileError> {
    let port = |offset: u32| {
        u16::try_from(u32::from(base) + offset)
            .map_err(|_| ConfigFileError::PortRange { base, nodes })
    };
    if base == 0 {
        return Err(ConfigFileError::PortRange { base, nodes });
    }
    Ok(LocalPorts {
        bus: base,
        ring: (1..=nodes).map(port).collect::<Result<_, _>>()?,
        http: (1..=nodes)
            .map(|i| port(nodes.saturating_add(i)))
            .collect::<Result<_, _>>()?,
    })
}

/// Ports free on 127.0.0.1, all distinct: every socket stays open until all are chosen.
fn free_ports(nodes: u32) -> io::Result<LocalPorts> {
    let localhost = (Ipv4Addr::LOCALHOST, 0);
    let mut udp = Vec::new();
    let mut taken = BTreeSet::new();
    for _ in 0..=nodes {
        let socket = UdpSocket::bind(localhost)?;
        taken.insert(socket.local_addr()?.port());
        udp.push(socket);
    }
    let mut tcp = Vec::new();
    let mut http = Vec::new();
    while http.len() < nodes as usize {
        let listener = TcpListener::bind(localhost)?;
        let port = listener.local_addr()?.port();
        if taken.insert(port) {
            http.push(port);
        }
        tcp.push(listener);
    }
    let ports: Vec<u16> = udp
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<io::Result<_>>()?;
    Ok(LocalPorts {
        bus: ports[0],
        ring: ports[1..].to_vec(),
        http,
    })
}

/// Streaming capacity of a local cluster's node, bytes per second: loopback is
/// memory, not a network card, so the limit is the machine's, not a NIC's.
pub(super) const LOCAL_BYTES_PER_S: u64 = 40_000_000_000;

fn local_cluster_toml(group: Ipv4Addr, ports: &LocalPorts) -> String {
    let t = Timing::lan();
    let ms = |d: Duration| d.as_millis();
    let priority: Vec<String> = (1..=ports.ring.len()).map(|i| i.to_string()).collect();
    let mut text = format!(
        "# A local ringcast cluster on 127.0.0.1, written by ringcast.\n\
         [cluster]\n\
         id = 1\n\
         name = \"local\"\n\
         config_version = 1\n\
         transport = \"multicast\"\n\
         bus = \"{group}:{bus}\"\n\
         interface = \"127.0.0.1\"\n\
         ttl = 0                       # multicast stays on this host\n\
         loopback = true\n\
         key_file = \"cluster.key\"\n\
         admin_token_file = \"admin.token\"\n\
         priority = [{priority}]\n\
         mtu = {DEFAULT_MTU}\n\
         \n\
         [timing]\n\
         status_interval_ms = {status}\n\
         notify_interval_ms = {notify}\n\
         notification_time_ms = {notification}\n\
         miss_limit = {miss}\n\
         takeover_step_ms = {step}\n\
         preempt = {preempt}\n\
         preempt_delay_ms = {delay}\n\
         join_retry_ms = {join}\n\
         leave_retry_ms = {leave}\n",
        bus = ports.bus,
        priority = priority.join(", "),
        status = ms(t.status_interval),
        notify = ms(t.notify_interval),
        notification = ms(t.notification_time),
        miss = t.miss_limit,
        step = ms(t.takeover_step),
        preempt = t.preempt,
        delay = ms(t.preempt_delay),
        join = ms(t.join_retry),
        leave = ms(t.leave_retry),
    );
    for (i, (ring, http)) in ports.ring.iter().zip(&ports.http).enumerate() {
        text.push_str(&format!(
            "\n[[node]]\nid = {}\nring = \"127.0.0.1:{ring}\"\nhttp = \"127.0.0.1:{http}\"\nmax_streams = 100\nmax_bytes_per_s = {LOCAL_BYTES_PER_S}\n",
            i + 1
        ));
    }
    text
}
