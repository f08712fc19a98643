//! Writes the committed seed corpus, `fuzz/corpus/<target>/`:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus
//! ```
//!
//! Deterministic: running it again rewrites the same files. Binary seeds are
//! real frames and message bodies (captured from a small healthy cluster, or
//! sealed here); text seeds are written out below; the cluster file seeds
//! start from the annotated example of `docs/cluster-file.md`. The targets
//! whose input is decoded by `arbitrary` (`node_datagram`, `model`) get fixed
//! pseudo-random bytes of a few sizes: any bytes are a valid input there.

use std::fs;
use std::path::{Path, PathBuf};

use ringcast_fuzz::structured::{Addrs, FMap, FMember, FMessage, Id, Num};
use ringcast_fuzz::{keyring, pool, CLUSTER, KEY_1};
use ringcast_proto::frame::Sealer;
use ringcast_proto::message::MessageKind;
use ringcast_proto::token::StreamToken;
use ringcast_proto::{DiskId, Incarnation, NodeId};

fn write(root: &Path, target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    let dir = root.join(target);
    fs::create_dir_all(&dir).expect("corpus folder");
    fs::write(dir.join(name), bytes).expect("seed file");
}

/// xorshift64*: fixed pseudo-random bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn length_prefixed(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        out.extend_from_slice(&(f.len() as u16).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

fn docs_example(manifest: &Path) -> String {
    let doc = fs::read_to_string(manifest.join("../docs/cluster-file.md"))
        .expect("docs/cluster-file.md");
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("its end");
    doc[start..end].to_string()
}

fn main() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("corpus"));
    let keys = keyring();
    let captured = pool::frames();
    let first_of = |kind: MessageKind| captured.iter().find(|c| c.kind == kind);

    // frame_open: single frames, real traffic, and multi-part sequences.
    let mut sealer = Sealer::new(CLUSTER, 1, NodeId(1), Incarnation(1), 1400);
    write(root.as_path(), "frame_open", "hello", &sealer.seal(&keys, b"hello").unwrap()[0]);
    write(root.as_path(), "frame_open", "empty", &sealer.seal(&keys, b"").unwrap()[0]);
    for kind in MessageKind::ALL {
        if let Some(c) = first_of(kind) {
            write(root.as_path(), "frame_open", &format!("captured-{}", kind.name()), &c.frame);
        }
    }
    let body: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
    let mut small = Sealer::new(CLUSTER, 1, NodeId(2), Incarnation(3), 140);
    let mut parts = small.seal(&keys, &body).unwrap();
    write(root.as_path(), "frame_open", "parts-in-order", length_prefixed(&parts));
    parts.rotate_left(3);
    write(root.as_path(), "frame_open", "parts-rotated", length_prefixed(&parts));
    let mut forged = sealer.seal(&keys, b"forged").unwrap().remove(0);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    write(root.as_path(), "frame_open", "bad-tag", forged);

    // message_decode: real bodies of every kind, and a hostile one.
    for kind in MessageKind::ALL {
        for (i, c) in captured.iter().filter(|c| c.kind == kind).take(2).enumerate() {
            write(root.as_path(), "message_decode", &format!("{}-{i}", kind.name()), &c.body);
        }
    }
    let hostile = FMessage::Notify {
        addrs: Addrs::Usual,
        map: FMap {
            supervisor: Id(3),
            epoch: Num::Max,
            rank: Some(9),
            version: Num::Small(1),
            members: vec![
                FMember { id: Id(4), incarnation: Num::Small(1), status: 0, addrs: Addrs::Usual },
                FMember { id: Id(1), incarnation: Num::Any(u64::MAX - 1), status: 1, addrs: Addrs::Other([0, 0, 0, 0], 0) },
            ],
            tidy: false,
            ring: Some(vec![Id(7), Id(3), Id(3)]),
            servers: 2,
        },
        tables: vec![],
    };
    write(root.as_path(), "message_decode", "hostile-notify", hostile.build().encode());

    // node_datagram and model: arbitrary-decoded; fixed noise of a few sizes.
    for (i, len) in [16usize, 64, 256, 1024, 4096].into_iter().enumerate() {
        write(root.as_path(), "node_datagram", &format!("noise-{len}"), noise(11 + i as u64, len));
        write(root.as_path(), "model", &format!("noise-{len}"), noise(101 + i as u64, len));
    }

    // cluster_config: the documented example and variants.
    let example = docs_example(&manifest);
    write(root.as_path(), "cluster_config", "docs-example.toml", &example);
    let unicast = example.replace("transport = \"multicast\"", "transport = \"unicast\"");
    write(root.as_path(), "cluster_config", "unicast.toml", &unicast);
    let rotate = example
        .replace("\"cluster.key\"", "\"rotate.key\"")
        .replace("[timing]", "[timing]\ndisk_check_interval_ms = 1000\ndisk_quorum = 2");
    write(root.as_path(), "cluster_config", "rotate.toml", &rotate);
    let own_key = example.replace("\"cluster.key\"", "\"fuzz.key\"");
    write(
        root.as_path(),
        "cluster_config",
        "own-key.toml",
        format!("{own_key}\0# key ids\n3:{}\n4:{}\n", "ab".repeat(32), "cd".repeat(32)),
    );
    let broken = example
        .replace("priority = [1, 2, 3]", "priority = [1, 2, 2, 9]")
        .replace("ring = \"127.0.0.1:7502\"", "ring = \"127.0.0.1:7501\"")
        .replace("notification_time_ms = 60", "notification_time_ms = 30")
        .replace("mount = \"/srv/d1\"", "mount = \"srv/d1\"");
    write(root.as_path(), "cluster_config", "many-problems.toml", &broken);
    write(
        root.as_path(),
        "cluster_config",
        "minimal.toml",
        "[cluster]\nid = 9\nname = \"m\"\nconfig_version = 1\ntransport = \"unicast\"\nkey_file = \"cluster.key\"\npriority = [7]\n\n[[node]]\nid = 7\nring = \"[::1]:7501\"\nhttp = \"[::1]:8501\"\nmax_streams = 1\nmax_bytes_per_s = 1\n",
    );

    // range_header: "<len>\n<value>".
    for (name, seed) in [
        ("simple", "1000\nbytes=0-499"),
        ("suffix", "1000\nbytes=-200"),
        ("open", "1000\nbytes=900-"),
        ("multi", "10000\nbytes=0-99, 200-299 ,50-250,-10,9999-"),
        ("unsatisfiable", "100\nbytes=100-200"),
        ("empty-file", "0\nbytes=-1"),
        ("huge", "18446744073709551615\nbytes=18446744073709551614-99999999999999999999999"),
        ("case-ows", "5\n \tBYTES = 0 - 1 ,, 3-\t"),
        ("other-unit", "5\nitems=0-1"),
    ] {
        write(root.as_path(), "range_header", name, seed);
    }

    // stream_token: "<token text>\n<arbitrary bytes>".
    let token = StreamToken {
        title: "movie/index.m3u8".into(),
        disk: DiskId(3),
        node: NodeId(2),
        stream: 77,
        expires: 1_000,
    };
    let text = token.sign(&KEY_1);
    write(root.as_path(), "stream_token", "valid", format!("{text}\n"));
    let mut with_plan = format!("{text}\n").into_bytes();
    with_plan.extend(noise(7, 96));
    write(root.as_path(), "stream_token", "valid-plan", with_plan);
    write(root.as_path(), "stream_token", "expired", format!("{text}\n\u{ff}\u{ff}\u{ff}\u{ff}"));
    write(root.as_path(), "stream_token", "malformed", "zz.00\n");
    write(root.as_path(), "stream_token", "noise", noise(3, 200));

    // title.
    for (name, seed) in [
        ("folder-file", "movie/index.m3u8"),
        ("file", "a.mp4"),
        ("dots-inside", "a..b/c.ts"),
        ("parent", "../etc/passwd"),
        ("absolute", "/etc/passwd"),
        ("deep", "a/b/c"),
        ("hidden", ".hidden"),
        ("backslash", "a\\..\\b"),
        ("percent", "a%2f..%2fb"),
        ("long", "x".repeat(129).as_str()),
    ] {
        write(root.as_path(), "title", name, seed);
    }

    // http_head.
    for (name, seed) in [
        ("get-range", "GET /stream/movie/index.m3u8?token=ab.cd HTTP/1.1\r\nHost: 127.0.0.1:8501\r\nRange: bytes=0-99,200-\r\nConnection: keep-alive\r\n\r\n"),
        ("head-10", "HEAD /stream/a.mp4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
        ("absolute-form", "GET http://example.invalid/a.mp4?x HTTP/1.1\r\n\r\n"),
        ("options-star", "OPTIONS * HTTP/1.1\r\n\r\n"),
        ("partial", "GET /a.mp4 HTTP/1.1\r\nRange: by"),
        ("bare-lf", "GET / HTTP/1.1\nA:  b \n\n"),
    ] {
        write(root.as_path(), "http_head", name, seed);
    }
    println!("seed corpus written to {}", root.display());
}
