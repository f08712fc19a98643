//! The file server's load counters: streams being sent and bytes sent, per
//! disk and in all, by the zero-copy path and by the copying path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;

/// One disk's counters.
#[derive(Debug, Default)]
pub(super) struct DiskCounter {
    pub(super) active: AtomicU64,
    pub(super) bytes: AtomicU64,
}

/// The streaming load of this node (claim 4's node and disk usage tables):
/// per disk, the streams whose body is being sent and the bytes sent, and
/// totals. The node turns byte counts into rates by sampling
/// [`StreamCounters::snapshot`].
#[derive(Debug, Default)]
pub struct StreamCounters {
    disks: RwLock<BTreeMap<u32, Arc<DiskCounter>>>,
    active: AtomicU64,
    bytes_sent: AtomicU64,
    sendfile_bytes: AtomicU64,
    copied_bytes: AtomicU64,
    pub(super) requests: AtomicU64,
}

/// One disk's streaming load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiskStreams {
    /// Responses from this disk whose body is being sent now.
    pub active_streams: u64,
    /// File bytes sent from this disk since the node started.
    pub bytes_sent: u64,
}

/// A copy of [`StreamCounters`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StreamsSnapshot {
    /// Per disk id, every disk that has served at least one response.
    pub disks: BTreeMap<u32, DiskStreams>,
    /// File responses whose body is being sent now, all disks together.
    pub active_streams: u64,
    /// Body bytes of stream responses sent (files and generated content).
    pub bytes_sent: u64,
    /// File bytes the kernel sent with `sendfile(2)` (the zero-copy path).
    pub sendfile_bytes: u64,
    /// File bytes read and written by the copying path.
    pub copied_bytes: u64,
    /// Stream requests answered, whatever the status.
    pub requests: u64,
}

impl StreamCounters {
    /// New counters, all zero.
    pub fn new() -> StreamCounters {
        StreamCounters::default()
    }

    /// The counters now.
    pub fn snapshot(&self) -> StreamsSnapshot {
        let disks = self
            .disks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, d)| {
                (
                    *id,
                    DiskStreams {
                        active_streams: d.active.load(Ordering::Relaxed),
                        bytes_sent: d.bytes.load(Ordering::Relaxed),
                    },
                )
            })
            .collect();
        StreamsSnapshot {
            disks,
            active_streams: self.active.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            sendfile_bytes: self.sendfile_bytes.load(Ordering::Relaxed),
            copied_bytes: self.copied_bytes.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    pub(super) fn disk(&self, id: u32) -> Arc<DiskCounter> {
        if let Some(d) = self
            .disks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return d.clone();
        }
        self.disks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default()
            .clone()
    }

    pub(super) fn sent(&self, disk: Option<&DiskCounter>, n: u64, zero_copy: bool) {
        self.bytes_sent.fetch_add(n, Ordering::Relaxed);
        if let Some(d) = disk {
            d.bytes.fetch_add(n, Ordering::Relaxed);
            if zero_copy {
                self.sendfile_bytes.fetch_add(n, Ordering::Relaxed);
            } else {
                self.copied_bytes.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// Counts a file response as active while it lives.
pub(super) struct ActiveStream {
    counters: Arc<StreamCounters>,
    disk: Arc<DiskCounter>,
}

impl ActiveStream {
    pub(super) fn new(counters: &Arc<StreamCounters>, disk: &Arc<DiskCounter>) -> ActiveStream {
        counters.active.fetch_add(1, Ordering::Relaxed);
        disk.active.fetch_add(1, Ordering::Relaxed);
        ActiveStream {
            counters: counters.clone(),
            disk: disk.clone(),
        }
    }
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        self.counters.active.fetch_sub(1, Ordering::Relaxed);
        self.disk.active.fetch_sub(1, Ordering::Relaxed);
    }
}
