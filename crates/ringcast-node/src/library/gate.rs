//! Claim 13 with a disk that hangs: a bound on the filesystem calls that
//! wait on one disk at a time. Requests, playlist reads and catalog scans
//! run on blocking threads; a hung disk keeps each of them forever, so
//! without a bound one hung disk would take every blocking thread and
//! stall the streams of the node's other disks. Past the bound a request is
//! refused at once (`503` with `Retry-After`) instead of waiting.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Filesystem calls one disk may have in flight at once by default: far more
/// than a healthy disk needs to open files for the node's streams (an open
/// takes microseconds), far fewer than tokio's blocking threads.
pub const DISK_CALLS: usize = 64;

/// The calls in flight on one disk.
#[derive(Debug)]
pub struct DiskGate {
    in_flight: AtomicUsize,
    limit: usize,
}

/// One call's place in a [`DiskGate`], given back when dropped.
#[derive(Debug)]
pub struct Pass<'a> {
    gate: &'a DiskGate,
}

impl DiskGate {
    /// A gate letting `limit` calls in at once.
    pub fn new(limit: usize) -> DiskGate {
        DiskGate {
            in_flight: AtomicUsize::new(0),
            limit,
        }
    }

    /// A place for one call, or `None` when `limit` calls are in flight
    /// (the disk is slow or hung).
    pub fn enter(&self) -> Option<Pass<'_>> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Pass { gate: self })
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

impl Default for DiskGate {
    fn default() -> DiskGate {
        DiskGate::new(DISK_CALLS)
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_gate_refuses_until_a_call_returns() {
        let gate = DiskGate::new(2);
        let a = gate.enter().expect("first");
        let _b = gate.enter().expect("second");
        assert!(gate.enter().is_none());
        drop(a);
        assert!(gate.enter().is_some());
        assert_eq!(gate.in_flight(), 1);
    }
}
