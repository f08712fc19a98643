//! The one pump shared by the simulator and the daemon: apply one input to a
//! [`Machine`], drain its events, then its datagrams, and read its next
//! timeout. Keeping this in one place is what makes the simulator test the
//! daemon's exact call order.
//!
//! Events come out before datagrams so that the host opens a seat's sockets
//! ([`MachineEvent::SeatTaken`]) and records a refuted life before anything
//! is sent for them.

use std::time::Instant;

use crate::event::LocalEvent;
use crate::machine::{Level, LevelTransmit, Machine, MachineEvent, Reload};

/// One input to a machine.
#[derive(Debug)]
pub enum Input<'a> {
    /// A datagram received by the bus or ring socket of `level`.
    Datagram {
        /// The level whose socket received it.
        level: Level,
        /// Its bytes.
        bytes: &'a [u8],
    },
    /// The machine's timeout came due.
    Timeout,
    /// Something the host reports about its leaf node.
    Local(LocalEvent),
    /// New keys and configuration version.
    Reload(Box<Reload>),
    /// The host could not open the sockets of the seat at `level`.
    SeatUnavailable {
        /// The seat's level.
        level: Level,
    },
}

/// What one pump produced, in order: the one output buffer of both hosts.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Things that happened, oldest first.
    pub events: Vec<MachineEvent>,
    /// Datagrams to send, oldest first.
    pub transmits: Vec<LevelTransmit>,
}

impl Outbox {
    /// Whether the pump produced nothing.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.transmits.is_empty()
    }
}

/// Applies `input` at `now`, appends every output to `out`, and returns when
/// the machine next needs [`Input::Timeout`].
pub fn pump(
    machine: &mut Machine,
    now: Instant,
    input: Input<'_>,
    out: &mut Outbox,
) -> Option<Instant> {
    match input {
        Input::Datagram { level, bytes } => machine.handle_datagram(now, level, bytes),
        Input::Timeout => machine.handle_timeout(now),
        Input::Local(event) => machine.handle_local(now, event),
        Input::Reload(reload) => machine.handle_reload(now, *reload),
        Input::SeatUnavailable { level } => machine.handle_seat_unavailable(now, level),
    }
    drain(machine, out)
}

/// Appends every pending output of `machine` to `out` and returns its next timeout.
pub fn drain(machine: &mut Machine, out: &mut Outbox) -> Option<Instant> {
    while let Some(e) = machine.poll_event() {
        out.events.push(e);
    }
    while let Some(t) = machine.poll_transmit() {
        out.transmits.push(t);
    }
    machine.poll_timeout()
}

/// The node-level pump of the daemon before it drove a [`Machine`]; kept
/// only until the daemon's host loop moves to the machine, then deleted.
#[doc(hidden)]
pub mod legacy {
    use std::time::Instant;

    use crate::event::{Event, LocalEvent, Transmit};
    use crate::node::Node;

    /// One input to a node.
    #[derive(Debug)]
    pub enum Input<'a> {
        /// A datagram from the bus or the ring.
        Datagram(&'a [u8]),
        /// The node's timeout came due.
        Timeout,
        /// Something the host reports.
        Local(LocalEvent),
    }

    /// Where a node's outputs go.
    pub trait Outputs {
        /// A datagram to send.
        fn transmit(&mut self, node: &Node, transmit: Transmit);
        /// Something that happened.
        fn event(&mut self, node: &Node, event: Event);
    }

    /// Applies `input` and hands every output to `out`.
    pub fn pump(
        node: &mut Node,
        now: Instant,
        input: Input<'_>,
        out: &mut impl Outputs,
    ) -> Option<Instant> {
        match input {
            Input::Datagram(bytes) => node.handle_datagram(now, bytes),
            Input::Timeout => node.handle_timeout(now),
            Input::Local(event) => node.handle_local(now, event),
        }
        drain(node, out)
    }

    /// Hands every pending output of `node` to `out`.
    pub fn drain(node: &mut Node, out: &mut impl Outputs) -> Option<Instant> {
        while let Some(t) = node.poll_transmit() {
            out.transmit(node, t);
        }
        while let Some(e) = node.poll_event() {
            out.event(node, e);
        }
        node.poll_timeout()
    }
}
