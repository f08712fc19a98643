//! The one pump shared by the simulator and the runtime: apply one input,
//! drain transmits, drain events, read the next timeout. Keeping this in one
//! place is what makes the simulator test the daemon's exact call order.

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

/// Applies `input` at `now`, hands every output to `out`, and returns when
/// the node next needs `Input::Timeout`.
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

/// Hands every pending output of `node` to `out` and returns its next timeout.
pub fn drain(node: &mut Node, out: &mut impl Outputs) -> Option<Instant> {
    while let Some(t) = node.poll_transmit() {
        out.transmit(node, t);
    }
    while let Some(e) = node.poll_event() {
        out.event(node, e);
    }
    node.poll_timeout()
}
