//! Faults injected in the transport, for tests of asymmetric links.
//!
//! The test hosts of this project cannot use `tc netem`, and a link taken
//! down cuts both directions at once. A one-way link is made here instead:
//! a node started with the environment variable `RINGCAST_TEST_FAULTS` set
//! to a file's path reads that file, and drops unread every datagram that
//! arrives from an address it lists. The file is read again every
//! [`RECHECK`] (while datagrams arrive), so a test starts and ends a fault
//! by rewriting it (by rename, so that no half of it is read). Without the
//! variable nothing is looked at and nothing is dropped.
//!
//! The file holds one rule a line; blank lines and `#` comments are ignored:
//!
//! ```text
//! drop_from 10.254.0.1            # every datagram from this IP address
//! drop_from 127.0.0.1:47001       # every datagram from this socket (one
//!                                 # node's ring, or a seat's, on one host)
//! ```
//!
//! Whoever sets a process's environment can already stop it, so the hook
//! gives no one anything new (`SECURITY.md`).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The environment variable that names the fault file.
pub const ENV: &str = "RINGCAST_TEST_FAULTS";

/// How often the file is read, at most.
pub const RECHECK: Duration = Duration::from_millis(20);

/// The faults a node applies to what it receives.
#[derive(Debug)]
pub struct Faults {
    path: PathBuf,
    checked: Option<Instant>,
    /// The file's text when last read.
    text: String,
    drop_from: BTreeSet<Source>,
}

/// Where dropped datagrams come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// Every socket of a host.
    Host(IpAddr),
    /// One socket.
    Socket(SocketAddr),
}

impl Faults {
    /// The faults of the file `RINGCAST_TEST_FAULTS` names, if it is set.
    pub fn from_env() -> Option<Faults> {
        let path = std::env::var_os(ENV)?;
        tracing::warn!(
            "{ENV} is set: datagrams from the addresses {} lists will be dropped",
            PathBuf::from(&path).display()
        );
        Some(Faults::new(PathBuf::from(path)))
    }

    /// Faults read from `path` (a missing file means none).
    pub fn new(path: PathBuf) -> Faults {
        Faults {
            path,
            checked: None,
            text: String::new(),
            drop_from: BTreeSet::new(),
        }
    }

    /// Whether a datagram from `from` is to be dropped now.
    pub fn drops(&mut self, now: Instant, from: SocketAddr) -> bool {
        if self
            .checked
            .is_none_or(|at| now.duration_since(at) >= RECHECK)
        {
            self.checked = Some(now);
            self.reload();
        }
        self.drop_from.contains(&Source::Host(from.ip()))
            || self.drop_from.contains(&Source::Socket(from))
    }

    fn reload(&mut self) {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        if text == self.text {
            return;
        }
        let (rules, bad) = parse(&text);
        for line in bad {
            tracing::warn!(
                "{}: ignoring {line:?}: not drop_from ADDRESS",
                self.path.display()
            );
        }
        if rules != self.drop_from {
            tracing::warn!("transport faults now drop datagrams from {rules:?}");
        }
        self.drop_from = rules;
        self.text = text;
    }
}

/// The addresses of `drop_from` rules, and the lines that are not rules.
fn parse(text: &str) -> (BTreeSet<Source>, Vec<&str>) {
    let mut rules = BTreeSet::new();
    let mut bad = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["drop_from", addr] => {
                if let Ok(ip) = addr.parse() {
                    rules.insert(Source::Host(ip));
                } else if let Ok(socket) = addr.parse() {
                    rules.insert(Source::Socket(socket));
                } else {
                    bad.push(line);
                }
            }
            _ => bad.push(line),
        }
    }
    (rules, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_read_and_bad_lines_are_set_aside() {
        let (rules, bad) = parse(
            "# a comment\ndrop_from 10.0.0.1\n\ndrop_from nowhere\nloss 5\ndrop_from 127.0.0.1:7001\n",
        );
        assert_eq!(
            rules,
            BTreeSet::from([
                Source::Host("10.0.0.1".parse().unwrap()),
                Source::Socket("127.0.0.1:7001".parse().unwrap())
            ])
        );
        assert_eq!(bad, vec!["drop_from nowhere", "loss 5"]);
    }

    #[test]
    fn a_rewritten_file_starts_and_ends_a_fault() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults");
        let mut faults = Faults::new(path.clone());
        let peer: SocketAddr = "10.254.0.2:7001".parse().unwrap();
        let t0 = Instant::now();
        assert!(!faults.drops(t0, peer), "no file, no fault");
        std::fs::write(&path, "drop_from 10.254.0.2\n").unwrap();
        assert!(faults.drops(t0 + RECHECK, peer));
        assert!(!faults.drops(t0 + RECHECK, "10.254.0.3:7001".parse().unwrap()));
        std::fs::write(&path, "drop_from 10.254.0.2:7002\n").unwrap();
        assert!(
            !faults.drops(t0 + RECHECK * 2, peer),
            "another socket of the host"
        );
        assert!(faults.drops(t0 + RECHECK * 2, "10.254.0.2:7002".parse().unwrap()));
        // Rewritten with nothing: the fault ends at the next look, not before.
        std::fs::write(&path, "").unwrap();
        let other: SocketAddr = "10.254.0.2:7002".parse().unwrap();
        assert!(faults.drops(t0 + RECHECK * 2 + RECHECK / 2, other));
        assert!(!faults.drops(t0 + RECHECK * 3, other));
    }
}
