//! Claim 13 on the wire: the task that holds this node's share of the
//! cluster's service addresses. It follows the map the node holds: every
//! address `ringcast_proto::service::held_by` gives this node is made local
//! ([`AddressPlane::acquire`]), bound and served; every other is closed and
//! given up. A node that follows no map holds nothing.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ringcast_config::addresses::ServiceAddresses;
use ringcast_files::stream::Closing;
use ringcast_proto::service::{self, Address};
use ringcast_proto::NodeId;
use tokio::task::JoinHandle;

use super::takeover::Takeover;
use super::AddressPlane;
use crate::host::shared::Shared;

/// How often the holder compares what it holds with what the map says: a
/// fraction of any failover time, and cheap (a map lookup per address).
pub const HOLD_CHECK: Duration = Duration::from_millis(20);

/// How long a failed bind or acquire is not logged again.
const QUIET: Duration = Duration::from_secs(5);

/// How long a node that still follows a map keeps listening on an address
/// the map hands to another node, where both may listen at once
/// ([`AddressPlane::overlaps`]): long enough for the next holder, which
/// hears the same map within a notification, to listen too, so that no
/// connection is refused in between.
pub const RELEASE_GRACE: Duration = Duration::from_millis(250);

/// Starts serving a bound listener; the task ends when aborted. Its
/// connections close after each response once the flag is set.
pub type Serve = Arc<dyn Fn(tokio::net::TcpListener, Arc<Closing>) -> JoinHandle<()> + Send + Sync>;

/// The addresses this node holds right now, for the API and placement.
#[derive(Debug, Default)]
pub struct Holdings {
    held: RwLock<BTreeMap<Address, SocketAddr>>,
}

impl Holdings {
    /// Every address held and bound here.
    pub fn held(&self) -> BTreeMap<Address, SocketAddr> {
        self.held.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether `address` is held and bound here (during its hand-on grace
    /// too), without copying the table.
    pub fn holds(&self, address: Address) -> bool {
        self.held
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&address)
    }

    fn set(&self, held: BTreeMap<Address, SocketAddr>) {
        *self.held.write().unwrap_or_else(|e| e.into_inner()) = held;
    }
}

/// The holding task's state.
pub struct Holder {
    me: NodeId,
    priority: Vec<NodeId>,
    addresses: ServiceAddresses,
    plane: Box<dyn AddressPlane>,
    shared: Arc<Shared>,
    serve: Serve,
    holdings: Arc<Holdings>,
    bound: BTreeMap<Address, Bound>,
    complained: BTreeMap<Address, Instant>,
    /// Addresses handed on, released at the instant given ([`RELEASE_GRACE`]).
    releasing: BTreeMap<Address, Instant>,
    takeover: Option<Arc<Takeover>>,
}

/// An address held here: its socket, the task accepting on it, and the
/// flag that closes its connections after each response once it is
/// handed on.
///
/// Claim 13: a player's keep-alive connection stays with the process that
/// accepted it. Once the address belongs to another node, that connection
/// must end after its current response, or the player keeps asking a node
/// that no longer serves its streams.
struct Bound {
    socket: SocketAddr,
    task: JoinHandle<()>,
    handed_on: Arc<Closing>,
}

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holder")
            .field("me", &self.me)
            .field("bound", &self.bound.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Holder {
    /// A holder for node `me` of a cluster with `priority` and `addresses`.
    pub fn new(
        me: NodeId,
        priority: Vec<NodeId>,
        addresses: ServiceAddresses,
        plane: Box<dyn AddressPlane>,
        shared: Arc<Shared>,
        serve: Serve,
        holdings: Arc<Holdings>,
    ) -> Holder {
        Holder {
            me,
            priority,
            addresses,
            plane,
            shared,
            serve,
            holdings,
            bound: BTreeMap::new(),
            complained: BTreeMap::new(),
            releasing: BTreeMap::new(),
            takeover: None,
        }
    }

    /// The holder, taking over the connections in flight on the addresses
    /// it takes (see `takeover.rs`).
    pub fn with_takeover(mut self, takeover: Option<Arc<Takeover>>) -> Holder {
        self.takeover = takeover;
        self
    }

    /// Follows the map until the task is aborted; gives every address up
    /// when it is.
    pub async fn run(mut self) {
        let mut ticks = tokio::time::interval(HOLD_CHECK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.step();
        }
    }

    /// One comparison of what is held with what the map says.
    fn step(&mut self) {
        let now = Instant::now();
        let (wanted, has_map): (BTreeMap<Address, SocketAddr>, bool) = {
            let snapshot = self
                .shared
                .snapshot
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let wanted = match snapshot.map.as_ref() {
                Some(map) => service::held_by(
                    map,
                    snapshot.tables.as_ref(),
                    &self.priority,
                    self.addresses.all().map(|(a, _)| a),
                    self.me,
                )
                .into_iter()
                .filter_map(|a| Some((a, self.addresses.get(a)?)))
                .collect(),
                None => BTreeMap::new(),
            };
            (wanted, snapshot.map.is_some())
        };
        let gone: Vec<Address> = self
            .bound
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for address in self.releasing.keys() {
            if let Some(b) = self
                .bound
                .get(address)
                .filter(|_| wanted.contains_key(address))
            {
                b.handed_on.set(false);
            }
        }
        self.releasing.retain(|a, _| !wanted.contains_key(a));
        for address in gone {
            if let Some(b) = self.bound.get(&address) {
                b.handed_on.set(true);
            }
            // Handed on by a map this node still follows, where the next
            // holder can listen beside it: a grace first. Without a map (cut
            // off from its cluster), at once.
            if has_map && self.plane.overlaps() {
                let at = *self.releasing.entry(address).or_insert(now + RELEASE_GRACE);
                if now < at {
                    continue;
                }
            }
            self.releasing.remove(&address);
            self.release(address);
        }
        for (address, socket) in wanted {
            if !self.bound.contains_key(&address) {
                self.take(address, socket);
            }
        }
        self.holdings
            .set(self.bound.iter().map(|(a, b)| (*a, b.socket)).collect());
    }

    fn take(&mut self, address: Address, socket: SocketAddr) {
        // The connections a dead holder had open on it are rebuilt first,
        // so that nothing their players send meets a reset.
        let pending = self.takeover.as_ref().and_then(|t| t.prepare(socket));
        let transparent = self.takeover.is_none();
        let overlap = self.plane.overlaps();
        let result = self
            .plane
            .acquire(socket.ip())
            .and_then(|()| bind(socket, transparent, overlap));
        match result {
            Ok(listener) => {
                let handed_on = Arc::new(Closing::within(self.shared.draining.clone()));
                let task = (self.serve)(listener, handed_on.clone());
                if let (Some(t), Some(p)) = (&self.takeover, pending) {
                    tokio::spawn(t.clone().finish(p));
                }
                self.bound.insert(
                    address,
                    Bound {
                        socket,
                        task,
                        handed_on,
                    },
                );
                self.complained.remove(&address);
                self.shared.metrics.count_address_move("taken");
                self.shared.publish_local(
                    "address_taken",
                    Some(self.me),
                    format!("now holds {} ({})", describe(address), socket),
                );
            }
            Err(e) => {
                let now = Instant::now();
                let quiet = self
                    .complained
                    .get(&address)
                    .is_some_and(|t| now.duration_since(*t) < QUIET);
                if !quiet {
                    tracing::warn!("cannot hold {} at {socket}: {e}", describe(address));
                    self.complained.insert(address, now);
                }
            }
        }
    }

    fn release(&mut self, address: Address) {
        let Some(Bound {
            socket,
            task,
            handed_on,
        }) = self.bound.remove(&address)
        else {
            return;
        };
        handed_on.set(true);
        task.abort();
        let still_used = self.bound.values().any(|b| b.socket.ip() == socket.ip());
        if !still_used {
            if let Err(e) = self.plane.release(socket.ip()) {
                tracing::warn!("cannot release {}: {e}", socket.ip());
            }
        }
        self.shared.metrics.count_address_move("released");
        self.shared.publish_local(
            "address_released",
            Some(self.me),
            format!("gave up {} ({})", describe(address), socket),
        );
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let held: Vec<Address> = self.bound.keys().copied().collect();
        for address in held {
            self.release(address);
        }
    }
}

/// How an address is named in events and logs.
pub fn describe(address: Address) -> String {
    match address {
        Address::Node(n) => format!("the service address of {n}"),
        Address::Cluster => "the cluster address".to_string(),
    }
}

/// A listener on `socket` that a restarted holder can bind at once
/// (`SO_REUSEADDR`: connections of an earlier holder may linger).
///
/// The address leaves this host with the device that carries it (`lan.rs`)
/// when the process dies or gives it up, while connections accepted on it
/// are still open, and the kernel routes nothing from a source address it
/// no longer has. With takeovers that is what is wanted: the dead host
/// says nothing more (no FIN that would end the player's stream early),
/// and the new holder continues the connection. Without them the
/// listener is `transparent` (`IP_TRANSPARENT`, inherited by the
/// connections accepted on it), so the dead host's remaining data, FIN and
/// retransmissions still go out: a player that only receives (curl
/// mid-download) then hears the new holder's reset and retries at once,
/// instead of waiting for its TCP keepalive (60 s for curl).
///
/// With `overlap` (one host) the listener is also `SO_REUSEPORT`, so the
/// next holder listens beside the last during [`RELEASE_GRACE`].
fn bind(
    socket: SocketAddr,
    transparent: bool,
    overlap: bool,
) -> io::Result<tokio::net::TcpListener> {
    let domain = socket2::Domain::for_address(socket);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if overlap {
        s.set_reuse_port(true)?;
    }
    if transparent && matches!(socket.ip(), IpAddr::V4(ip) if !ip.is_loopback()) {
        s.set_ip_transparent(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&socket.into())?;
    s.listen(1024)?;
    tokio::net::TcpListener::from_std(s.into())
}
