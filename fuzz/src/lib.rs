//! Helpers shared by the fuzz targets in `fuzz_targets/` (see `README.md`).
//!
//! - [`seal_raw`]: an authentic frame with any header at all, as a peer that
//!   holds the cluster key (or a buggy one) could send, so targets get past the
//!   tag check and reach part checks, replay windows and reassembly.
//! - [`structured`]: an `Arbitrary` mirror of the protocol's messages, so
//!   targets can send well-typed but hostile messages.
//! - [`pool`]: real frames captured once from a small healthy cluster, so
//!   targets start from the traffic a node really sees.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use ringcast_proto::frame::{Header, Opener, MAGIC, TAG_LEN, VERSION};
use ringcast_proto::{ClusterId, KeyId, Keyring, NodeConfig, NodeId, Timing};

pub mod structured;

/// The cluster every target's nodes belong to (as in the simulator).
pub const CLUSTER: ClusterId = ClusterId(1);
/// Key 1: the key the simulator's nodes share, so captured frames verify.
pub const KEY_1: [u8; 32] = ringcast_sim::world::SIM_KEY;
/// Key 2: a second key, for rotations.
pub const KEY_2: [u8; 32] = [0x5a; 32];
/// A key no node accepts.
pub const WRONG_KEY: [u8; 32] = [0xee; 32];
/// Nodes in the clusters the targets build (ids 1..=NODES, priority in id order).
pub const NODES: u32 = 5;

/// A keyring holding key 1 only.
pub fn keyring() -> Keyring {
    Keyring::new(KeyId(1), KEY_1)
}

/// A keyring that seals with key 1 and accepts key 2 too.
pub fn keyring_rotating() -> Keyring {
    let mut k = keyring();
    k.accept(KeyId(2), KEY_2);
    k
}

/// The configuration of node `id` of a `nodes`-node LAN cluster, exactly as
/// the simulator builds it (`ringcast_sim::world::node_config`).
pub fn node_config(id: u32, nodes: u32) -> NodeConfig {
    ringcast_sim::world::node_config(id, nodes, &Timing::lan(), 1400)
}

/// The key bytes a key id names here: 1 and 2 are the cluster's keys, any
/// other id gets a key nobody holds.
pub fn key_bytes(id: KeyId) -> [u8; 32] {
    match id.0 {
        1 => KEY_1,
        2 => KEY_2,
        _ => WRONG_KEY,
    }
}

/// Writes a header in the documented wire layout
/// (`crates/ringcast-proto/src/frame.rs`), magic and version included.
pub fn write_header(h: &Header, out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&h.cluster.0.to_be_bytes());
    out.extend_from_slice(&h.config_version.to_be_bytes());
    out.extend_from_slice(&h.sender.0.to_be_bytes());
    out.extend_from_slice(&h.incarnation.0.to_be_bytes());
    out.push(h.key_id.0);
    out.extend_from_slice(&h.counter.to_be_bytes());
    out.extend_from_slice(&h.part.to_be_bytes());
    out.extend_from_slice(&h.parts.to_be_bytes());
}

/// An authentic frame: `header || body || HMAC-SHA256(key, header || body)[..16]`,
/// whatever the header says.
pub fn seal_raw(key: &[u8; 32], header: &Header, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ringcast_proto::frame::OVERHEAD + body.len());
    write_header(header, &mut frame);
    frame.extend_from_slice(body);
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(&frame);
    let tag = mac.finalize().into_bytes();
    frame.extend_from_slice(&tag[..TAG_LEN]);
    frame
}

/// Real traffic of a healthy cluster.
pub mod pool {
    use super::*;
    use ringcast_proto::event::{Destination, Transmit};
    use ringcast_proto::message::{DiskReport, MessageKind};
    use ringcast_proto::{DiskId, Incarnation, LocalEvent, Node};

    /// One captured frame.
    #[derive(Clone, Debug)]
    pub struct Captured {
        /// The node that sealed it.
        pub sender: NodeId,
        /// What it carries.
        pub kind: MessageKind,
        /// The sealed datagram, as sent (valid under [`KEY_1`], cluster 1,
        /// incarnation 1 of its sender).
        pub frame: Vec<u8>,
        /// Its message body.
        pub body: Vec<u8>,
    }

    /// Most frames kept per message kind.
    const PER_KIND: usize = 24;

    /// A node's datagrams after an input (its events are not needed here).
    struct Collect(Vec<Transmit>);
    impl Collect {
        fn drain(&mut self, node: &mut Node) {
            while let Some(t) = node.poll_transmit() {
                self.0.push(t);
            }
            while node.poll_event().is_some() {}
        }
    }

    /// Frames sent by nodes 1..=4 of a 5-node cluster (node 5 never runs, so
    /// a target may play it) over 1.5 s of virtual time: joins, notifications,
    /// a takeover, ring status with loads and a broken disk, and a leave.
    /// Computed once per process; deterministic.
    pub fn frames() -> &'static [Captured] {
        static POOL: OnceLock<Vec<Captured>> = OnceLock::new();
        POOL.get_or_init(capture)
    }

    fn capture() -> Vec<Captured> {
        let base = Instant::now();
        let running: Vec<u32> = (1..NODES).collect();
        let mut nodes: Vec<Option<Node>> = running
            .iter()
            .map(|id| {
                Node::new(
                    node_config(*id, NODES),
                    keyring(),
                    Incarnation(1),
                    u64::from(*id),
                    base,
                )
                .ok()
            })
            .collect();
        let mut out = Vec::new();
        let mut opener = Opener::new(CLUSTER, NodeId(NODES));
        let mut per_kind = std::collections::BTreeMap::<MessageKind, usize>::new();
        let mut step = |nodes: &mut Vec<Option<Node>>, now: Instant, input: Option<(usize, LocalEvent)>| {
            let mut queue: Vec<(usize, Transmit)> = Vec::new();
            for (i, slot) in nodes.iter_mut().enumerate() {
                let Some(node) = slot.as_mut() else { continue };
                let mut c = Collect(Vec::new());
                match &input {
                    Some((j, ev)) if *j == i => {
                        node.handle_local(now, ev.clone());
                        c.drain(node);
                    }
                    _ => {}
                }
                if node.poll_timeout().is_some_and(|t| t <= now) {
                    node.handle_timeout(now);
                    c.drain(node);
                }
                queue.extend(c.0.into_iter().map(|t| (i, t)));
            }
            // Deliver at once, until the cluster is quiet for this instant.
            let mut rounds = 0;
            while !queue.is_empty() && rounds < 16 {
                rounds += 1;
                let mut next = Vec::new();
                for (from, t) in queue.drain(..) {
                    let n = per_kind.entry(t.kind).or_default();
                    if *n < PER_KIND {
                        if let Ok(Some(opened)) =
                            opener.open(&keyring(), &t.payload, |_| true)
                        {
                            *n += 1;
                            out.push(Captured {
                                sender: opened.header.sender,
                                kind: t.kind,
                                frame: t.payload.clone(),
                                body: opened.body,
                            });
                        }
                    }
                    let targets: Vec<usize> = match t.destination {
                        Destination::Bus => (0..nodes.len()).filter(|j| *j != from).collect(),
                        Destination::Node { id, .. } => {
                            vec![(id.0 as usize).wrapping_sub(1)]
                        }
                    };
                    for to in targets {
                        let Some(Some(node)) = nodes.get_mut(to) else { continue };
                        let mut c = Collect(Vec::new());
                        node.handle_datagram(now, &t.payload);
                        c.drain(node);
                        next.extend(c.0.into_iter().map(|t| (to, t)));
                    }
                }
                queue = next;
            }
        };
        for ms in 0..1500u64 {
            let now = base + Duration::from_millis(ms);
            let input = match ms {
                300 => Some((1, LocalEvent::Load(ringcast_proto::Load { streams: 3, bytes_per_s: 9_000_000 }))),
                400 => Some((2, LocalEvent::DiskProbe(DiskReport {
                    disk: DiskId(3),
                    ok: false,
                    capacity_bytes: 1 << 40,
                    used_bytes: 1 << 30,
                    catalog: 0xfeed,
                    streams: 0,
                    bytes_per_s: 0,
                }))),
                1200 => Some((3, LocalEvent::Leave)),
                _ => None,
            };
            if ms == 800 {
                // The supervisor dies: a takeover follows.
                nodes[0] = None;
            }
            step(&mut nodes, now, input);
        }
        out
    }
}

/// Reads a little-endian number from the front of `data`, for targets with a
/// hand-written input format.
pub fn take_u64(data: &mut &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = data.len().min(8);
    buf[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    u64::from_le_bytes(buf)
}
