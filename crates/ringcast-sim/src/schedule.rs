//! The virtual clock's queue of what happens next, shared by the
//! simulator's worlds: actions ordered by time, and by insertion among
//! equal times, so one seed replays exactly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug)]
struct Scheduled<A> {
    at: Instant,
    seq: u64,
    action: A,
}

impl<A> PartialEq for Scheduled<A> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<A> Eq for Scheduled<A> {}
impl<A> PartialOrd for Scheduled<A> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<A> Ord for Scheduled<A> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Actions waiting for their virtual time.
#[derive(Debug)]
pub struct Schedule<A> {
    queue: BinaryHeap<Reverse<Scheduled<A>>>,
    seq: u64,
}

impl<A> Default for Schedule<A> {
    fn default() -> Self {
        Schedule {
            queue: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<A> Schedule<A> {
    /// Schedules `action` at `at`, after every action already at `at`.
    pub fn push(&mut self, at: Instant, action: A) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            action,
        }));
    }

    /// The next action and its time, if it is due by `end`.
    pub fn pop_due(&mut self, end: Instant) -> Option<(Instant, A)> {
        match self.queue.peek() {
            Some(Reverse(s)) if s.at <= end => {}
            _ => return None,
        }
        self.queue.pop().map(|Reverse(s)| (s.at, s.action))
    }
}
