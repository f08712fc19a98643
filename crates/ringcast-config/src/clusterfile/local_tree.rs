//! Claim 5: a local tree of clusters on 127.0.0.1 (`ringcast up --shape`),
//! and the shapes it takes (`3x3`).

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use ringcast_proto::config::MAX_NODES;
use ringcast_proto::{Timing, LEVEL_SLOWDOWN, PARENT_MISS_LIMIT};

use super::error::{ConfigFileError, ShapeError};
use super::local_file::{
    own_and_previous_disks, LocalBus, LocalFile, LocalServices, NodeTable, RootTable,
    SubclusterTable,
};
use super::schema::MAX_LEVELS;
use super::secrets::write_fresh_secrets;

/// The most machines `ringcast up --shape` starts on one host.
pub const MAX_LOCAL_MACHINES: u64 = 64;

/// Claim 5: members per cluster at each level, root first, from `3x3`.
pub fn parse_shape(text: &str) -> Result<Vec<u32>, ShapeError> {
    let shape: Vec<u32> = text
        .split(['x', 'X'])
        .map(|part| part.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| ShapeError::Syntax(text.to_string()))?;
    check_shape(&shape)?;
    Ok(shape)
}

fn check_shape(shape: &[u32]) -> Result<u64, ShapeError> {
    if shape.len() < 2 {
        return Err(ShapeError::OneLevel);
    }
    if shape.len() > MAX_LEVELS {
        return Err(ShapeError::TooDeep(shape.len()));
    }
    let mut machines: u64 = 1;
    for &members in shape {
        if members == 0 {
            return Err(ShapeError::Zero);
        }
        if members as usize > MAX_NODES {
            return Err(ShapeError::TooWide(members));
        }
        machines = machines.saturating_mul(u64::from(members));
    }
    if machines > MAX_LOCAL_MACHINES {
        return Err(ShapeError::TooMany {
            machines,
            max: MAX_LOCAL_MACHINES,
        });
    }
    Ok(machines)
}

/// How much slower each level of a local tree runs than the level below it,
/// so that a sub-cluster fails over and its seat moves well inside its
/// parent's failure detection (docs/hierarchy.md, "Timing between levels"):
/// the protocol's [`LEVEL_SLOWDOWN`], applied by [`Timing::for_level`].
pub const LOCAL_SLOWDOWN: u32 = LEVEL_SLOWDOWN;
/// Missed status periods before a parent declares a seat failed in a local
/// tree: a seat moves in a sub-cluster's failover plus one notification of
/// its parent, and a loaded machine should not turn that into a failure.
/// The protocol's [`PARENT_MISS_LIMIT`], which [`Timing::for_level`] sets.
pub const LOCAL_PARENT_MISS_LIMIT: u32 = PARENT_MISS_LIMIT;

/// Ports for a local tree: either fixed from a base, or ones the system
/// reports free, held open until all are chosen.
struct Ports {
    /// The base port asked for, and the machines, for errors.
    base: u16,
    machines: u32,
    next: Option<u32>,
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

impl Ports {
    fn udp(&mut self) -> Result<u16, ConfigFileError> {
        if let Some(port) = self.take_fixed()? {
            return Ok(port);
        }
        let socket =
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(ConfigFileError::FreePort)?;
        let port = socket
            .local_addr()
            .map_err(ConfigFileError::FreePort)?
            .port();
        self.udp.push(socket);
        Ok(port)
    }

    fn tcp(&mut self) -> Result<u16, ConfigFileError> {
        if let Some(port) = self.take_fixed()? {
            return Ok(port);
        }
        loop {
            let listener =
                TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(ConfigFileError::FreePort)?;
            let port = listener
                .local_addr()
                .map_err(ConfigFileError::FreePort)?
                .port();
            // A port already handed out for UDP would be confusing in a file.
            let clash = self
                .udp
                .iter()
                .any(|s| s.local_addr().is_ok_and(|a| a.port() == port));
            self.tcp.push(listener);
            if !clash {
                return Ok(port);
            }
        }
    }

    fn take_fixed(&mut self) -> Result<Option<u16>, ConfigFileError> {
        let Some(next) = self.next else {
            return Ok(None);
        };
        let port = u16::try_from(next).map_err(|_| ConfigFileError::PortRange {
            base: self.base,
            nodes: self.machines,
        })?;
        self.next = Some(next + 1);
        Ok(Some(port))
    }
}

/// One cluster of a local tree being laid out.
struct Planned {
    id: u32,
    level: usize,
    /// Member ids: machines for a leaf, clusters otherwise.
    members: Vec<u32>,
    bus: u16,
}

/// Claim 5: writes `cluster.toml`, `cluster.key` and `admin.token` into `dir`
/// for a tree of clusters on 127.0.0.1 shaped as `shape` (members per
/// cluster at each level, root first: `[3, 3]` is a root of three
/// sub-clusters of three machines), and returns the file's path.
///
/// Machines are numbered from 1; clusters from 1000 (the root) upward, level
/// by level. Every cluster multicasts on its own group with TTL 0; the leaves
/// run `Timing::lan()` and each level above runs [`LOCAL_SLOWDOWN`] times
/// slower. With `disks`, every machine has one disk under `dir/disks/d<k>`
/// shared with the previous machine of its leaf cluster. With `base_port`
/// ports are handed out upward from it; without, every port is one the
/// system reports free now.
pub fn local_hierarchy(
    dir: &Path,
    shape: &[u32],
    base_port: Option<u16>,
    disks: bool,
) -> Result<PathBuf, ConfigFileError> {
    let machines = check_shape(shape).map_err(ConfigFileError::Shape)? as u32;
    if base_port == Some(0) {
        return Err(ConfigFileError::PortRange {
            base: 0,
            nodes: machines,
        });
    }
    let mut ports = Ports {
        base: base_port.unwrap_or(0),
        machines,
        next: base_port.map(u32::from),
        udp: Vec::new(),
        tcp: Vec::new(),
    };
    let first_cluster = 1000.max(machines + 1);
    let leaf_level = shape.len() - 1;
    // Lay the clusters out level by level, the root first.
    let mut clusters: Vec<Planned> = Vec::new();
    let mut next_cluster = first_cluster;
    let mut next_machine = 1;
    let mut frontier = vec![next_cluster];
    next_cluster += 1;
    for (level, &members) in shape.iter().enumerate() {
        let mut below = Vec::new();
        for id in frontier {
            let ids: Vec<u32> = if level == leaf_level {
                let ids = (next_machine..next_machine + members).collect();
                next_machine += members;
                ids
            } else {
                let ids: Vec<u32> = (next_cluster..next_cluster + members).collect();
                next_cluster += members;
                ids
            };
            below.extend(&ids);
            clusters.push(Planned {
                id,
                level,
                members: ids,
                bus: ports.udp()?,
            });
        }
        frontier = below;
    }
    let key_bytes = write_fresh_secrets(dir)?;

    // Claim 5: one rule for every level's timing, the simulator's too.
    let timing_of = |level: usize| {
        let above = (leaf_level - level) as u32;
        Timing::lan().for_level(above, LOCAL_SLOWDOWN)
    };
    // A group per cluster, from the key's randomness so two trees on one
    // host do not share groups.
    let group = |i: usize| Ipv4Addr::new(239, 255, key_bytes[0].clamp(1, 254), (i % 254 + 1) as u8);
    let bus = |i: usize, c: &Planned| LocalBus::new(group(i), c.bus);
    let (root, subclusters) = clusters.split_first().expect("a shape has a root");
    let mut file = LocalFile {
        cluster: RootTable::new(root.id, "root", bus(0, root), root.members.clone()),
        timing: timing_of(root.level),
        subclusters: (1..)
            .zip(subclusters)
            .map(|(i, c)| {
                let name = format!("c{}", c.id);
                let timing = timing_of(c.level);
                SubclusterTable::new(c.id, &name, bus(i, c), c.members.clone(), timing)
            })
            .collect(),
        nodes: Vec::new(),
    };
    // Claim 13: every leaf machine's service address, on one port.
    let services = LocalServices::new([key_bytes[1], key_bytes[2]], ports.tcp()?);
    for leaf in clusters.iter().filter(|c| c.level == leaf_level) {
        for (k, &m) in leaf.members.iter().enumerate() {
            let ring = ports.udp()?;
            let http = ports.tcp()?;
            let seats: Vec<u16> = (0..leaf_level)
                .map(|_| ports.udp())
                .collect::<Result<_, _>>()?;
            let mut node = NodeTable::new(m, ring, http, &seats);
            node.service = Some(services.node(m));
            if disks {
                let previous = leaf.members[(k + leaf.members.len() - 1) % leaf.members.len()];
                node.disks = own_and_previous_disks(dir, m, previous)?;
            }
            file.nodes.push(node);
        }
    }
    let shape_text: Vec<String> = shape.iter().map(u32::to_string).collect();
    let header = format!(
        "# A local tree of ringcast clusters ({}) on 127.0.0.1, written by ringcast.\n\
         # ttl = 0: multicast stays on this host. A node's seats are its ring\n\
         # address in each ancestor cluster, nearest first.\n",
        shape_text.join("x")
    );
    let path = dir.join("cluster.toml");
    file.write(&path, &header)?;
    drop(ports);
    Ok(path)
}
