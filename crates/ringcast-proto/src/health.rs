//! Local health: a node that sees its own timers fire late (it was paused or
//! starved of CPU) discounts the gap before blaming a neighbour or the
//! supervisor, as Lifeguard and corosync's pause detection do (DESIGN 4,
//! "Local health"). Claim 8 is only as good as this: a declaration must be
//! about the upstream's silence, not this node's own.

use std::time::{Duration, Instant};

/// Highest stretch factor applied to silence timeouts after repeated slips.
pub const MAX_SCORE: u32 = 3;

/// How late a node's timers have been running.
#[derive(Clone, Debug)]
pub struct LocalHealth {
    score: u32,
    last_slip: Option<Instant>,
    slips: u64,
}

impl Default for LocalHealth {
    fn default() -> Self {
        LocalHealth::new()
    }
}

impl LocalHealth {
    /// A healthy node.
    pub fn new() -> Self {
        LocalHealth {
            score: 0,
            last_slip: None,
            slips: 0,
        }
    }

    /// Records that a timer due at `due` ran at `now`. Returns the gap to
    /// discount when the lateness exceeds `threshold`.
    pub fn observe(&mut self, due: Instant, now: Instant, threshold: Duration) -> Option<Duration> {
        let late = now.saturating_duration_since(due);
        if late <= threshold {
            return None;
        }
        self.slips += 1;
        self.score = (self.score + 1).min(MAX_SCORE);
        self.last_slip = Some(now);
        Some(late)
    }

    /// Lets the score decay once `calm` has passed without a slip.
    pub fn decay(&mut self, now: Instant, calm: Duration) {
        if let Some(at) = self.last_slip {
            if self.score > 0 && now.saturating_duration_since(at) >= calm {
                self.score -= 1;
                self.last_slip = Some(now);
            }
        }
    }

    /// A silence timeout stretched by how unhealthy this node has been lately.
    pub fn stretch(&self, timeout: Duration) -> Duration {
        timeout * (1 + self.score)
    }

    /// How many slips were seen since start.
    pub fn slips(&self) -> u64 {
        self.slips
    }
}
