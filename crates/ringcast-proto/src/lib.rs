//! ringcast's protocol core: every supervision claim as a pure state machine.
//!
//! This crate has no networking code, reads no clock and starts no thread:
//! time is a value passed in, randomness comes from a seed, and the only
//! outputs are datagrams to send, events and the next deadline. The simulator
//! (`ringcast-sim`) and the real daemon (`ringcast-node`) drive the same
//! [`machine::Machine`] (a host's leaf [`node::Node`] and the seats it holds
//! in ancestor clusters) through the same [`pump::pump`].
//!
//! Modules are named after the claim's concept: [`election`] (claims 1, 12,
//! 16-18, 21-22), [`ring`] (6-8), [`supervisor`] and [`tables`] (4, 9, 14, 19),
//! [`map`] (4), [`frame`] (the authenticated wire format), [`health`] (local
//! health, so a paused node does not blame its neighbours).

#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

pub mod announce;
pub mod config;
pub mod damping;
pub mod election;
pub mod event;
pub mod frame;
pub use frame::fragment;
pub mod health;
pub mod ids;
pub mod machine;
pub mod map;
pub mod message;
pub mod node;
pub mod placement;
pub mod pump;
pub mod replay;
pub mod ring;
pub mod service;
pub mod sizes;
pub mod stats;
pub mod supervisor;
pub mod tables;
pub mod timer;
pub mod token;
pub mod verdict;

pub use config::{
    Capacity, ConfigError, DiskAccess, NodeAddrs, NodeConfig, Timing, LEVEL_SLOWDOWN,
    PARENT_MISS_LIMIT,
};
pub use election::Reason;
pub use event::{Destination, Event, LocalEvent, Transmit};
pub use frame::Keyring;
pub use ids::{ClusterId, DiskId, Epoch, Incarnation, KeyId, NodeId, Rank};
pub use machine::{Level, LevelTransmit, Machine, MachineConfig, MachineEvent, Reassign, Reload};
pub use map::{ClusterMap, Member, MemberStatus};
pub use node::{Node, Role};
pub use tables::{Load, Tables};
