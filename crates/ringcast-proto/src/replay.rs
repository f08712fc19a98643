//! Anti-replay state for one sender: which frame counters of the sender's
//! current life were already accepted (DESIGN section 3, "a replayed counter
//! is dropped").
//!
//! A window is only consulted after a frame's tag was verified, so an
//! attacker without the cluster key cannot move it.

use thiserror::Error;

use crate::ids::Incarnation;

/// How many counters below the highest one a window remembers: as many as
/// the parts of the largest state a pull is answered with, so a burst of
/// them that the network reorders is still accepted whole.
pub const WINDOW: u64 = crate::announce::MAX_STATE_PARTS as u64;

/// The slots of the ring of bits: the window and one word more, so the
/// highest counter's slot is none of the window's.
const WORDS: usize = (WINDOW / 64) as usize + 1;
const RING: u64 = WORDS as u64 * 64;
const _: () = assert!(WINDOW.is_multiple_of(64) && WINDOW >= 64);

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
    /// A ring of bits indexed by counter modulo `RING`: the bit of a
    /// counter among the `WINDOW` below `highest` is set when it was
    /// accepted (about 512 bytes per sender).
    seen: Box<[u64; WORDS]>,
}

impl ReplayWindow {
    /// The window of a sender whose first authenticated frame carried
    /// `incarnation` and `counter`; that counter counts as accepted.
    pub fn new(incarnation: Incarnation, counter: u64) -> Self {
        ReplayWindow {
            incarnation,
            highest: counter,
            seen: Box::new([0; WORDS]),
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

    /// Makes `counter` the new highest, remembering the old highest below
    /// it and forgetting the slots of the counters skipped.
    fn advance_to(&mut self, counter: u64) {
        let old = self.highest;
        if counter - old >= RING {
            self.seen.fill(0);
        } else {
            let mut c = old + 1;
            while c < counter {
                if c.is_multiple_of(64) && counter - c >= 64 {
                    self.seen[slot(c).0] = 0;
                    c += 64;
                } else {
                    self.set(c, false);
                    c += 1;
                }
            }
        }
        self.set(old, true);
        self.set(counter, false);
        self.highest = counter;
    }

    /// Records a counter below the highest, if it is new and in the window.
    fn record_below(&mut self, counter: u64) -> Result<(), ReplayError> {
        let age = self.highest - counter;
        if age == 0 || age > WINDOW {
            return Err(ReplayError::Replayed);
        }
        let (w, bit) = slot(counter);
        if self.seen[w] & bit != 0 {
            return Err(ReplayError::Replayed);
        }
        self.seen[w] |= bit;
        Ok(())
    }

    fn set(&mut self, counter: u64, accepted: bool) {
        let (w, bit) = slot(counter);
        if accepted {
            self.seen[w] |= bit;
        } else {
            self.seen[w] &= !bit;
        }
    }
}

/// The word and bit of `counter`'s slot.
fn slot(counter: u64) -> (usize, u64) {
    let i = counter % RING;
    ((i / 64) as usize, 1u64 << (i % 64))
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
        let mut w = ReplayWindow::new(LIFE, 10 * WINDOW);
        assert_eq!(w.check_and_record(LIFE, 9 * WINDOW), Ok(()));
        assert_eq!(
            w.check_and_record(LIFE, 9 * WINDOW),
            Err(ReplayError::Replayed)
        );
    }

    #[test]
    fn a_counter_older_than_the_window_is_refused() {
        let mut w = ReplayWindow::new(LIFE, 10 * WINDOW);
        assert_eq!(
            w.check_and_record(LIFE, 9 * WINDOW - 1),
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
        assert_eq!(w.check_and_record(LIFE, 3 * WINDOW), Ok(()));
        assert_eq!(w.check_and_record(LIFE, 3 * WINDOW - 1), Ok(()));
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
    fn a_burst_reordered_across_the_ring_of_slots_is_accepted_once() {
        // Counters of several windows, each window's arriving backwards:
        // every slot is reused and must not carry an older counter's bit.
        let mut w = ReplayWindow::new(LIFE, 0);
        for round in 0..5u64 {
            let top = (round + 1) * WINDOW;
            assert_eq!(w.check_and_record(LIFE, top), Ok(()));
            for c in (top - WINDOW + 1..top).rev() {
                assert_eq!(w.check_and_record(LIFE, c), Ok(()), "counter {c}");
            }
            for c in top - WINDOW..=top {
                assert_eq!(
                    w.check_and_record(LIFE, c),
                    Err(ReplayError::Replayed),
                    "counter {c}"
                );
            }
        }
    }

    #[test]
    fn counters_skipped_by_a_jump_are_still_accepted_later() {
        let mut w = ReplayWindow::new(LIFE, 5);
        assert_eq!(w.check_and_record(LIFE, 200), Ok(()));
        assert_eq!(w.check_and_record(LIFE, 6), Ok(()));
        assert_eq!(w.check_and_record(LIFE, 5), Err(ReplayError::Replayed));
        assert_eq!(w.check_and_record(LIFE, 199), Ok(()));
        assert_eq!(w.check_and_record(LIFE, 200 + WINDOW - 100), Ok(()));
        assert_eq!(w.check_and_record(LIFE, 150), Ok(()));
        assert_eq!(w.check_and_record(LIFE, 150), Err(ReplayError::Replayed));
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

    proptest::proptest! {
        /// The window against a model that remembers every counter: a
        /// counter is accepted exactly when it is new and at most `WINDOW`
        /// below the highest accepted before it.
        #[test]
        fn the_window_agrees_with_a_model_of_every_counter(
            steps in proptest::collection::vec((0u64..3 * WINDOW, proptest::bool::ANY), 1..400)
        ) {
            let mut w = ReplayWindow::new(LIFE, 0);
            let mut seen = std::collections::BTreeSet::from([0u64]);
            let mut highest = 0u64;
            for (step, forward) in steps {
                // Half the steps move ahead, half fall back, near the edge.
                let c = if forward { highest + step % 200 } else { highest.saturating_sub(step) };
                let expected = !seen.contains(&c) && highest - c.min(highest) <= WINDOW;
                let got = w.check_and_record(LIFE, c);
                proptest::prop_assert_eq!(got.is_ok(), expected, "counter {} highest {}", c, highest);
                if expected {
                    seen.insert(c);
                    highest = highest.max(c);
                }
            }
        }
    }
}
