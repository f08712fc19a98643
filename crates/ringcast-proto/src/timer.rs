//! The node's timers as one table: each timer is a deadline or nothing, and
//! the earliest one is what `Node::poll_timeout` reports.

use std::time::Instant;

/// Every timer of the node state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Claim 22: end of the initial listen for a supervisor notification.
    Listen = 0,
    /// Claim 10: the supervisor's next periodic notification.
    Notify = 1,
    /// Claim 12: a member's deadline for the next notification before it takes over.
    SupervisorSilence = 2,
    /// Claim 6: the next periodic status sent downstream.
    Status = 3,
    /// Claim 8: the deadline for the next status from upstream.
    UpstreamSilence = 4,
    /// Claims 14-15: the next repeated join request.
    Join = 5,
    /// Claims 19-20: the next repeated leave message.
    Leave = 6,
    /// Claim 16: when a joining node that outranks the supervisor takes over.
    Preempt = 7,
    /// Claim 11: when the supervisor answers the pulls gathered since the
    /// first one (once for all of them when several asked).
    Answer = 8,
    /// Claims 10-11: when a prompt notification held back by the last one
    /// goes out (at most one per quarter notification interval).
    Prompt = 9,
}

impl Timer {
    /// Every timer, in the order they fire when due at the same instant.
    pub const ALL: [Timer; 10] = [
        Timer::Listen,
        Timer::SupervisorSilence,
        Timer::Preempt,
        Timer::UpstreamSilence,
        Timer::Notify,
        Timer::Prompt,
        Timer::Status,
        Timer::Join,
        Timer::Leave,
        Timer::Answer,
    ];
}

/// The deadline of each timer.
#[derive(Clone, Debug, Default)]
pub struct Timers {
    deadlines: [Option<Instant>; Timer::ALL.len()],
}

impl Timers {
    /// Arms `timer` for `at`, replacing any earlier deadline.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer as usize] = Some(at);
    }

    /// Disarms `timer`.
    pub fn clear(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    /// The deadline of `timer`, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer as usize]
    }

    /// Whether `timer` is armed.
    pub fn is_set(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns `timer` if it is due at `now`.
    pub fn take_expired(&mut self, timer: Timer, now: Instant) -> bool {
        match self.get(timer) {
            Some(at) if at <= now => {
                self.clear(timer);
                true
            }
            _ => false,
        }
    }

    /// Disarms every timer.
    pub fn clear_all(&mut self) {
        self.deadlines = [None; Timer::ALL.len()];
    }
}
