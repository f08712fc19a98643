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
