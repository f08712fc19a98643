//! What the node's disks hold and whether they work (claims 2, 3 and 13):
//! [`catalog`], the titles of each disk's library, and [`disks`], the prober
//! that writes, syncs and reads back a small file on each disk under a
//! timeout.

pub mod catalog;
pub mod disks;
pub mod gate;
