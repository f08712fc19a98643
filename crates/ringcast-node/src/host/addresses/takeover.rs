//! Claim 13 on the wire: a player's connection outlives the process that
//! served it.
//!
//! Moving a service address (`holder.rs`) brings a player's *next*
//! connection to a live node; the connection open when the holder died is
//! still the dead host's. A player that re-requests what it lacked (curl
//! `-C -`, hls.js, GStreamer) does not mind; one that does not (ffmpeg's HLS
//! reader skips the rest of a segment whose connection broke) loses frames.
//! So every response on a service address is recorded, before its first
//! byte, with the node that would hold the address if this one died
//! ([`service::successor`]): where the connection stands (its TCP
//! coordinates), the response head, the file range (see
//! [`ringcast_files::stream::InFlight`]). When that node takes the address
//! it rebuilds each recorded connection (`ringcast_tcp`) before the
//! address is its own, so the player's next segment finds a socket rather
//! than a reset; asks the player which byte it expects next (one duplicate
//! byte, answered at once); and continues the response from exactly there,
//! then serves the connection's further requests. A connection that cannot
//! be continued (its file is not here, the player asked for more than was
//! recorded) is reset at the right sequence number, so its player retries
//! at once instead of waiting on silence.
//!
//! Records travel as UDP datagrams to the successor's HTTP address (same
//! port, UDP), sealed with the cluster key (HMAC-SHA256) and dated; a
//! record older than [`MAX_AGE`] is ignored. Only the LAN plane takes
//! connections over: on one machine a dead process's sockets are in the
//! same kernel as the successor's and keep the connection's name.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use ringcast_config::addresses::ServiceAddresses;
use ringcast_files::httpd::Server;
use ringcast_files::stream::{Handover, InFlight, Resume};
use ringcast_proto::service::{self, Address};
use ringcast_proto::NodeId;
use ringcast_tcp::{rebuild, v4, AckWatch, Coordinates, Rebuilt, Window};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::host::shared::Shared;

/// How long a record is kept: longer than any response lasts on a
/// connection that is still being read.
pub const MAX_AGE: Duration = Duration::from_secs(30 * 60);

/// The most records kept (one per connection; about 500 bytes each).
const MAX_RECORDS: usize = 65_536;

/// How long a takeover waits for the players' answers, in all.
const ANSWER_WAIT: Duration = Duration::from_millis(600);

/// How many times an unanswered player is probed.
const PROBE_ROUNDS: u32 = 4;

/// How far ahead of the dead socket's last timestamp a rebuilt socket's
/// clock starts (the player drops segments with older ones).
const TS_AHEAD_MS: u32 = 1_000;

/// The first bytes of a record datagram, with its format's version.
const MAGIC: &[u8; 4] = b"RCT1";

/// The largest record datagram accepted.
const MAX_DATAGRAM: usize = 16 * 1024;

type HmacSha256 = Hmac<Sha256>;

/// A record as it travels: when it was sent, and what.
#[derive(Serialize, Deserialize)]
struct Envelope {
    sent_ms: u64,
    record: InFlight,
}

struct Kept {
    at: Instant,
    record: InFlight,
}

/// This node's side of takeovers: it records its responses with their
/// successors and keeps the records other nodes send it.
pub struct Takeover {
    me: NodeId,
    priority: Vec<NodeId>,
    addresses: ServiceAddresses,
    shared: Arc<Shared>,
    mounts: BTreeMap<u32, PathBuf>,
    keys: RwLock<Vec<[u8; 32]>>,
    socket: UdpSocket,
    kept: Mutex<BTreeMap<SocketAddrV4, BTreeMap<SocketAddrV4, Kept>>>,
    server: OnceLock<Server>,
    warned: AtomicBool,
}

impl std::fmt::Debug for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Takeover").field("me", &self.me).finish()
    }
}

impl Takeover {
    /// Takeovers for node `me`, receiving records on UDP at its HTTP
    /// address `http`.
    pub fn bind(
        me: NodeId,
        http: SocketAddr,
        priority: Vec<NodeId>,
        addresses: ServiceAddresses,
        shared: Arc<Shared>,
        mounts: BTreeMap<u32, PathBuf>,
        keys: Vec<[u8; 32]>,
    ) -> io::Result<Arc<Takeover>> {
        let socket = UdpSocket::bind(http)?;
        socket.set_nonblocking(true)?;
        Ok(Arc::new(Takeover {
            me,
            priority,
            addresses,
            shared,
            mounts,
            keys: RwLock::new(keys),
            socket,
            kept: Mutex::new(BTreeMap::new()),
            server: OnceLock::new(),
            warned: AtomicBool::new(false),
        }))
    }

    /// The server that continues rebuilt connections.
    pub fn set_server(&self, server: Server) {
        let _ = self.server.set(server);
    }

    /// The cluster keys records are sealed with (the first) and accepted
    /// under (any), as a key rotation stage has them.
    pub fn set_keys(&self, keys: Vec<[u8; 32]>) {
        if !keys.is_empty() {
            *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        }
    }

    /// Receives records until the task is aborted.
    pub async fn receive(self: Arc<Self>) {
        let socket = match self
            .socket
            .try_clone()
            .and_then(tokio::net::UdpSocket::from_std)
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("connections cannot be taken over here: {e}");
                return;
            }
        };
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            let Ok((n, _from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            if let Some(record) = self.open(&buf[..n]) {
                self.keep(record);
            }
        }
    }

    fn keys(&self) -> Vec<[u8; 32]> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The record of a datagram sealed under one of the keys and recent.
    fn open(&self, datagram: &[u8]) -> Option<InFlight> {
        open(&self.keys(), datagram, unix_ms())
    }

    fn keep(&self, record: InFlight) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = kept.values().map(BTreeMap::len).sum();
        if total >= MAX_RECORDS {
            let now = Instant::now();
            for conns in kept.values_mut() {
                conns.retain(|_, k| now.duration_since(k.at) < MAX_AGE);
            }
            if kept.values().map(BTreeMap::len).sum::<usize>() >= MAX_RECORDS {
                return;
            }
        }
        kept.entry(record.local).or_default().insert(
            record.client,
            Kept {
                at: Instant::now(),
                record,
            },
        );
    }

    /// Before `socket` becomes this node's: rebuilds every connection
    /// recorded on it, in repair mode, so the players' next segments find
    /// them. `None` when there is nothing to take over.
    pub fn prepare(&self, socket: SocketAddr) -> Option<Pending> {
        let local = v4(socket)?;
        let records = self
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&local)?;
        let watch = match AckWatch::open() {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("cannot take over the connections of {socket}: {e}");
                return None;
            }
        };
        let mut waiting = Vec::new();
        for (_, kept) in records {
            let age = kept.at.elapsed();
            if age >= MAX_AGE {
                continue;
            }
            let tsval = kept
                .record
                .at
                .tsval
                .wrapping_add(age.as_millis() as u32)
                .wrapping_add(TS_AHEAD_MS);
            match placeholder(local, &kept.record, tsval) {
                Ok(socket) => waiting.push(Waiting {
                    record: kept.record,
                    socket,
                    tsval,
                }),
                Err(e) => tracing::debug!(
                    "cannot rebuild the connection of {}: {e}",
                    kept.record.client
                ),
            }
        }
        (!waiting.is_empty()).then_some(Pending {
            local,
            watch,
            waiting,
        })
    }

    /// After the address is this node's: asks each player where it stands
    /// and continues, resets or forgets its connection.
    pub async fn finish(self: Arc<Self>, pending: Pending) {
        let local = pending.local;
        let mounts = self.mounts.clone();
        let settled = tokio::task::spawn_blocking(move || pending.settle(&mounts)).await;
        let Ok(settled) = settled else {
            return;
        };
        let metrics = &self.shared.metrics;
        for _ in 0..settled.reset {
            metrics.count_takeover("reset");
        }
        for _ in 0..settled.ended {
            metrics.count_takeover("ended");
        }
        let continued = settled.resumed.len();
        for _ in 0..continued {
            metrics.count_takeover("continued");
        }
        if let Some(server) = self.server.get() {
            for resume in settled.resumed {
                let server = server.clone();
                tokio::spawn(async move { server.resume(resume).await });
            }
        }
        self.shared.publish_local(
            "connections_taken_over",
            Some(self.me),
            format!(
                "took over the connections of {local}: {continued} continued, {} reset, {} ended",
                settled.reset, settled.ended
            ),
        );
    }

    fn address_of(&self, local: SocketAddrV4) -> Option<Address> {
        self.addresses
            .nodes
            .iter()
            .find(|(_, a)| v4(**a) == Some(local))
            .map(|(n, _)| Address::Node(*n))
    }
}

impl Handover for Takeover {
    fn covers(&self, local: SocketAddr) -> bool {
        v4(local).is_some_and(|l| self.address_of(l).is_some())
    }

    fn started(&self, mut record: InFlight) {
        let Some(address) = self.address_of(record.local) else {
            return;
        };
        let to = {
            let snap = self
                .shared
                .snapshot
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let Some(map) = snap.map.as_ref() else {
                return;
            };
            let tables = snap.tables.as_ref();
            let Some(next) = service::successor(map, tables, &self.priority, address, self.me)
            else {
                return;
            };
            let Some(member) = map.members.iter().find(|m| m.id == next) else {
                return;
            };
            member.addrs.http
        };
        let Some(relative) = self
            .mounts
            .get(&record.disk)
            .and_then(|m| record.path.strip_prefix(m).ok())
        else {
            return;
        };
        record.path = relative.to_path_buf();
        let envelope = Envelope {
            sent_ms: unix_ms(),
            record,
        };
        let sealed = self.keys().first().and_then(|key| seal(key, &envelope));
        if let Some(datagram) = sealed {
            if let Err(e) = self.socket.send_to(&datagram, to) {
                tracing::debug!("a takeover record to {to} was not sent: {e}");
            }
        }
    }

    fn unavailable(&self, error: &io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "connections on service addresses cannot be recorded for takeover \
                 (reading a connection's TCP state needs CAP_NET_ADMIN): {error}"
            );
        }
    }
}

/// A connection rebuilt in repair mode, waiting for its player's answer.
struct Waiting {
    record: InFlight,
    socket: Rebuilt,
    tsval: u32,
}

/// The connections of one address, rebuilt before the address is taken.
pub struct Pending {
    local: SocketAddrV4,
    watch: AckWatch,
    waiting: Vec<Waiting>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("local", &self.local)
            .field("connections", &self.waiting.len())
            .finish()
    }
}

struct Settled {
    resumed: Vec<Resume>,
    reset: usize,
    ended: usize,
}

/// What a takeover does with one connection.
enum Decision {
    Continue(Resume),
    Reset,
    Ended,
}

impl Pending {
    /// Probes every player and decides each connection (on a blocking
    /// thread: the watch reads a raw socket). A probe or its answer may be
    /// lost (the player's neighbour table may still name the dead host for
    /// a moment): an unanswered connection is rebuilt afresh and probed
    /// again, [`PROBE_ROUNDS`] times in all within [`ANSWER_WAIT`].
    fn settle(mut self, mounts: &BTreeMap<u32, PathBuf>) -> Settled {
        let mut settled = Settled {
            resumed: Vec::new(),
            reset: 0,
            ended: 0,
        };
        let local = self.local;
        let mut waiting: BTreeMap<SocketAddrV4, Waiting> = self
            .waiting
            .drain(..)
            .map(|w| (w.record.client, w))
            .collect();
        let round = ANSWER_WAIT / PROBE_ROUNDS;
        for n in 0..PROBE_ROUNDS {
            if waiting.is_empty() {
                break;
            }
            if n > 0 {
                // Fresh sockets at the recorded start: the last probe moved
                // the old ones one byte on.
                let stale: Vec<SocketAddrV4> = waiting.keys().copied().collect();
                for client in stale {
                    let Some(w) = waiting.remove(&client) else {
                        continue;
                    };
                    w.socket.forget();
                    match placeholder(local, &w.record, w.tsval) {
                        Ok(socket) => {
                            waiting.insert(client, Waiting { socket, ..w });
                        }
                        Err(_) => settled.ended += 1,
                    }
                }
            }
            let mut probed = BTreeMap::new();
            for (client, w) in std::mem::take(&mut waiting) {
                let first = w.record.head.as_bytes().first().copied().unwrap_or(b'H');
                match w.socket.probe(first) {
                    Ok(()) => {
                        probed.insert(client, w);
                    }
                    Err(e) => {
                        tracing::debug!("cannot probe {client}: {e}");
                        w.socket.forget();
                        settled.ended += 1;
                    }
                }
            }
            waiting = probed;
            let deadline = Instant::now() + round;
            while !waiting.is_empty() {
                let answer = self.watch.next(deadline, |s| {
                    s.to == local && waiting.contains_key(&s.from) && (s.ack.is_some() || s.reset)
                });
                let Ok(Some(segment)) = answer else {
                    break;
                };
                let Some(w) = waiting.remove(&segment.from) else {
                    continue;
                };
                w.socket.forget();
                match segment.ack {
                    Some(ack) if !segment.reset => {
                        let (tsval, window) = (w.tsval, segment.window);
                        match continue_at(w.record, tsval, ack, segment.seq, window, mounts) {
                            Decision::Continue(resume) => settled.resumed.push(resume),
                            Decision::Reset => settled.reset += 1,
                            Decision::Ended => settled.ended += 1,
                        }
                    }
                    _ => settled.ended += 1,
                }
            }
        }
        for (_, w) in waiting {
            w.socket.forget();
            settled.ended += 1;
        }
        settled
    }
}

/// A connection rebuilt at its recorded start, to ask its player where it
/// stands (the window is a guess until the player answers).
fn placeholder(local: SocketAddrV4, record: &InFlight, tsval: u32) -> io::Result<Rebuilt> {
    let window = Window { send: 65_535 };
    rebuild(local, record.client, &record.at, tsval, &window)
}

/// Rebuilds a connection at the byte its player expects (`ack`) and says
/// how to continue it; resets it when it cannot be continued here, or had
/// ended (its player acknowledged the dead end's FIN, one past the
/// response).
fn continue_at(
    mut record: InFlight,
    tsval: u32,
    ack: u32,
    seq: u32,
    window: u16,
    mounts: &BTreeMap<u32, PathBuf>,
) -> Decision {
    let shift = record.at.options.wscale.map_or(0, |(snd, _)| snd);
    let at = Coordinates {
        send_seq: ack,
        recv_seq: seq,
        tsval,
        options: record.at.options,
    };
    let window = Window {
        send: u32::from(window) << shift,
    };
    let rebuilt = match rebuild(record.local, record.client, &at, tsval, &window) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("cannot rebuild the connection of {}: {e}", record.client);
            return Decision::Reset;
        }
    };
    let offset = u64::from(ack.wrapping_sub(record.at.send_seq));
    let unrecorded = seq.wrapping_sub(record.at.recv_seq);
    if offset == record.len() + 1 && unrecorded <= 1 {
        let _ = rebuilt.reset();
        return Decision::Ended;
    }
    // The player asked for nothing unrecorded, and stands within the response.
    let within = unrecorded == 0 && offset <= record.len();
    let path = local_path(mounts, record.disk, &record.path);
    let (true, Some(path)) = (within, path.clone()) else {
        tracing::info!(
            "cannot continue the connection of {} (at byte {offset} of {}, {unrecorded} \
             bytes unrecorded, file here: {}): reset",
            record.client,
            record.len(),
            path.is_some(),
        );
        let _ = rebuilt.reset();
        return Decision::Reset;
    };
    record.path = path;
    match rebuilt.live() {
        Ok(stream) => Decision::Continue(Resume {
            stream,
            response: record,
            offset,
            at,
        }),
        Err(e) => {
            tracing::warn!("cannot continue the connection of {}: {e}", record.client);
            Decision::Reset
        }
    }
}

/// Where a title recorded as `relative` on `disk` is on this node: on the
/// same disk if this node reaches it, else on any disk of this node that
/// has it.
fn local_path(mounts: &BTreeMap<u32, PathBuf>, disk: u32, relative: &Path) -> Option<PathBuf> {
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    if let Some(mount) = mounts.get(&disk) {
        return Some(mount.join(relative));
    }
    mounts
        .values()
        .map(|m| m.join(relative))
        .find(|p| p.is_file())
}

/// A record as a datagram: the format's mark, an HMAC-SHA256 tag under
/// `key`, the envelope in JSON.
fn seal(key: &[u8; 32], envelope: &Envelope) -> Option<Vec<u8>> {
    let body = serde_json::to_vec(envelope).ok()?;
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(&body);
    let tag = mac.finalize().into_bytes();
    let mut out = Vec::with_capacity(MAGIC.len() + tag.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&body);
    Some(out)
}

/// The record of `datagram` if it is one, sealed under one of `keys`, and
/// dated within [`MAX_AGE`] of `now_ms`; anything else is nothing.
fn open(keys: &[[u8; 32]], datagram: &[u8], now_ms: u64) -> Option<InFlight> {
    if datagram.len() > MAX_DATAGRAM {
        return None;
    }
    let rest = datagram.strip_prefix(MAGIC.as_slice())?;
    let (tag, body) = (rest.get(..32)?, rest.get(32..)?);
    let sealed = keys.iter().any(|key| {
        HmacSha256::new_from_slice(key).is_ok_and(|mut mac| {
            mac.update(body);
            mac.verify_slice(tag).is_ok()
        })
    });
    if !sealed {
        return None;
    }
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    let age = now_ms.abs_diff(envelope.sent_ms);
    (age < MAX_AGE.as_millis() as u64).then_some(envelope.record)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcast_tcp::Options;

    fn record() -> InFlight {
        InFlight {
            client: "10.0.0.50:40000".parse().unwrap(),
            local: "10.0.0.103:80".parse().unwrap(),
            at: Coordinates {
                send_seq: 7,
                recv_seq: 9,
                tsval: 11,
                options: Options {
                    mss: 1448,
                    wscale: Some((7, 7)),
                    sack: true,
                    timestamps: true,
                },
            },
            head: "HTTP/1.1 200 OK\r\n\r\n".into(),
            disk: 3,
            path: "show/seg_001.ts".into(),
            body: 0..1000,
            keep_alive: true,
        }
    }

    #[test]
    fn a_record_opens_only_under_a_cluster_key_intact_and_recent() {
        let (key, other) = ([1u8; 32], [2u8; 32]);
        let now = 1_000_000_000;
        let sealed = seal(
            &key,
            &Envelope {
                sent_ms: now,
                record: record(),
            },
        )
        .unwrap();
        assert_eq!(open(&[other, key], &sealed, now + 5), Some(record()));
        // Another cluster's key, a flipped byte, a cut, garbage, an old date.
        assert_eq!(open(&[other], &sealed, now), None);
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(open(&[key], &flipped, now), None);
        assert_eq!(open(&[key], &sealed[..40], now), None);
        assert_eq!(open(&[key], b"RCT1", now), None);
        assert_eq!(open(&[key], &[0u8; 100], now), None);
        let late = now + MAX_AGE.as_millis() as u64;
        assert_eq!(open(&[key], &sealed, late), None);
        let mut huge = sealed.clone();
        huge.resize(MAX_DATAGRAM + 1, b' ');
        assert_eq!(open(&[key], &huge, now), None);
    }

    #[test]
    fn a_recorded_path_is_found_only_below_a_disk_of_this_node() {
        let dir = tempfile::tempdir().unwrap();
        let (d1, d2) = (dir.path().join("d1"), dir.path().join("d2"));
        std::fs::create_dir_all(d2.join("show")).unwrap();
        std::fs::write(d2.join("show/seg.ts"), b"x").unwrap();
        let mounts: BTreeMap<u32, PathBuf> = [(1, d1.clone()), (2, d2.clone())].into();
        let rel = Path::new("show/seg.ts");
        // The same disk when this node reaches it, else a disk that has it.
        assert_eq!(local_path(&mounts, 1, rel), Some(d1.join(rel)));
        assert_eq!(local_path(&mounts, 9, rel), Some(d2.join(rel)));
        assert_eq!(local_path(&mounts, 9, Path::new("show/none.ts")), None);
        for hostile in [
            "/etc/passwd",
            "../d2/show/seg.ts",
            "show/../../x",
            "./show/seg.ts",
        ] {
            assert_eq!(
                local_path(&mounts, 1, Path::new(hostile)),
                None,
                "{hostile}"
            );
        }
    }
}
