//! Placement that cannot be abused (`SECURITY.md`): every `/v1/play` and
//! `/v1/place` answer reserves a stream's capacity on its node for a few
//! seconds (until the node's load reports show the stream), whether or not
//! the client then streams. A token bucket per client address bounds what
//! one address can hold so: at most the burst plus the rate times a
//! reservation's length. Cluster members (the entry node that forwards its
//! client's request, a supervisor of the tree placing below) are exempt:
//! their clients were counted where they entered.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use ringcast_files::buckets::{client_key, retry_after_secs, Buckets};
use ringcast_files::guard::Guard;
use ringcast_files::limits::HttpLimits;

/// Placements per client address.
#[derive(Debug)]
pub struct Admission {
    buckets: Mutex<Buckets<IpAddr>>,
}

impl Admission {
    /// Admission under `limits` (`client_placements`, `max_clients`).
    pub fn new(limits: &HttpLimits) -> Admission {
        Admission {
            buckets: Mutex::new(Buckets::new(
                limits.client_placements,
                limits.max_clients,
                Instant::now(),
            )),
        }
    }

    /// Whether a placement for `client` goes ahead: always for a cluster
    /// member (`guard` says which addresses are), else while its bucket
    /// holds a token; else `429` with `Retry-After`.
    pub fn admit(
        &self,
        guard: Option<&Guard>,
        client: Option<IpAddr>,
    ) -> Result<(), Box<Response>> {
        // A request whose listener gave no address shares one bucket:
        // never unlimited.
        let ip = client.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        if guard.is_some_and(|g| g.is_exempt(ip)) {
            return Ok(());
        }
        let taken = self
            .buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(Instant::now(), &client_key(ip));
        taken.map_err(|wait| {
            Box::new(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, retry_after_secs(wait).to_string())],
                    "too many new streams from this address; each reserves capacity\n",
                )
                    .into_response(),
            )
        })
    }
}
