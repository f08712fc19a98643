//! Claim 13: a disk probe's result counts only once it repeats. A probe
//! that fails once (an fsync slow under load, past the probe's timeout) is
//! not a failed disk; `fall` failures in a row are. A failed disk is working
//! again after `rise` successes in a row. This is keepalived's
//! `track_script` fall/rise and Traffic Server's successive-failure rule; the
//! node reports the verdict on the ring, and the supervisor still declares
//! a disk failed only on the reports of several nodes (`Tables::evaluate_disks`).

/// Failed probes in a row after which a node reports its disk failed.
pub const DISK_FALL: u32 = 3;
/// Successful probes in a row after which a node reports a failed disk working.
pub const DISK_RISE: u32 = 2;

/// The verdict on one disk from its probes' results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    fall: u32,
    rise: u32,
    ok: bool,
    /// Results in a row that disagree with `ok`.
    against: u32,
}

impl Verdict {
    /// A verdict that starts "working" and changes after `fall` failures or
    /// `rise` successes in a row (each at least 1).
    pub fn new(fall: u32, rise: u32) -> Verdict {
        Verdict {
            fall: fall.max(1),
            rise: rise.max(1),
            ok: true,
            against: 0,
        }
    }

    /// Counts one probe result; returns the verdict after it.
    pub fn observe(&mut self, ok: bool) -> bool {
        if ok == self.ok {
            self.against = 0;
            return self.ok;
        }
        self.against += 1;
        let needed = if self.ok { self.fall } else { self.rise };
        if self.against >= needed {
            self.ok = ok;
            self.against = 0;
        }
        self.ok
    }

    /// The verdict now.
    pub fn ok(&self) -> bool {
        self.ok
    }
}

impl Default for Verdict {
    fn default() -> Verdict {
        Verdict::new(DISK_FALL, DISK_RISE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_disk_fails_after_fall_failures_in_a_row_and_recovers_after_rise_successes() {
        let mut v = Verdict::new(3, 2);
        assert!(v.observe(false));
        assert!(v.observe(false));
        assert!(v.observe(true), "a success breaks the run");
        assert!(v.observe(false));
        assert!(v.observe(false));
        assert!(!v.observe(false), "three in a row");
        assert!(!v.observe(true));
        assert!(!v.observe(false), "a failure breaks the run");
        assert!(!v.observe(true));
        assert!(v.observe(true), "two in a row");
    }

    proptest! {
        /// The verdict only changes after enough results in a row say so.
        #[test]
        fn the_verdict_follows_only_runs(results in proptest::collection::vec(any::<bool>(), 0..200)) {
            let mut v = Verdict::new(3, 2);
            let mut run = (true, 0u32);
            for ok in results {
                let before = v.ok();
                run = if run.0 == ok { (ok, run.1 + 1) } else { (ok, 1) };
                let after = v.observe(ok);
                if after != before {
                    prop_assert_eq!(after, ok);
                    let needed = if ok { 2 } else { 3 };
                    prop_assert!(run.1 >= needed, "changed after {} results in a row", run.1);
                }
            }
        }
    }
}
