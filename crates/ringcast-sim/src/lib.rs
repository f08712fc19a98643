//! A deterministic discrete-event simulator for ringcast's protocol core.
//!
//! Thousands of [`ringcast_proto::Node`]s run on one virtual clock, driven
//! through the same pump as the real daemon, over a network with seeded loss,
//! duplication, reordering, delay, partitions, crashes, restarts and pauses.
//! The invariants of DESIGN section 8 are checked after every step; a failing
//! seed prints its trace and replays exactly.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod campaign;
pub mod check;
pub mod demo;
pub mod hierarchy;
pub mod world;

pub use world::{NetFaults, Sim, SimConfig};
