//! Claim 5: a local tree of clusters on 127.0.0.1 (`ringcast up --shape`),
//! and the shapes it takes (`3x3`).

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringcast_proto::config::MAX_NODES;
use ringcast_proto::Timing;

use super::error::{ConfigFileError, ShapeError};
use super::local::LOCAL_BYTES_PER_S;
use super::schema::{DEFAULT_MTU, MAX_LEVELS};
use super::secrets::{write_fresh_secrets, write_private};
use crate::settings::LIBRARY_DIR;

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
/// parent's failure detection (docs/hierarchy.md, "Timing between levels").
pub const LOCAL_SLOWDOWN: u32 = 5;
/// Missed status periods before a parent declares a seat failed in a local
/// tree: a seat moves in a sub-cluster's failover plus one notification of
/// its parent, and a loaded machine should not turn that into a failure.
pub const LOCAL_PARENT_MISS_LIMIT: u32 = 5;

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

    let timing_of = |level: usize| {
        let above = (leaf_level - level) as u32;
        if above == 0 {
            Timing::lan()
        } else {
            Timing::with_interval(
                Timing::lan().status_interval * LOCAL_SLOWDOWN.pow(above),
                LOCAL_PARENT_MISS_LIMIT,
            )
        }
    };
    // A group per cluster, from the key's randomness so two trees on one
    // host do not share groups.
    let group = |i: usize| Ipv4Addr::new(239, 255, key_bytes[0].clamp(1, 254), (i % 254 + 1) as u8);
    let shape_text: Vec<String> = shape.iter().map(u32::to_string).collect();
    let mut text = format!(
        "# A local tree of ringcast clusters ({}) on 127.0.0.1, written by ringcast.\n",
        shape_text.join("x")
    );
    for (i, c) in clusters.iter().enumerate() {
        let members: Vec<String> = c.members.iter().map(u32::to_string).collect();
        let (header, timing_header) = if i == 0 {
            ("[cluster]", "[timing]")
        } else {
            ("\n[[subcluster]]", "[subcluster.timing]")
        };
        let name = if i == 0 {
            "root".to_string()
        } else {
            format!("c{}", c.id)
        };
        let _ = writeln!(text, "{header}\nid = {}\nname = \"{name}\"", c.id);
        if i == 0 {
            text.push_str("config_version = 1\ntransport = \"multicast\"\n");
        }
        let _ = writeln!(
            text,
            "bus = \"{}:{}\"\ninterface = \"127.0.0.1\"\nttl = 0                       # multicast stays on this host\nloopback = true",
            group(i),
            c.bus
        );
        if i == 0 {
            text.push_str("key_file = \"cluster.key\"\nadmin_token_file = \"admin.token\"\n");
        }
        let _ = writeln!(
            text,
            "priority = [{}]\nmtu = {DEFAULT_MTU}",
            members.join(", ")
        );
        let t = timing_of(c.level);
        let ms = |d: Duration| d.as_millis();
        let _ = writeln!(
            text,
            "\n{timing_header}\nstatus_interval_ms = {}\nnotify_interval_ms = {}\nnotification_time_ms = {}\nmiss_limit = {}\ntakeover_step_ms = {}\njoin_retry_ms = {}\nleave_retry_ms = {}",
            ms(t.status_interval),
            ms(t.notify_interval),
            ms(t.notification_time),
            t.miss_limit,
            ms(t.takeover_step),
            ms(t.join_retry),
            ms(t.leave_retry),
        );
    }
    for leaf in clusters.iter().filter(|c| c.level == leaf_level) {
        for (k, &m) in leaf.members.iter().enumerate() {
            let ring = ports.udp()?;
            let http = ports.tcp()?;
            let seats: Vec<String> = (0..leaf_level)
                .map(|_| ports.udp().map(|p| format!("\"127.0.0.1:{p}\"")))
                .collect::<Result<_, _>>()?;
            let _ = writeln!(
                text,
                "\n[[node]]\nid = {m}\nring = \"127.0.0.1:{ring}\"\nhttp = \"127.0.0.1:{http}\"\nmax_streams = 100\nmax_bytes_per_s = {LOCAL_BYTES_PER_S}\nseats = [{}]  # its ring address in each ancestor cluster, nearest first",
                seats.join(", ")
            );
            if disks {
                let previous = leaf.members[(k + leaf.members.len() - 1) % leaf.members.len()];
                let mut reached = vec![m];
                if previous != m {
                    reached.push(previous);
                }
                for d in reached {
                    let mount = dir.join("disks").join(format!("d{d}"));
                    let lib = mount.join(LIBRARY_DIR);
                    fs::create_dir_all(&lib)
                        .map_err(|source| ConfigFileError::Write { path: lib, source })?;
                    let _ = writeln!(
                        text,
                        "\n[[node.disk]]\nid = {d}\nmount = \"{}\"\nprobe = \"{}\"",
                        mount.display(),
                        mount.join(format!(".ringcast-probe-n{m}")).display()
                    );
                }
            }
        }
    }
    let path = dir.join("cluster.toml");
    write_private(&path, &text)?;
    drop(ports);
    Ok(path)
}
