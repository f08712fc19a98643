//! Counters a node keeps about itself, for `/metrics` and the simulator's figures.

use std::collections::BTreeMap;

use crate::message::MessageKind;

/// Messages and bytes of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams.
    pub datagrams: u64,
    /// Bytes on the wire (sealed frames).
    pub bytes: u64,
}

/// A node's counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sent, by message kind.
    pub sent: BTreeMap<MessageKind, Traffic>,
    /// Received and accepted, by message kind.
    pub received: BTreeMap<MessageKind, Traffic>,
    /// Frames refused, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Times the supervisor this node follows changed.
    pub supervisor_changes: u64,
    /// Failure declarations this node made (claim 8).
    pub failure_declarations: u64,
    /// Times this node's timers ran late (local health).
    pub clock_slips: u64,
}

impl Stats {
    pub(crate) fn count_sent(&mut self, kind: MessageKind, bytes: usize) {
        let t = self.sent.entry(kind).or_default();
        t.datagrams += 1;
        t.bytes += bytes as u64;
    }

    pub(crate) fn count_received(&mut self, kind: MessageKind, bytes: usize) {
        let t = self.received.entry(kind).or_default();
        t.datagrams += 1;
        t.bytes += bytes as u64;
    }

    pub(crate) fn count_rejected(&mut self, reason: &'static str) {
        *self.rejected.entry(reason).or_default() += 1;
    }

    /// Frames refused, all reasons together.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Bytes sent, all kinds.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.values().map(|t| t.bytes).sum()
    }

    /// Bytes received and accepted, all kinds.
    pub fn bytes_received(&self) -> u64 {
        self.received.values().map(|t| t.bytes).sum()
    }
}
