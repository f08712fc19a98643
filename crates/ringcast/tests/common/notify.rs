//! The service manager's side of sd_notify(3) for tests: a datagram socket
//! that a node under test is told as `$NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use super::LIMIT;

/// The service manager's end of `$NOTIFY_SOCKET`.
pub struct Manager {
    socket: UnixDatagram,
}

impl Manager {
    pub fn bind(path: &Path) -> Manager {
        let _ = std::fs::remove_file(path);
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        Manager { socket }
    }

    /// The next notification, or `None` once `until` has passed.
    pub fn next(&self, until: Instant) -> Option<String> {
        let mut buf = [0u8; 4096];
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.socket.recv(&mut buf) {
                Ok(n) => return Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }

    /// Waits for a notification with the line `line`, passing over the
    /// watchdog's pings; returns it whole. `describe` says what the node
    /// was doing, for the failure message.
    pub fn expect(&self, line: &str, describe: impl Fn() -> String) -> String {
        let until = Instant::now() + LIMIT;
        while let Some(msg) = self.next(until) {
            if msg.lines().any(|l| l == line) {
                return msg;
            }
            assert!(
                msg.lines().all(|l| l == "WATCHDOG=1"),
                "unexpected notification {msg:?} while waiting for {line}"
            );
        }
        panic!("no {line} within {LIMIT:?}\n{}", describe());
    }

    /// Throws away what is waiting.
    pub fn drain(&self) {
        while self.next(Instant::now()).is_some() {}
    }
}
