//! A local cluster on 127.0.0.1, as `ringcast up` and the tests run it: the
//! cluster file, a fresh key and admin token, and optionally shared disks.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use ringcast_proto::config::MAX_NODES;
use ringcast_proto::Timing;

use super::error::ConfigFileError;
use super::local_file::{
    own_and_previous_disks, LocalBus, LocalFile, LocalServices, NodeTable, RootTable,
};
use super::secrets::write_fresh_secrets;

/// The comment a local cluster's file starts with.
const HEADER: &str = "# A local ringcast cluster on 127.0.0.1, written by ringcast.\n\
                      # ttl = 0: multicast stays on this host.\n";

/// The ports of a local cluster: the bus, then each node's ring and HTTP port.
struct LocalPorts {
    bus: u16,
    ring: Vec<u16>,
    http: Vec<u16>,
    /// Claim 13: the port of every service address.
    service: u16,
}

/// Writes `cluster.toml`, `cluster.key` (a fresh random key) and `admin.token`
/// into `dir` for `nodes` nodes on 127.0.0.1, and returns the cluster file's path.
///
/// The bus is multicast on a random group in 239.255.0.0/16 with interface
/// 127.0.0.1 and TTL 0, so no traffic leaves the host; timing is 20 ms
/// (`Timing::lan()`). With `base_port` the bus uses `base_port`, node `i`
/// (from 1) rings on `base_port + i` and serves HTTP on `base_port + nodes + i`,
/// and every service address (claim 13) is on port `base_port + 2 nodes + 1`.
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
    let mut block = [0u8; 2];
    getrandom::getrandom(&mut block).map_err(ConfigFileError::Random)?;
    let services = LocalServices::new(block, ports.service);
    let mut file = local_cluster_file(group, &ports, services);
    if disks {
        add_shared_disks(&mut file, dir)?;
    }
    let path = dir.join("cluster.toml");
    file.write(&path, HEADER)?;
    Ok(path)
}

/// Adds the shared disks of a local cluster to each node (disk k is node
/// k's own and its next node's), and creates their library folders.
fn add_shared_disks(file: &mut LocalFile, dir: &Path) -> Result<(), ConfigFileError> {
    let nodes = file.nodes.len() as u32;
    for (node, table) in (1..).zip(file.nodes.iter_mut()) {
        let previous = if node == 1 { nodes } else { node - 1 };
        table.disks = own_and_previous_disks(dir, node, previous)?;
    }
    Ok(())
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
        service: port(nodes.saturating_mul(2).saturating_add(1))?,
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
    while http.len() <= nodes as usize {
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
    let service = http.pop().expect("one port more than nodes");
    Ok(LocalPorts {
        bus: ports[0],
        ring: ports[1..].to_vec(),
        http,
        service,
    })
}

/// The tables of a local cluster: node `i` (from 1) rings and serves HTTP
/// on the `i`th of `ports`, every node runs `Timing::lan()`.
fn local_cluster_file(group: Ipv4Addr, ports: &LocalPorts, services: LocalServices) -> LocalFile {
    let nodes = (1..).zip(ports.ring.iter().zip(&ports.http));
    let count = ports.ring.len() as u32;
    let mut cluster = RootTable::new(
        1,
        "local",
        LocalBus::new(group, ports.bus),
        (1..=count).collect(),
    );
    cluster.address = Some(services.cluster(count));
    LocalFile {
        cluster,
        timing: Timing::lan(),
        subclusters: Vec::new(),
        nodes: nodes
            .map(|(id, (&ring, &http))| {
                let mut node = NodeTable::new(id, ring, http, &[]);
                node.service = Some(services.node(id));
                node
            })
            .collect(),
    }
}
