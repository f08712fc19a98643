//! Anti-replay state for one sender: which frame counters of the sender's
//! current life were already accepted (DESIGN section 3, "a replayed counter
//! is dropped").
//!
//! A window is only consulted after a frame's tag was verified, so an
//! attacker without the cluster key cannot move it.

use thiserror::Error;

use crate::ids::Incarnation;

/// How many counters below the highest one a window remembers.
pub const WINDOW: u64 = 64;

/// Why a replay window refused a frame.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ReplayError {
    /// The counter was already accepted, or lies too far below the highest one to tell.
    #[error("the frame counter was already seen or is older than the replay window")]
    Replayed,
    /// The frame comes from an older life of the sender than one already seen.
    #[error("the frame comes from an older incarnation of its sender than one already seen")]
    StaleIncarnation,
}

/// Per-sender anti-replay state: the sender's latest incarnation, the highest
/// counter accepted in it, and which of the [`WINDOW`] counters below that
/// were accepted too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayWindow {
    incarnation: Incarnation,
    highest: u64,
    /// Bit `i` set: counter `highest - 1 - i` was accepted.
    below: u64,
}

impl ReplayWindow {
    /// The window of a sender whose first authenticated frame carried
    /// `incarnation` and `counter`; that counter counts as accepted.
    pub fn new(incarnation: Incarnation, counter: u64) -> Self {
        ReplayWindow {
            incarnation,
            highest: counter,
            below: 0,
        }
    }

    /// The sender's latest incarnation seen.
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// The highest counter accepted in that incarnation.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Accepts and records a frame's (incarnation, counter) unless it was seen
    /// before or belongs to an older life of the sender. Call it only for frames
    /// whose tag was verified.
    pub fn check_and_record(
        &mut self,
        incarnation: Incarnation,
        counter: u64,
    ) -> Result<(), ReplayError> {
        if incarnation > self.incarnation {
            *self = ReplayWindow::new(incarnation, counter);
            return Ok(());
        }
        if incarnation < self.incarnation {
            return Err(ReplayError::StaleIncarnation);
        }
        if counter > self.highest {
            self.advance_to(counter);
            return Ok(());
        }
        self.record_below(counter)
    }

    /// Makes `counter` the new highest, remembering the old highest below it.
    fn advance_to(&mut self, counter: u64) {
        let by = counter - self.highest;
        self.below = shift_left(self.below, by) | shift_left(1, by - 1);
        self.highest = counter;
    }

    /// Records a counter at or below the highest, if it is new and in the window.
    fn record_below(&mut self, counter: u64) -> Result<(), ReplayError> {
        if counter == self.highest {
            return Err(ReplayError::Replayed);
        }
        let age = self.highest - counter - 1;
        if age >= WINDOW {
            return Err(ReplayError::Replayed);
        }
        let bit = 1u64 << age;
        if self.below & bit != 0 {
            return Err(ReplayError::Replayed);
        }
        self.below |= bit;
        Ok(())
    }
}

/// `bits << by`, where shifting by 64 or more leaves nothing.
fn shift_left(bits: u64, by: u64) -> u64 {
    if by >= WINDOW {
        0
    } else {
        bits << by
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFE: Incarnation = Incarnation(5);

    #[test]
    fn the_first_counter_counts_as_seen() {
        let mut w = ReplayWindow::new(LIFE, 10);
        assert_eq!(w.check_and_record(LIFE, 10), Err(ReplayError::Replayed));
    }

    #[test]
    fn increasing_counters_are_accepted() {
        let mut w = ReplayWindow::new(LIFE, 0);
        for c in 1..200 {
            assert_eq!(w.check_and_record(LIFE, c), Ok(()));
        }
        assert_eq!(w.highest(), 199);
    }

    #[test]
    fn a_counter_seen_twice_is_refused() {
        let mut w = ReplayWindow::new(LIFE, 0);
        assert_eq!(w.check_and_record(LIFE, 3), Ok(()));
        assert_eq!(w.check_and_record(LIFE, 3), Err(ReplayError::Replayed));
    }

    #[test]
    fn counters_arriving_out_of_order_within_the_window_are_accepted_once() {
        let mut w = ReplayWindow::new(LIFE, 0);
        assert_eq!(w.check_and_record(LIFE, 10), Ok(()));
        for c in (1..10).rev() {
            assert_eq!(w.check_and_record(LIFE, c), Ok(()));
        }
        for c in 0..=10 {
            assert_eq!(w.check_and_record(LIFE, c), Err(ReplayError::Replayed));
        }
    }

    #[test]
    fn the_oldest_counter_of_the_window_is_still_accepted() {
        let mut w = ReplayWindow::new(LIFE, 100);
        assert_eq!(w.check_and_record(LIFE, 100 - WINDOW), Ok(()));
    }

    #[test]
    fn a_counter_older_than_the_window_is_refused() {
        let mut w = ReplayWindow::new(LIFE, 100);
        assert_eq!(
            w.check_and_record(LIFE, 100 - WINDOW - 1),
            Err(ReplayError::Replayed)
        );
    }

    #[test]
    fn the_previous_highest_is_remembered_after_a_jump_of_exactly_the_window() {
        let mut w = ReplayWindow::new(LIFE, 0);
        assert_eq!(w.check_and_record(LIFE, WINDOW), Ok(()));
        assert_eq!(w.check_and_record(LIFE, 0), Err(ReplayError::Replayed));
        assert_eq!(w.check_and_record(LIFE, 1), Ok(()));
    }

    #[test]
    fn a_jump_beyond_the_window_forgets_everything_below() {
        let mut w = ReplayWindow::new(LIFE, 0);
        assert_eq!(w.check_and_record(LIFE, 1), Ok(()));
        assert_eq!(w.check_and_record(LIFE, 1_000), Ok(()));
        assert_eq!(w.check_and_record(LIFE, 999), Ok(()));
        assert_eq!(w.check_and_record(LIFE, 1), Err(ReplayError::Replayed));
    }

    #[test]
    fn the_largest_counter_does_not_overflow() {
        let mut w = ReplayWindow::new(LIFE, 0);
        assert_eq!(w.check_and_record(LIFE, u64::MAX), Ok(()));
        assert_eq!(w.check_and_record(LIFE, u64::MAX - 1), Ok(()));
        assert_eq!(
            w.check_and_record(LIFE, u64::MAX),
            Err(ReplayError::Replayed)
        );
    }

    #[test]
    fn a_newer_incarnation_resets_the_window() {
        let mut w = ReplayWindow::new(LIFE, 500);
        assert_eq!(w.check_and_record(LIFE.next(), 0), Ok(()));
        assert_eq!(w.incarnation(), LIFE.next());
        assert_eq!(w.highest(), 0);
        assert_eq!(w.check_and_record(LIFE.next(), 1), Ok(()));
    }

    #[test]
    fn an_older_incarnation_is_stale() {
        let mut w = ReplayWindow::new(LIFE, 0);
        assert_eq!(
            w.check_and_record(Incarnation(4), 1),
            Err(ReplayError::StaleIncarnation)
        );
    }
}
