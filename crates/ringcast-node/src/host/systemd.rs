//! The node's side of the service manager (sd_notify(3)): it says READY
//! once it has its configuration and has formed or joined its cluster,
//! RELOADING (with the monotonic clock, as systemd 253 and newer ask) while
//! it rereads its configuration after SIGHUP, STOPPING when it leaves, and
//! pings the watchdog from the protocol loop itself, so that a loop that
//! stalls stops the pings and systemd restarts the node.
//!
//! Without `$NOTIFY_SOCKET` (not under systemd) every call does nothing.
//! A notification that cannot be sent is logged, never fatal: the node
//! serves its viewers whatever its service manager hears.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Tells the service manager `states`, logging a failure.
fn tell(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify the service manager ({states:?}): {e}");
    }
}

/// The node has its configuration and is a member (or the supervisor) of
/// its cluster; `status` is the one line `systemctl status` shows.
pub fn ready(status: &str) {
    tell(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The node is rereading its configuration; [`ready`] follows when it is done.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => tell(&[NotifyState::Reloading, now]),
        Err(e) => tracing::warn!("cannot read the monotonic clock for RELOADING: {e}"),
    }
}

/// The node is leaving its cluster and will exit.
pub fn stopping(status: &str) {
    tell(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// The watchdog's pings, when the service manager asked for them
/// (`WatchdogSec=` sets `$WATCHDOG_USEC` and `$WATCHDOG_PID`).
#[derive(Debug)]
pub struct Watchdog {
    /// Half the watchdog's timeout, as sd_watchdog_enabled(3) advises.
    every: Duration,
    /// When the next ping is due.
    due: Instant,
}

impl Watchdog {
    /// The watchdog this process was started with, if any.
    pub fn from_env(now: Instant) -> Option<Watchdog> {
        let mut usec = 0;
        if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
            return None;
        }
        let every = (Duration::from_micros(usec) / 2).max(Duration::from_millis(1));
        tracing::info!("systemd watchdog: pinging every {every:?} from the protocol loop");
        Some(Watchdog { every, due: now })
    }

    /// When the loop must wake up to ping, at the latest.
    pub fn due(&self) -> Instant {
        self.due
    }

    /// Pings if a ping is due.
    pub fn tick(&mut self, now: Instant) {
        if now >= self.due {
            tell(&[NotifyState::Watchdog]);
            self.due = now + self.every;
        }
    }
}
