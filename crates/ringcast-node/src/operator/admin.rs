//! Admin actions' authentication: `Authorization: Bearer <admin token>`,
//! the token of the file the cluster file's `admin_token_file` names. The
//! node holds only its digest and compares digests in constant time
//! (`SECURITY.md`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Extension;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ringcast_files::buckets::{client_key, retry_after_secs};
use ringcast_files::httpd::ClientIp;
use ringcast_proto::NodeId;

use crate::host::shared::Shared;

/// Why an admin request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdminRefusal {
    /// The cluster has no admin token: admin actions are off.
    #[error("no admin token is configured for this cluster")]
    NotConfigured,
    /// The request carries no token, or another one.
    #[error("a valid admin token is required (Authorization: Bearer ...)")]
    InvalidToken,
    /// This client address failed too often lately: no token is checked
    /// for it until its budget refills.
    #[error("too many failed admin attempts from this address; retry in {retry_after_s} s")]
    TooManyFailures {
        /// Seconds until one more attempt is allowed.
        retry_after_s: u64,
    },
}

impl IntoResponse for AdminRefusal {
    fn into_response(self) -> Response {
        let status = match self {
            AdminRefusal::NotConfigured => StatusCode::FORBIDDEN,
            AdminRefusal::InvalidToken => StatusCode::UNAUTHORIZED,
            AdminRefusal::TooManyFailures { .. } => StatusCode::TOO_MANY_REQUESTS,
        };
        let mut response = (status, format!("{self}\n")).into_response();
        if let AdminRefusal::TooManyFailures { retry_after_s } = self {
            if let Ok(v) = retry_after_s.to_string().parse() {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// The admin token of the request, if it is the configured one. A client
/// address (`client`, from the listener) whose failures spent
/// [`ADMIN_FAILURES`] is refused before any token is looked at; each
/// failure spends one.
///
/// [`ADMIN_FAILURES`]: crate::host::shared::ADMIN_FAILURES
pub fn check_admin(
    shared: &Shared,
    headers: &HeaderMap,
    client: Option<Extension<ClientIp>>,
) -> Result<String, AdminRefusal> {
    let expected = shared
        .admin_token_sha256
        .ok_or(AdminRefusal::NotConfigured)?;
    // A request whose listener gave no address shares one budget: never
    // unlimited.
    let client = Some(client.map_or(
        std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        |Extension(ClientIp(ip))| client_key(ip),
    ));
    let mut failures = shared
        .admin_failures
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    if let Some(ip) = client {
        if !failures.has_token(now, &ip) {
            return Err(AdminRefusal::TooManyFailures {
                retry_after_s: retry_after_secs(Duration::from_secs(1)),
            });
        }
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if expected.matches(g) => Ok(g.to_string()),
        _ => {
            if let Some(ip) = client {
                let _ = failures.take(now, &ip);
            }
            Err(AdminRefusal::InvalidToken)
        }
    }
}

/// An admin request: its handler runs only once [`check_admin`] passed,
/// and gets the token (to pass on to another node). Every admin route
/// takes it, so none can forget the check.
#[derive(Debug)]
pub struct Admin(pub String);

impl axum::extract::FromRequestParts<Arc<Shared>> for Admin {
    type Rejection = AdminRefusal;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        shared: &Arc<Shared>,
    ) -> Result<Admin, AdminRefusal> {
        let client = parts.extensions.get::<ClientIp>().copied().map(Extension);
        check_admin(shared, &parts.headers, client).map(Admin)
    }
}

/// Passes an admin action on to node `id` (`POST` of `path` at its HTTP
/// address from this node's map), with the token already checked here; the
/// node checks it again. For the dashboard, which talks to one node only.
pub async fn forward(shared: &Shared, id: NodeId, token: String, path: &'static str) -> Response {
    let snap = shared.snapshot();
    let Some(http) = snap
        .map
        .as_ref()
        .and_then(|m| m.member(id))
        .map(|m| m.addrs.http)
    else {
        return (StatusCode::NOT_FOUND, "no such node in the cluster map\n").into_response();
    };
    let web = shared.web();
    let url = web.url(http, path);
    let forwarded = tokio::task::spawn_blocking(move || {
        let agent = web.agent(Duration::from_secs(1));
        match agent
            .post(&url)
            .set("Authorization", &format!("Bearer {token}"))
            .call()
        {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => (
                502,
                format!("node {} at {http} did not answer: {e}\n", id.0),
            ),
        }
    })
    .await;
    match forwarded {
        Ok((code, body)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY),
            body,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "forwarding failed\n").into_response(),
    }
}
