//! Claim 5 and DESIGN section 7: placement descends the tree.
//!
//! A play request reaches the supervisor of the entry node's cluster, which
//! sends it up, supervisor by supervisor, to the root's supervisor. There the
//! root picks a sub-cluster (a member of the root, through its seat) with
//! spare summed capacity, the stream's previous sub-cluster first, and asks
//! that sub-cluster's supervisor to place it within (`within=<cluster>`);
//! the request descends until a leaf cluster's supervisor picks the node
//! and signs the token. A sub-cluster that lacks the title (404) or is full
//! (503) is skipped for the next. Each hop is an HTTP request between
//! supervisors; the player sees one redirect, from its entry node to the
//! serving node.

use std::net::SocketAddr;

use ringcast_proto::placement::rank_subclusters;
use ringcast_proto::Role;

use axum::http::StatusCode;

use super::service::{ask_place, refusal, refused, unavailable, PlaceAnswer, Refused, Streaming};
use crate::host::shared::Shared;
use crate::library::catalog::Title;

/// The most machines a placement request may pass through, up and down.
pub const MAX_HOPS: u32 = 16;
/// The most streams whose sub-cluster a parent's supervisor remembers.
pub const TREE_BOOK_LIMIT: usize = 100_000;

impl Streaming {
    /// Claim 5: places a stream from wherever this machine sits in the tree.
    /// With `within`, this machine supervises that cluster and decides in
    /// it; without, this machine supervises its own cluster and the request
    /// goes up to the root first.
    pub(super) fn place_in_tree(
        &self,
        title: &Title,
        stream: u64,
        within: Option<u32>,
        hops: u32,
    ) -> Result<PlaceAnswer, Refused> {
        if hops > MAX_HOPS {
            return Err(refused(refusal(
                StatusCode::LOOP_DETECTED,
                "the placement request passed too many machines",
            )));
        }
        let leaf = &self.shared;
        let seats = leaf.held_seats();
        if let Some(cluster) = within {
            if leaf.cluster_id == cluster && leaf.role() == Role::Supervisor {
                return self.decide(title, stream);
            }
            let Some(seat) = seats
                .iter()
                .find(|s| s.cluster_id == cluster && s.role() == Role::Supervisor)
            else {
                return Err(refused(refusal(
                    StatusCode::MISDIRECTED_REQUEST,
                    "this machine does not supervise that cluster",
                )));
            };
            return self.choose_subcluster(seat, title, stream, hops);
        }
        let levels = leaf.levels_above.load(std::sync::atomic::Ordering::Relaxed);
        // Not in a tree, or the seat above is not taken yet (the machine has
        // just become supervisor): decide within this cluster.
        let Some(top) = seats.last() else {
            return self.decide(title, stream);
        };
        if top.role() == Role::Supervisor {
            // The root's supervisor, or a supervisor whose next seat is not
            // taken yet: the request descends from here.
            if seats.len() < levels {
                tracing::debug!("placing below a cluster whose parent seat is not taken yet");
            }
            return self.choose_subcluster(top, title, stream, hops);
        }
        let snap = top.snapshot();
        let parent = snap
            .map
            .as_ref()
            .and_then(|m| m.member(m.supervisor))
            .map(|m| m.addrs.http);
        match parent {
            Some(http) => self.ask_machine(http, title, stream, None, hops + 1),
            None => self.decide(title, stream),
        }
    }

    /// Claim 5: as supervisor of the cluster `seat` belongs to, picks a
    /// sub-cluster with spare capacity and lets it place the stream within.
    fn choose_subcluster(
        &self,
        seat: &Shared,
        title: &Title,
        stream: u64,
        hops: u32,
    ) -> Result<PlaceAnswer, Refused> {
        let snap = seat.snapshot();
        let (Some(map), Some(tables)) = (snap.map.as_ref(), snap.tables.as_ref()) else {
            return Err(refused(unavailable("the cluster is forming", 1)));
        };
        let sticky = self
            .tree_book
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&stream)
            .copied();
        let mut refusal_seen: Option<Refused> = None;
        for sub in rank_subclusters(map, tables, sticky) {
            let Some(http) = map.member(sub).map(|m| m.addrs.http) else {
                continue;
            };
            match self.ask_machine(http, title, stream, Some(sub.0), hops + 1) {
                Ok(answer) => {
                    let mut book = self.tree_book.lock().unwrap_or_else(|e| e.into_inner());
                    if book.len() >= TREE_BOOK_LIMIT && !book.contains_key(&stream) {
                        book.pop_first();
                    }
                    book.insert(stream, sub);
                    return Ok(answer);
                }
                Err(r) => {
                    // A full or unreachable sub-cluster outranks one without
                    // the title: the client should retry, not give up.
                    let keep = refusal_seen
                        .as_ref()
                        .is_none_or(|seen| seen.status() == StatusCode::NOT_FOUND);
                    if keep {
                        refusal_seen = Some(r);
                    }
                }
            }
        }
        Err(refusal_seen
            .unwrap_or_else(|| refused(unavailable("every sub-cluster is at capacity", 1))))
    }

    fn ask_machine(
        &self,
        http: SocketAddr,
        title: &Title,
        stream: u64,
        within: Option<u32>,
        hops: u32,
    ) -> Result<PlaceAnswer, Refused> {
        let within = within.map(|c| format!("&within={c}")).unwrap_or_default();
        let url = self.shared.web().url(
            http,
            &format!(
                "/v1/place/{}?stream={stream}&hops={hops}{within}",
                title.as_str()
            ),
        );
        ask_place(&self.agent, &url)
    }
}
