//! What the simulator's worlds share: the virtual clock's queue of what
//! happens next (actions ordered by time, and by insertion among equal
//! times, so one seed replays exactly) and the trace of what just happened.

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

    /// When the next action is due.
    pub fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(s)| s.at)
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

/// The last lines of what a world did, for a violation's report.
#[derive(Debug)]
pub struct Trace {
    lines: std::collections::VecDeque<String>,
    keep: usize,
}

impl Trace {
    /// A trace that keeps the last `keep` lines.
    pub fn new(keep: usize) -> Trace {
        Trace {
            lines: std::collections::VecDeque::with_capacity(keep),
            keep,
        }
    }

    /// Notes `line` at `elapsed` virtual time.
    pub fn note(&mut self, elapsed: std::time::Duration, line: String) {
        if self.lines.len() == self.keep {
            self.lines.pop_front();
        }
        let ms = elapsed.as_secs_f64() * 1000.0;
        self.lines.push_back(format!("{ms:10.3} ms  {line}"));
    }

    /// The lines kept, oldest first, one a line.
    pub fn text(&self) -> String {
        self.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}
