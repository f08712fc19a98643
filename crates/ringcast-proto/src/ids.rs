//! Identities: the small typed numbers every message and table is keyed by.
//!
//! Claim 1: the configuration service gives each member computer a node
//! identification and each cluster an identity; claims 10-12 order
//! supervisors by priority and epoch.

use core::fmt;
use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// Claim 1: which cluster a frame belongs to; frames of another cluster are refused.
    ClusterId(u32),
    "c"
);
id_type!(
    /// Claim 1: the node identification handed out by the configuration service.
    NodeId(u32),
    "n"
);
id_type!(
    /// Claims 2-3: a disk in a node's disk access list; the same disk reached
    /// by several nodes (shared storage) has the same id everywhere.
    DiskId(u32),
    "d"
);
id_type!(
    /// Which cluster key sealed a frame; two keys are accepted during a rotation.
    KeyId(u8),
    "k"
);
id_type!(
    /// A node's life number: it grows on every restart and whenever the node
    /// refutes a wrong failure declaration, so reports about an older life
    /// of the node are recognised as stale (claims 8-9).
    Incarnation(u64),
    "i"
);
id_type!(
    /// Claim 12: grows with every takeover; a notification of a lower epoch than
    /// one already accepted is stale.
    Epoch(u64),
    "e"
);

impl Incarnation {
    /// The next life of the node.
    pub fn next(self) -> Self {
        Incarnation(self.0.saturating_add(1))
    }
}

impl Epoch {
    /// The epoch a takeover starts.
    pub fn next(self) -> Self {
        Epoch(self.0.saturating_add(1))
    }
}

/// Claim 1: a node's position in the priority list; rank 0 is the highest priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rank(pub u16);

impl Rank {
    /// Whether this rank is a higher priority than `other`.
    pub fn outranks(self, other: Rank) -> bool {
        self.0 < other.0
    }
}

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}
