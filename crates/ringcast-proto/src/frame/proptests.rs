//! Property tests of the frame layer together with the message encoding:
//! arbitrary input never panics, every message survives sealing and opening
//! at any MTU, and no single flipped bit is ever accepted.

use std::net::{Ipv6Addr, SocketAddr};

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::config::{Capacity, NodeAddrs};
use crate::ids::{DiskId, Epoch, Rank};
use crate::map::{ClusterMap, Member, MemberStatus};
use crate::message::{
    Change, Declaration, DiskReport, Head, JoinRequest, Leave, Message, Notify, Pull, Row, RowKey,
    StatePart, Status, StatusEntry, SupervisorUpdate,
};
use crate::tables::{
    DiskAccessStatus, DiskLink, DiskStatus, DiskUsage, Load, NodeTopology, NodeUsage, Tables,
};

const CLUSTER: ClusterId = ClusterId(42);
const SENDER: NodeId = NodeId(1);
const RECEIVER: NodeId = NodeId(2);

fn keyring() -> Keyring {
    Keyring::new(KeyId(1), [9; 32])
}

fn anyone(_: NodeId) -> bool {
    true
}

// ---- strategies for every message and what it contains ----

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    // Postcard carries only the address and port of a V6 socket address, so
    // flow info and scope id stay zero.
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(SocketAddr::from),
        (any::<[u16; 8]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::from((Ipv6Addr::from(ip), port))),
    ]
}

fn node_addrs() -> impl Strategy<Value = NodeAddrs> {
    (socket_addr(), socket_addr()).prop_map(|(ring, http)| NodeAddrs { ring, http })
}

fn node_id() -> impl Strategy<Value = NodeId> {
    any::<u32>().prop_map(NodeId)
}

fn disk_id() -> impl Strategy<Value = DiskId> {
    any::<u32>().prop_map(DiskId)
}

fn incarnation() -> impl Strategy<Value = Incarnation> {
    any::<u64>().prop_map(Incarnation)
}

fn epoch() -> impl Strategy<Value = Epoch> {
    any::<u64>().prop_map(Epoch)
}

fn capacity() -> impl Strategy<Value = Capacity> {
    (any::<u32>(), any::<u64>()).prop_map(|(max_streams, max_bytes_per_s)| Capacity {
        max_streams,
        max_bytes_per_s,
    })
}

fn load() -> impl Strategy<Value = Load> {
    (any::<u32>(), any::<u64>()).prop_map(|(streams, bytes_per_s)| Load {
        streams,
        bytes_per_s,
    })
}

fn member() -> impl Strategy<Value = Member> {
    let status = prop_oneof![
        Just(MemberStatus::Up),
        Just(MemberStatus::Failed),
        Just(MemberStatus::Left),
    ];
    (node_id(), incarnation(), node_addrs(), status).prop_map(|(id, incarnation, addrs, status)| {
        Member {
            id,
            incarnation,
            addrs,
            status,
        }
    })
}

fn cluster_map() -> impl Strategy<Value = ClusterMap> {
    (
        node_id(),
        epoch(),
        any::<u16>().prop_map(Rank),
        any::<u64>(),
        vec(socket_addr(), 0..4),
        vec(member(), 0..24),
        vec(node_id(), 0..24),
    )
        .prop_map(
            |(supervisor, epoch, supervisor_rank, version, servers, members, ring)| ClusterMap {
                supervisor,
                epoch,
                supervisor_rank,
                version,
                servers,
                members,
                ring,
            },
        )
}

fn node_topology() -> impl Strategy<Value = NodeTopology> {
    let status = prop_oneof![Just(DiskAccessStatus::Ok), Just(DiskAccessStatus::Broken)];
    let link = (disk_id(), status).prop_map(|(disk, status)| DiskLink {
        disk,
        status,
        streams: disk.0 % 7,
        bytes_per_s: u64::from(disk.0) * 3,
    });
    (node_id(), vec(link, 0..4)).prop_map(|(node, disks)| NodeTopology { node, disks })
}

fn node_usage() -> impl Strategy<Value = NodeUsage> {
    (node_id(), capacity(), load()).prop_map(|(node, capacity, load)| NodeUsage {
        node,
        capacity,
        load,
    })
}

fn disk_usage() -> impl Strategy<Value = DiskUsage> {
    let status = prop_oneof![Just(DiskStatus::Ok), Just(DiskStatus::Failed)];
    (
        disk_id(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        status,
    )
        .prop_map(
            |(disk, capacity_bytes, used_bytes, streams, bytes_per_s, status)| DiskUsage {
                disk,
                capacity_bytes,
                used_bytes,
                streams,
                bytes_per_s,
                status,
                catalog: used_bytes.rotate_left(7),
            },
        )
}

fn tables() -> impl Strategy<Value = Tables> {
    (
        vec(node_topology(), 0..4),
        vec(node_usage(), 0..4),
        vec(disk_usage(), 0..4),
    )
        .prop_map(|(topology, node_usage, disk_usage)| Tables {
            topology,
            node_usage,
            disk_usage,
        })
}

fn head() -> impl Strategy<Value = Head> {
    (
        node_id(),
        any::<u16>(),
        epoch(),
        incarnation(),
        any::<[u64; 3]>(),
    )
        .prop_map(
            |(supervisor, rank, epoch, life, [map_version, version, digest])| Head {
                supervisor,
                supervisor_rank: Rank(rank),
                epoch,
                life,
                map_version,
                version,
                digest,
            },
        )
}

/// Every row of a drawn state: what notifications and state parts carry.
fn rows() -> impl Strategy<Value = Vec<Row>> {
    (cluster_map(), tables()).prop_map(|(map, tables)| crate::announce::rows(&map, &tables))
}

fn notify() -> impl Strategy<Value = Notify> {
    (
        node_addrs(),
        head(),
        any::<(u64, u64)>(),
        rows(),
        vec(node_id(), 0..4),
    )
        .prop_map(|(addrs, head, (base, base_digest), rows, gone)| Notify {
            addrs,
            head,
            base,
            base_digest,
            changes: rows
                .into_iter()
                .map(Change::Put)
                .chain(gone.into_iter().map(|n| Change::Remove(RowKey::Member(n))))
                .collect(),
        })
}

fn state_part() -> impl Strategy<Value = StatePart> {
    (node_addrs(), head(), any::<(u16, u16)>(), rows()).prop_map(
        |(addrs, head, (part, parts), rows)| StatePart {
            addrs,
            head,
            part,
            parts,
            rows,
        },
    )
}

fn pull() -> impl Strategy<Value = Pull> {
    (node_id(), node_addrs()).prop_map(|(node, addrs)| Pull { node, addrs })
}

fn supervisor_update() -> impl Strategy<Value = SupervisorUpdate> {
    (node_id(), node_addrs(), epoch(), node_id()).prop_map(
        |(supervisor, addrs, epoch, replaces)| SupervisorUpdate {
            supervisor,
            addrs,
            epoch,
            replaces,
        },
    )
}

fn join_request() -> impl Strategy<Value = JoinRequest> {
    (
        node_id(),
        incarnation(),
        node_addrs(),
        vec(disk_id(), 0..8),
        capacity(),
        (any::<u32>(), any::<u64>()),
    )
        .prop_map(
            |(node, incarnation, addrs, disks, capacity, (streams, bytes_per_s))| JoinRequest {
                node,
                incarnation,
                addrs,
                disks,
                capacity,
                load: Load {
                    streams,
                    bytes_per_s,
                },
            },
        )
}

fn leave() -> impl Strategy<Value = Leave> {
    (node_id(), incarnation(), node_addrs()).prop_map(|(node, incarnation, addrs)| Leave {
        node,
        incarnation,
        addrs,
    })
}

fn disk_report() -> impl Strategy<Value = DiskReport> {
    (disk_id(), any::<bool>(), any::<u64>(), any::<u64>()).prop_map(
        |(disk, ok, capacity_bytes, used_bytes)| DiskReport {
            disk,
            ok,
            capacity_bytes,
            used_bytes,
            catalog: capacity_bytes ^ used_bytes,
            streams: (used_bytes % 1000) as u32,
            bytes_per_s: capacity_bytes / 3,
        },
    )
}

fn status_entry() -> impl Strategy<Value = StatusEntry> {
    let declaration = (node_id(), incarnation())
        .prop_map(|(node, incarnation)| Declaration { node, incarnation });
    (
        node_id(),
        incarnation(),
        any::<u64>(),
        load(),
        vec(disk_report(), 0..4),
        vec(declaration, 0..4),
    )
        .prop_map(
            |(node, incarnation, seq, load, disks, declarations)| StatusEntry {
                node,
                incarnation,
                seq,
                load,
                disks,
                declarations,
            },
        )
}

fn status() -> impl Strategy<Value = Status> {
    (
        epoch(),
        vec(status_entry(), 0..16),
        any::<bool>(),
        any::<[u8; 8]>(),
    )
        .prop_map(|(epoch, entries, reset, told)| Status {
            epoch,
            entries,
            reset,
            told,
        })
}

fn message() -> impl Strategy<Value = Message> {
    // The two messages that grow with the cluster are drawn more often, so
    // the multi-part paths get exercised.
    prop_oneof![
        3 => notify().prop_map(Message::Notify),
        1 => supervisor_update().prop_map(Message::SupervisorUpdate),
        1 => join_request().prop_map(Message::Join),
        1 => leave().prop_map(Message::Leave),
        3 => status().prop_map(Message::Status),
        2 => state_part().prop_map(Message::State),
        1 => pull().prop_map(Message::Pull),
    ]
}

// ---- helpers ----

/// Opens every datagram in order and returns the messages they completed.
fn open_all(opener: &mut Opener, keyring: &Keyring, datagrams: &[Vec<u8>]) -> Vec<Opened> {
    datagrams
        .iter()
        .filter_map(|d| opener.open(keyring, d, anyone).ok().flatten())
        .collect()
}

/// An authenticated frame with arbitrary header fields, as only a key holder
/// could build.
fn authentic_frame() -> impl Strategy<Value = (Header, Vec<u8>)> {
    (
        1u32..4,
        0u64..3,
        0u64..80,
        0u16..6,
        0u16..6,
        vec(any::<u8>(), 0..64),
    )
        .prop_map(|(sender, incarnation, counter, part, parts, body)| {
            let header = Header {
                cluster: CLUSTER,
                config_version: 1,
                sender: NodeId(sender + 10),
                incarnation: Incarnation(incarnation),
                key_id: KeyId(1),
                counter,
                part,
                parts,
            };
            (header, body)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_never_panic_the_opener(bytes in vec(any::<u8>(), 0..2048)) {
        let mut opener = Opener::new(CLUSTER, RECEIVER);
        let _ = opener.open(&keyring(), &bytes, anyone);
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_prefix_never_panic_the_opener(
        tail in vec(any::<u8>(), 0..512),
        version in prop_oneof![Just(VERSION), any::<u8>()],
    ) {
        let mut datagram = MAGIC.to_vec();
        datagram.push(version);
        datagram.extend_from_slice(&CLUSTER.0.to_be_bytes());
        datagram.extend_from_slice(&tail);
        let mut opener = Opener::new(CLUSTER, RECEIVER);
        let result = opener.open(&keyring(), &datagram, anyone);
        prop_assert!(result.is_err());
    }

    #[test]
    fn arbitrary_authentic_frames_never_panic_and_stay_bounded(
        frames in vec(authentic_frame(), 0..64),
    ) {
        let keys = keyring();
        let mut opener = Opener::new(CLUSTER, RECEIVER);
        for (header, body) in &frames {
            let datagram = seal_frame(&keys.sending, header, body);
            let _ = opener.open(&keys, &datagram, anyone);
            let pending = opener.reassembly();
            prop_assert!(pending.pending_messages() <= 3 * crate::fragment::MAX_PENDING_PER_SENDER);
            prop_assert!(pending.pending_bytes() <= frames.len() * 64);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_message_decoder(bytes in vec(any::<u8>(), 0..1024)) {
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn every_message_survives_sealing_and_opening_at_any_mtu(
        message in message(),
        mtu in prop_oneof![256usize..=400, 256usize..=1500],
        rotate in any::<usize>(),
    ) {
        let keys = keyring();
        let body = message.encode();
        let mut sealer = Sealer::new(CLUSTER, 3, SENDER, Incarnation(1), mtu);
        let mut datagrams = sealer.seal(&keys, &body).expect("test messages fit 64 parts");
        prop_assert!(datagrams.iter().all(|d| d.len() <= mtu));
        let n = datagrams.len();
        datagrams.rotate_left(rotate % n);

        let mut opener = Opener::new(CLUSTER, RECEIVER);
        let opened = open_all(&mut opener, &keys, &datagrams);
        prop_assert_eq!(opened.len(), 1);
        prop_assert_eq!(opened[0].header.sender, SENDER);
        prop_assert_eq!(usize::from(opened[0].header.parts), n);
        prop_assert_eq!(Message::decode(&opened[0].body), Ok(message));
    }

    #[test]
    fn a_single_flipped_bit_is_never_accepted(
        body in vec(any::<u8>(), 0..2000),
        mtu in 256usize..=1500,
        which in any::<usize>(),
        bit in any::<usize>(),
    ) {
        let keys = keyring();
        let mut sealer = Sealer::new(CLUSTER, 3, SENDER, Incarnation(1), mtu);
        let mut datagrams = sealer.seal(&keys, &body).expect("2000 bytes fit");
        let target = which % datagrams.len();
        let flipped = &mut datagrams[target];
        let bit = bit % (flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);

        let mut opener = Opener::new(CLUSTER, RECEIVER);
        for (i, d) in datagrams.iter().enumerate() {
            let result = opener.open(&keys, d, anyone);
            if i == target {
                prop_assert!(result.is_err(), "flipped bit {} accepted: {:?}", bit, result);
            } else {
                prop_assert!(matches!(result, Ok(None)), "{:?}", result);
            }
        }
    }
}
