//! The node's tokio loop: sockets and timers in, the protocol core in the
//! middle (through [`ringcast_proto::pump`]), datagrams and events out. No
//! protocol decision is taken here.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringcast_config::settings::{BusMode, NodeSettings};
use ringcast_proto::event::{Event, LocalEvent};
use ringcast_proto::pump::{self, Input, Outbox};
use ringcast_proto::{
    Incarnation, Level, Machine, MachineConfig, MachineEvent, NodeId, Reload, Role,
};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use super::events::{local_event, map_event, unix_ms};
use super::life::LifeFile;
use super::limit::SenderLimits;
use super::shared::{snapshot_of, Rekey, Shared, Signal};
use super::transport::{Transport, MAX_DATAGRAM};
/// The most datagrams of senders over their budget dropped in one
/// go before the loop looks at its timers again.
const DRAIN_BATCH: usize = 256;

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The configuration does not pass the protocol's checks.
    #[error("invalid configuration: {0}")]
    Config(#[from] ringcast_proto::ConfigError),
    /// A socket could not be opened.
    #[error("cannot open the {what} socket on {addr}: {source}")]
    Bind {
        /// Which socket.
        what: &'static str,
        /// Its address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The sockets of one seat the machine may hold in an ancestor cluster,
/// open while it holds the seat.
#[derive(Debug)]
struct SeatIo {
    settings: NodeSettings,
    transport: Option<Arc<Transport>>,
    senders: SenderLimits,
    shared: Option<Arc<Shared>>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl SeatIo {
    fn close(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        self.transport = None;
        self.shared = None;
    }
}

impl Drop for SeatIo {
    fn drop(&mut self) {
        self.close();
    }
}

/// A datagram a seat's socket received: (level, bytes, sender).
type SeatDatagram = (Level, Vec<u8>, std::net::SocketAddr);

/// A machine ready to run: its leaf sockets are bound.
#[derive(Debug)]
pub struct Runtime {
    machine: Machine,
    transport: Arc<Transport>,
    shared: Arc<Shared>,
    control: mpsc::Receiver<LocalEvent>,
    rekey: watch::Receiver<Option<Rekey>>,
    senders: SenderLimits,
    /// Claim 5: one per ancestor cluster, nearest parent first (level 1).
    seats: Vec<SeatIo>,
    seat_tx: mpsc::Sender<SeatDatagram>,
    seat_rx: mpsc::Receiver<SeatDatagram>,
    life: Option<LifeFile>,
    /// Test-only transport faults (`RINGCAST_TEST_FAULTS`).
    faults: Option<super::faults::Faults>,
}

fn sender_limits(settings: &NodeSettings, now: Instant) -> SenderLimits {
    let bus = &settings.limits.bus;
    let ring = settings.proto.addrs.ring;
    let mut senders = SenderLimits::new(bus.datagrams, bus.refused, bus.max_senders, ring, now);
    if let BusMode::Unicast { peers } = &settings.bus {
        senders.set_peers(peers.iter().map(|(_, addr)| *addr));
    }
    senders
}

fn bind_transport(settings: &NodeSettings) -> Result<Transport, NodeError> {
    let ring = settings.proto.addrs.ring;
    Transport::bind(ring, &settings.bus, settings.proto.node).map_err(|source| NodeError::Bind {
        what: "bus and ring",
        addr: format!("{ring} ({:?})", settings.bus),
        source,
    })
}

impl Runtime {
    /// Builds the protocol machine and binds its leaf sockets. `seats` are
    /// the settings of its seat in each ancestor cluster, nearest parent
    /// first (claim 5): their sockets open while the machine holds the seat.
    pub fn bind(
        settings: NodeSettings,
        seats: Vec<NodeSettings>,
        life: Option<LifeFile>,
    ) -> Result<Runtime, NodeError> {
        let now = Instant::now();
        // A new life at every start, above every earlier one.
        let incarnation = life
            .as_ref()
            .map_or(Incarnation(unix_ms()), |f| f.next(unix_ms()));
        if let Some(f) = &life {
            if let Err(e) = f.record(incarnation) {
                tracing::warn!(
                    "cannot record the node's life in {}: {e}",
                    f.path().display()
                );
            }
        }
        let mut seed = [0u8; 8];
        getrandom::getrandom(&mut seed).unwrap_or_default();
        let cfg = MachineConfig {
            leaf: settings.proto.clone(),
            seats: seats.iter().map(|s| s.proto.clone()).collect(),
        };
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let machine = Machine::new(
            cfg,
            settings.keyring(),
            incarnation,
            u64::from_le_bytes(seed),
            now,
            wall,
        )?;
        let transport = Arc::new(bind_transport(&settings)?);
        let senders = sender_limits(&settings, now);
        let (shared, control, rekey) = Shared::new(&settings, machine.leaf(), now);
        let seats = seats
            .into_iter()
            .map(|settings| SeatIo {
                senders: sender_limits(&settings, now),
                settings,
                transport: None,
                shared: None,
                reader: None,
            })
            .collect();
        let (seat_tx, seat_rx) = mpsc::channel(1024);
        Ok(Runtime {
            machine,
            transport,
            shared,
            control,
            rekey,
            senders,
            seats,
            seat_tx,
            seat_rx,
            life,
            faults: super::faults::Faults::from_env(),
        })
    }

    /// The state shared with the HTTP API.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Runs until the leaf node has left the cluster.
    pub async fn run(mut self) {
        enum Wake {
            Datagram(usize, std::net::SocketAddr),
            Seat(SeatDatagram),
            Timeout,
            Local(LocalEvent),
            Rekey,
            Nothing,
        }
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut out = Outbox::default();
        let mut next = pump::drain(&mut self.machine, &mut out);
        self.publish(&mut out).await;
        let mut watchdog = super::systemd::Watchdog::from_env(Instant::now());
        loop {
            // The watchdog is pinged here, in the loop that feeds the
            // protocol, so a loop that stalls stops the pings.
            if let Some(w) = watchdog.as_mut() {
                w.tick(Instant::now());
            }
            let wake_at = match (next, watchdog.as_ref()) {
                (Some(at), Some(w)) => Some(at.min(w.due())),
                (at, w) => at.or(w.map(super::systemd::Watchdog::due)),
            };
            let sleep = wake_at.map_or(Duration::from_secs(3600), |at| {
                at.saturating_duration_since(Instant::now())
            });
            let wake = tokio::select! {
                r = self.transport.recv(&mut buf) => match r {
                    Ok((n, from, _)) => Wake::Datagram(n, from),
                    Err(e) => {
                        tracing::debug!("receive failed: {e}");
                        self.shared.io.recv_errors.fetch_add(1, Ordering::Relaxed);
                        Wake::Nothing
                    }
                },
                Some(d) = self.seat_rx.recv() => Wake::Seat(d),
                _ = tokio::time::sleep(sleep) => Wake::Timeout,
                ev = self.control.recv() => ev.map_or(Wake::Nothing, Wake::Local),
                r = self.rekey.changed(), if self.rekey.has_changed().is_ok() => {
                    if r.is_ok() { Wake::Rekey } else { Wake::Nothing }
                }
            };
            let now = Instant::now();
            next = match wake {
                Wake::Datagram(n, from) => {
                    if let Some(faults) = self.faults.as_mut() {
                        if faults.drops(now, from) {
                            continue;
                        }
                    }
                    // A sender over its budget is dropped unread, without
                    // touching the protocol or the snapshot, and so is every
                    // such datagram already waiting behind it.
                    let Some((n, sender)) = self.admit(now, n, from, &mut buf) else {
                        continue;
                    };
                    let input = Input::Datagram {
                        level: 0,
                        bytes: &buf[..n],
                    };
                    let after = pump::pump(&mut self.machine, now, input, &mut out);
                    if out
                        .events
                        .iter()
                        .any(|e| matches!(e, MachineEvent::Rejected { .. }))
                    {
                        self.senders.refused(now, sender);
                        if out.transmits.is_empty()
                            && out
                                .events
                                .iter()
                                .all(|e| matches!(e, MachineEvent::Rejected { .. }))
                        {
                            // Nothing changed but a counter: the snapshot
                            // catches up at the next timer.
                            out.events.clear();
                            next = after;
                            continue;
                        }
                    }
                    after
                }
                Wake::Seat((level, bytes, from)) => {
                    if let Some(faults) = self.faults.as_mut() {
                        if faults.drops(now, from) {
                            continue;
                        }
                    }
                    let Some(seat) = self.seats.get_mut(level - 1) else {
                        continue;
                    };
                    let Some(sender) = seat.senders.admit(now, from) else {
                        self.shared.io.rate_limited.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let input = Input::Datagram {
                        level,
                        bytes: &bytes,
                    };
                    let after = pump::pump(&mut self.machine, now, input, &mut out);
                    if out
                        .events
                        .iter()
                        .any(|e| matches!(e, MachineEvent::Rejected { .. }))
                    {
                        seat.senders.refused(now, sender);
                    }
                    after
                }
                Wake::Timeout => pump::pump(&mut self.machine, now, Input::Timeout, &mut out),
                Wake::Local(ev) => pump::pump(&mut self.machine, now, Input::Local(ev), &mut out),
                Wake::Rekey => {
                    let rekey = self.rekey.borrow_and_update().clone();
                    match rekey {
                        Some(r) => {
                            let before = self.machine.keyring().key_ids();
                            tracing::info!(
                                "keys {:?} -> {:?} (the first seals), configuration version {}",
                                before,
                                r.keyring.key_ids(),
                                r.config_version
                            );
                            if let Some(p) = &r.priority {
                                tracing::info!("priority list now {p:?}");
                            }
                            let reload = Reload {
                                keyring: r.keyring,
                                config_version: r.config_version,
                                priority: r.priority,
                                capacity: r.capacity,
                            };
                            let input = Input::Reload(Box::new(reload));
                            pump::pump(&mut self.machine, now, input, &mut out)
                        }
                        None => self.machine.poll_timeout(),
                    }
                }
                Wake::Nothing => self.machine.poll_timeout(),
            };
            next = self.publish(&mut out).await.or(next);
            if self.machine.leaf().role() == Role::Left {
                return;
            }
        }
    }

    /// Charges the datagram of `n` bytes from `from` (in `buf`) to its
    /// sender. Returns it if it may be read; else drops it, and drains and
    /// drops the datagrams already waiting while their senders are over
    /// budget too (at most [`DRAIN_BATCH`], so timers are not kept waiting),
    /// returning the first one that may be read, if any.
    fn admit(
        &mut self,
        now: Instant,
        mut n: usize,
        mut from: std::net::SocketAddr,
        buf: &mut [u8],
    ) -> Option<(usize, super::limit::Sender)> {
        for i in 1.. {
            if let Some(sender) = self.senders.admit(now, from) {
                return Some((n, sender));
            }
            self.shared.io.rate_limited.fetch_add(1, Ordering::Relaxed);
            if i == DRAIN_BATCH {
                break;
            }
            match self.transport.try_recv(buf, i % 2 == 1) {
                Ok(Some((next, next_from, _))) => (n, from) = (next, next_from),
                Ok(None) | Err(_) => break,
            }
        }
        None
    }

    /// Claim 5: opens the sockets of the seat at `level` and starts reading
    /// them; on failure the machine is told, and takes the seat again later.
    fn open_seat(&mut self, now: Instant, level: Level, out: &mut Outbox) -> Option<Instant> {
        let seat = self.seats.get_mut(level - 1)?;
        let node = self.machine.node(level)?;
        match bind_transport(&seat.settings) {
            Ok(t) => {
                let t = Arc::new(t);
                let (shared, _, _) = Shared::new(&seat.settings, node, now);
                tracing::info!(
                    "took the seat of {} in cluster {}",
                    shared.node,
                    shared.cluster_name
                );
                seat.senders = sender_limits(&seat.settings, now);
                let reader = t.clone();
                let tx = self.seat_tx.clone();
                seat.reader = Some(tokio::spawn(async move {
                    let mut buf = vec![0u8; MAX_DATAGRAM];
                    loop {
                        match reader.recv(&mut buf).await {
                            Ok((n, from, _)) => {
                                if tx.send((level, buf[..n].to_vec(), from)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::debug!("seat receive failed: {e}"),
                        }
                    }
                }));
                seat.transport = Some(t);
                seat.shared = Some(shared);
                None
            }
            Err(e) => {
                tracing::warn!(
                    "cannot take the seat of {} in cluster {}: {e}",
                    seat.settings.proto.node,
                    seat.settings.cluster_name
                );
                let input = Input::SeatUnavailable { level };
                pump::pump(&mut self.machine, now, input, out)
            }
        }
    }

    /// Acts on the machine's outputs: opens and closes seats' sockets,
    /// publishes events and signals, sends datagrams, refreshes snapshots.
    /// Returns a new next timeout if acting on them pumped the machine again.
    async fn publish(&mut self, out: &mut Outbox) -> Option<Instant> {
        let now = Instant::now();
        let mut next = None;
        let mut i = 0;
        while i < out.events.len() {
            let e = out.events[i].clone();
            i += 1;
            match e {
                MachineEvent::SeatTaken { level, .. } => {
                    if let Some(t) = self.open_seat(now, level, out) {
                        next = Some(t);
                    }
                }
                MachineEvent::SeatReleased { level, seat } => {
                    if let Some(io) = self.seats.get_mut(level - 1) {
                        if io.shared.is_some() {
                            tracing::info!(
                                "released the seat of {seat} in cluster {}",
                                io.settings.cluster_name
                            );
                        }
                        io.close();
                    }
                }
                MachineEvent::Node { level, event } => {
                    if let (Event::Refuted { incarnation }, 0, Some(f)) =
                        (&event, level, &self.life)
                    {
                        if let Err(err) = f.record(*incarnation) {
                            tracing::warn!(
                                "cannot record the node's life in {}: {err}",
                                f.path().display()
                            );
                        }
                    }
                    let (observer, cluster) = self.observer(level);
                    let mut e = local_event(observer, &event);
                    e.cluster = cluster;
                    self.shared.publish(e);
                }
                MachineEvent::Map { level, change } => {
                    let (observer, cluster) = self.observer(level);
                    let mut e = map_event(observer, &change);
                    e.cluster = cluster;
                    self.shared.publish(e);
                    // Members are limited each on its own ring address.
                    if let Some(map) = self.machine.node(level).and_then(|n| n.map()) {
                        let peers = map.members.iter().map(|m| m.addrs.ring);
                        match level {
                            0 => self.senders.set_peers(peers),
                            l => {
                                if let Some(seat) = self.seats.get_mut(l - 1) {
                                    seat.senders.set_peers(peers);
                                }
                            }
                        }
                    }
                }
                MachineEvent::Reassign { what, .. } => {
                    let _ = self.shared.signals.send(Signal::Reassign(what));
                }
                MachineEvent::ConfigOutdated { version } => {
                    let outdated = Event::ConfigOutdated { version };
                    self.shared
                        .publish(local_event(self.shared.node, &outdated));
                    let _ = self.shared.signals.send(Signal::ConfigOutdated(version));
                }
                // Counted in the node's statistics, and charged to the
                // sender by the loop; not news for the event stream.
                MachineEvent::Rejected { .. } => {}
            }
        }
        out.events.clear();
        for t in out.transmits.drain(..) {
            let transport = match t.level {
                0 => Some(&self.transport),
                l => self.seats.get(l - 1).and_then(|s| s.transport.as_ref()),
            };
            // A seat released since the datagram was made sends nothing.
            let Some(transport) = transport else { continue };
            if let Err(e) = transport.send(&t.transmit).await {
                tracing::debug!("send to {:?} failed: {e}", t.transmit.destination);
                self.shared.io.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        *self
            .shared
            .snapshot
            .write()
            .unwrap_or_else(|e| e.into_inner()) = snapshot_of(self.machine.leaf());
        let mut held = Vec::new();
        for (k, seat) in self.seats.iter().enumerate() {
            let (Some(shared), Some(node)) = (&seat.shared, self.machine.node(k + 1)) else {
                break;
            };
            *shared.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snapshot_of(node);
            held.push(shared.clone());
        }
        let changed = {
            let current = self.shared.seats.read().unwrap_or_else(|e| e.into_inner());
            current.len() != held.len()
                || current.iter().zip(&held).any(|(a, b)| !Arc::ptr_eq(a, b))
        };
        if changed {
            *self.shared.seats.write().unwrap_or_else(|e| e.into_inner()) = held;
        }
        next
    }

    /// The node id that observes events at `level` and its cluster's id.
    fn observer(&self, level: Level) -> (NodeId, u32) {
        match level {
            0 => (self.shared.node, self.shared.cluster_id),
            l => self
                .seats
                .get(l - 1)
                .map_or((self.shared.node, self.shared.cluster_id), |s| {
                    (s.settings.proto.node, s.settings.proto.cluster.0)
                }),
        }
    }
}
