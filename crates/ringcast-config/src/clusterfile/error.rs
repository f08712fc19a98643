//! What goes wrong with a cluster file: each problem at its line, and the
//! errors of loading and writing one.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use ringcast_proto::config::MAX_NODES;
use ringcast_proto::NodeId;
use thiserror::Error;

use super::schema::MAX_LEVELS;

/// One thing wrong in a cluster file, at a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The cluster file.
    pub file: PathBuf,
    /// 1-based line of the offending value or key.
    pub line: usize,
    /// Dotted path of the field, such as `cluster.priority` or `node.disk.id`.
    pub field: String,
    /// What is wrong, as one sentence.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.field,
            self.message
        )
    }
}

/// Why a cluster file could not be loaded or written (claims 1-3).
#[derive(Debug, Error)]
pub enum ConfigFileError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file does not parse or does not validate; every problem found is listed.
    #[error("{}", list_problems(path, problems))]
    Invalid {
        /// The cluster file.
        path: PathBuf,
        /// Each problem, in line order.
        problems: Vec<Problem>,
    },
    /// A node id the file does not define.
    #[error("{} defines no node with id {}", path.display(), node.0)]
    UnknownNode {
        /// The cluster file.
        path: PathBuf,
        /// The node asked for.
        node: NodeId,
    },
    /// [`local_cluster`] was asked for no nodes or more than a cluster may hold.
    #[error("a local cluster needs 1 to {MAX_NODES} nodes, not {0}")]
    NodeCount(u32),
    /// [`local_cluster`]'s fixed ports do not fit below 65536.
    #[error("base port {base} leaves no room for {nodes} nodes (it needs ports up to {base} + {})", 2 * u64::from(*nodes))]
    PortRange {
        /// The base port asked for.
        base: u16,
        /// The number of nodes.
        nodes: u32,
    },
    /// [`local_hierarchy`] was given a shape it cannot lay out (claim 5).
    #[error("cannot lay out that tree: {0}")]
    Shape(ShapeError),
    /// No free port could be found on 127.0.0.1.
    #[error("cannot find a free port on 127.0.0.1: {0}")]
    FreePort(#[source] io::Error),
    /// The operating system gave no random bytes for a key.
    #[error("cannot get random bytes from the operating system: {0}")]
    Random(getrandom::Error),
    /// A local cluster's tables could not be written as TOML.
    #[error("cannot write the local cluster file as TOML: {0}")]
    Serialize(#[source] toml::ser::Error),
}

fn list_problems(path: &Path, problems: &[Problem]) -> String {
    let count = problems.len();
    let noun = if count == 1 { "problem" } else { "problems" };
    let mut text = format!("{} has {count} {noun}:", path.display());
    for problem in problems {
        text.push_str("\n  ");
        text.push_str(&problem.to_string());
    }
    text
}

/// Why a tree shape such as `3x3` cannot be laid out.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ShapeError {
    /// Not numbers joined by `x`.
    #[error("{0:?} is not a shape: give members per cluster at each level, root first, joined by x (such as 3x3)")]
    Syntax(String),
    /// More levels than a tree may have.
    #[error("a tree has at most {MAX_LEVELS} levels, not {0}")]
    TooDeep(usize),
    /// Fewer than two levels: that is one cluster.
    #[error("a tree needs at least two levels (such as 3x3); for one cluster give --nodes")]
    OneLevel,
    /// A level with no members.
    #[error("every level needs at least one member")]
    Zero,
    /// More members in one cluster than a cluster may hold.
    #[error("a cluster holds at most {MAX_NODES} members, not {0}")]
    TooWide(u32),
    /// More machines than a local tree runs.
    #[error("a local tree runs at most {max} machines, and this shape has {machines}")]
    TooMany {
        /// Machines the shape has.
        machines: u64,
        /// The most a local tree runs.
        max: u64,
    },
}
