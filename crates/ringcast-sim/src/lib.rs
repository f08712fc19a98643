//! A deterministic discrete-event simulator for ringcast's protocol core.
//!
//! Thousands of [`ringcast_proto::Machine`]s run on one virtual clock, driven
//! through the same pump as the real daemon (lone clusters in [`world`],
//! whole trees of clusters with their seats in [`tree`]), over a network with seeded loss,
//! duplication, reordering, delay, partitions, crashes, restarts and pauses.
//! The invariants of DESIGN section 8 are checked after every step; a failing
//! seed prints its trace and replays exactly.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod campaign;
pub mod check;
pub mod demo;
pub mod hierarchy;
pub mod schedule;
pub mod serving;
pub mod streams;
pub mod tree;
pub mod world;

pub use world::{NetFaults, Sim, SimConfig};
