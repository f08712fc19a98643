//! One protocol node (`ringcast_proto::Node`, configured as the simulator
//! configures its nodes) driven by an arbitrary sequence of inputs: raw
//! datagrams, real captured frames, authentic frames carrying arbitrary
//! bodies or hostile well-typed messages (from peers that restart, rotate
//! keys, announce new configurations and split messages into many parts),
//! replays, the passing of time, timeouts and local events (load, disk
//! probes, leave), and key rotations of its own.
//!
//! Checks: nothing panics. Virtual time per input is bounded (at most 64
//! operations of at most 2 s each).

#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringcast_fuzz::structured::{FDiskReport, FMessage, Id};
use ringcast_fuzz::{keyring, node_config, pool, CLUSTER, KEY_2, NODES};
use ringcast_proto::frame::Sealer;
use ringcast_proto::{Incarnation, KeyId, Keyring, LocalEvent, Node, NodeId};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Which node of the cluster the fuzzed node is (1..=5).
    me: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Any bytes as a datagram.
    Raw(Vec<u8>),
    /// A real frame captured from a healthy cluster, as sent.
    Captured(u16),
    /// A captured message's body, edited, sealed by a peer.
    CapturedEdited {
        index: u16,
        from: Id,
        edits: Vec<(u16, u8)>,
        truncate: Option<u16>,
    },
    /// Any body, sealed by a peer.
    Body { from: Id, body: Vec<u8> },
    /// A well-typed hostile message, sealed by a peer; its parts (one unless
    /// the peer's MTU is small) delivered in the order given (indices modulo
    /// the part count; empty: in order).
    Message {
        from: Id,
        message: FMessage,
        order: Vec<u8>,
    },
    /// One of the datagrams delivered before, again.
    Replay(u16),
    /// A peer restarts: a new incarnation, counters from 0, and an MTU.
    PeerRestart { peer: Id, small_mtu: bool },
    /// A peer announces configuration version `v`.
    PeerConfig { peer: Id, version: u8 },
    /// A peer seals with key 1, key 2, or a key nobody holds.
    PeerKey { peer: Id, key: u8 },
    /// Time passes; every timeout that comes due fires.
    Advance(u16),
    /// A timeout call now, due or not.
    Timeout,
    /// The host reports its load.
    Load(u32, u64),
    /// The host reports a disk probe.
    Disk(FDiskReport),
    /// The operator asks the node to leave.
    Leave,
    /// The node accepts key 2 / seals with key 2 / retires key 2.
    OwnKey(u8),
}

struct Peer {
    sealer: Sealer,
    incarnation: u64,
    keyring: Keyring,
}

impl Peer {
    fn new(id: NodeId, incarnation: u64, mtu: usize) -> Peer {
        Peer {
            sealer: Sealer::new(CLUSTER, 1, id, Incarnation(incarnation), mtu),
            incarnation,
            keyring: keyring(),
        }
    }
}

struct World {
    node: Node,
    now: Instant,
    /// Peers by node id 0..=7 (0, 6 and 7 are not members; 5 may be `me`).
    peers: Vec<Peer>,
    history: Vec<Vec<u8>>,
}

impl World {
    fn drain(&mut self) {
        while self.node.poll_transmit().is_some() {}
        while self.node.poll_event().is_some() {}
    }

    fn deliver(&mut self, datagram: Vec<u8>) {
        self.node.handle_datagram(self.now, &datagram);
        self.drain();
        if self.history.len() < 64 {
            self.history.push(datagram);
        }
    }

    fn seal(&mut self, from: Id, body: &[u8]) -> Vec<Vec<u8>> {
        let peer = &mut self.peers[usize::from(from.0 % 8)];
        peer.sealer.seal(&peer.keyring, body).unwrap_or_default()
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..10_000 {
            match self.node.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.node.handle_timeout(self.now);
                    self.drain();
                }
                _ => break,
            }
        }
        self.now = end;
    }
}

fuzz_target!(|input: Input| {
    let me = u32::from(input.me % NODES as u8) + 1;
    let now = Instant::now();
    let Ok(node) = Node::new(node_config(me, NODES), keyring(), Incarnation(1), 7, now) else {
        panic!("the simulator's configuration is refused");
    };
    let captured = pool::frames();
    let mut world = World {
        node,
        now,
        // Incarnation 2: newer than the captured frames' lives.
        peers: (0..8).map(|id| Peer::new(NodeId(id), 2, 1400)).collect(),
        history: Vec::new(),
    };
    world.drain();

    for op in input.ops.into_iter().take(64) {
        match op {
            Op::Raw(bytes) => world.deliver(bytes),
            Op::Captured(i) => {
                if !captured.is_empty() {
                    let c = &captured[usize::from(i) % captured.len()];
                    world.deliver(c.frame.clone());
                }
            }
            Op::CapturedEdited {
                index,
                from,
                edits,
                truncate,
            } => {
                if captured.is_empty() {
                    continue;
                }
                let mut body = captured[usize::from(index) % captured.len()].body.clone();
                for (at, byte) in edits.into_iter().take(16) {
                    if !body.is_empty() {
                        let n = body.len();
                        body[usize::from(at) % n] = byte;
                    }
                }
                if let Some(t) = truncate {
                    let n = body.len();
                    body.truncate(usize::from(t) % (n + 1));
                }
                for f in world.seal(from, &body) {
                    world.deliver(f);
                }
            }
            Op::Body { from, body } => {
                for f in world.seal(from, &body) {
                    world.deliver(f);
                }
            }
            Op::Message {
                from,
                message,
                order,
            } => {
                let body = message.build().encode();
                let frames = world.seal(from, &body);
                if frames.is_empty() {
                    continue;
                }
                if order.is_empty() {
                    for f in frames {
                        world.deliver(f);
                    }
                } else {
                    for i in order.into_iter().take(128) {
                        let f = frames[usize::from(i) % frames.len()].clone();
                        world.deliver(f);
                    }
                }
            }
            Op::Replay(i) => {
                if !world.history.is_empty() {
                    let d = world.history[usize::from(i) % world.history.len()].clone();
                    world.node.handle_datagram(world.now, &d);
                    world.drain();
                }
            }
            Op::PeerRestart { peer, small_mtu } => {
                let p = &mut world.peers[usize::from(peer.0 % 8)];
                let id = NodeId(u32::from(peer.0 % 8));
                let keys = p.keyring.clone();
                *p = Peer::new(id, p.incarnation + 1, if small_mtu { 64 } else { 1400 });
                p.keyring = keys;
            }
            Op::PeerConfig { peer, version } => {
                world.peers[usize::from(peer.0 % 8)]
                    .sealer
                    .set_config_version(u32::from(version));
            }
            Op::PeerKey { peer, key } => {
                let p = &mut world.peers[usize::from(peer.0 % 8)];
                p.keyring = match key % 3 {
                    0 => keyring(),
                    1 => Keyring::new(KeyId(2), KEY_2),
                    _ => Keyring::new(KeyId(1), [0xee; 32]),
                };
            }
            Op::Advance(ms) => world.advance(Duration::from_millis(u64::from(ms % 2001))),
            Op::Timeout => {
                world.node.handle_timeout(world.now);
                world.drain();
            }
            Op::Load(streams, bytes_per_s) => {
                world.node.handle_local(
                    world.now,
                    LocalEvent::Load(ringcast_proto::Load {
                        streams,
                        bytes_per_s,
                    }),
                );
                world.drain();
            }
            Op::Disk(report) => {
                world
                    .node
                    .handle_local(world.now, LocalEvent::DiskProbe(report.build()));
                world.drain();
            }
            Op::Leave => {
                world.node.handle_local(world.now, LocalEvent::Leave);
                world.drain();
            }
            Op::OwnKey(k) => {
                let keys = world.node.keyring_mut();
                match k % 3 {
                    0 => keys.accept(KeyId(2), KEY_2),
                    1 => {
                        let _ = keys.send_with(KeyId(2));
                    }
                    _ => {
                        let _ = keys.send_with(KeyId(1));
                        keys.retire(KeyId(2));
                    }
                }
            }
        }
    }
    // Let the node's timers run out a while, so queued consequences happen.
    world.advance(Duration::from_millis(500));
});
