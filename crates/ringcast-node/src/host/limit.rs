//! The per-sender limits of the bus and ring sockets: a budget of
//! datagrams per sender, checked before a datagram is parsed, built on the
//! token buckets of [`ringcast_files::buckets`].

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ringcast_files::buckets::{client_key, Buckets, Rate};

/// Who a datagram is charged to on the bus and ring sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sender {
    /// The node itself (multicast loops its own datagrams back): never
    /// limited; the protocol core drops them at once.
    Me,
    /// A member's ring address: limited on its own, even when members share
    /// a host.
    Peer(SocketAddr),
    /// Any other source, by its address's [`client_key`]: changing the
    /// source port does not buy a new budget.
    Host(IpAddr),
}

/// The per-sender limits of the bus and ring input, against floods and
/// forgeries (the settings' `BusLimits`). Checked before a datagram is parsed or
/// authenticated, so a flood costs one table lookup per datagram: each
/// sender has a budget of datagrams of any kind and a smaller budget of
/// datagrams the protocol refused (garbage, forgeries, replays, other
/// clusters); while either is spent, its datagrams are dropped unread.
/// Members' authentic traffic never touches the second budget, so a flood
/// from another address cannot get a member's frames dropped (unless the
/// flood forges that member's source address, which per-source limits
/// cannot tell apart).
#[derive(Debug)]
pub struct SenderLimits {
    datagrams: Buckets<Sender>,
    refused: Buckets<Sender>,
    me: SocketAddr,
    peers: HashSet<SocketAddr>,
}

impl SenderLimits {
    /// Limits for the node whose ring address is `me`, with `datagrams` and
    /// `refused` budgets per sender and at most `max_senders` tracked.
    pub fn new(
        datagrams: Rate,
        refused: Rate,
        max_senders: usize,
        me: SocketAddr,
        now: Instant,
    ) -> SenderLimits {
        SenderLimits {
            datagrams: Buckets::new(datagrams, max_senders, now),
            refused: Buckets::new(refused, max_senders, now),
            me,
            peers: HashSet::new(),
        }
    }

    /// The members' ring addresses (each limited on its own).
    pub fn set_peers(&mut self, peers: impl IntoIterator<Item = SocketAddr>) {
        self.peers = peers.into_iter().filter(|a| *a != self.me).collect();
    }

    /// Who a datagram from `from` is charged to.
    pub fn sender(&self, from: SocketAddr) -> Sender {
        if from == self.me {
            Sender::Me
        } else if self.peers.contains(&from) {
            Sender::Peer(from)
        } else {
            Sender::Host(client_key(from.ip()))
        }
    }

    /// Charges a datagram from `from`: `Some(sender)` if it may be read,
    /// `None` if it is to be dropped unread.
    pub fn admit(&mut self, now: Instant, from: SocketAddr) -> Option<Sender> {
        let sender = self.sender(from);
        if sender == Sender::Me {
            return Some(sender);
        }
        if !self.refused.has_token(now, &sender) {
            return None;
        }
        self.datagrams.take(now, &sender).ok().map(|()| sender)
    }

    /// The protocol refused a datagram of `sender`: charges its refused budget.
    pub fn refused(&mut self, now: Instant, sender: Sender) {
        if sender != Sender::Me {
            let _ = self.refused.take(now, &sender);
        }
    }

    /// Senders tracked now (either budget).
    pub fn tracked(&self) -> usize {
        self.datagrams.len().max(self.refused.len())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rate(per_second: u32, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    #[test]
    fn a_flooding_host_is_cut_off_after_its_refused_budget_while_peers_keep_theirs() {
        let t0 = Instant::now();
        let me: SocketAddr = "127.0.0.1:7501".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:7502".parse().unwrap();
        let mut l = SenderLimits::new(rate(1000, 2000), rate(10, 20), 64, me, t0);
        l.set_peers([me, peer]);
        // The flooder changes its source port every datagram: one budget.
        let mut read = 0;
        for port in 0..10_000u16 {
            let from = SocketAddr::new("127.0.0.2".parse().unwrap(), 20_000 + port);
            if let Some(s) = l.admit(t0, from) {
                assert_eq!(s, Sender::Host("127.0.0.2".parse().unwrap()));
                read += 1;
                l.refused(t0, s);
            }
        }
        assert_eq!(read, 20, "only the refused burst is read");
        // A peer on the same host sends thousands of authentic datagrams.
        let mut peer_read = 0;
        for _ in 0..2000 {
            if l.admit(t0, peer).is_some() {
                peer_read += 1;
            }
        }
        assert_eq!(peer_read, 2000);
        // ... but not beyond its datagram budget.
        assert_eq!(l.admit(t0, peer), None);
        // The node's own looped-back datagrams are never limited.
        for _ in 0..5000 {
            assert_eq!(l.admit(t0, me), Some(Sender::Me));
            l.refused(t0, Sender::Me);
        }
        // A second later the flooder's budget has refilled by its rate.
        let t1 = t0 + Duration::from_secs(1);
        let from: SocketAddr = "127.0.0.2:9".parse().unwrap();
        let again = (0..100)
            .filter(|_| match l.admit(t1, from) {
                Some(s) => {
                    l.refused(t1, s);
                    true
                }
                None => false,
            })
            .count();
        assert_eq!(again, 10);
        assert!(l.tracked() <= 64);
    }
}
