//! Admin actions' authentication: `Authorization: Bearer <admin token>`,
//! the token of the file the cluster file's `admin_token_file` names,
//! compared in constant time (`SECURITY.md`).

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

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
}

impl IntoResponse for AdminRefusal {
    fn into_response(self) -> Response {
        let status = match self {
            AdminRefusal::NotConfigured => StatusCode::FORBIDDEN,
            AdminRefusal::InvalidToken => StatusCode::UNAUTHORIZED,
        };
        (status, format!("{self}\n")).into_response()
    }
}

/// The admin token of the request, if it is the configured one.
pub fn check_admin(shared: &Shared, headers: &HeaderMap) -> Result<String, AdminRefusal> {
    let expected = shared
        .admin_token
        .as_deref()
        .ok_or(AdminRefusal::NotConfigured)?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), expected.as_bytes()) => Ok(g.to_string()),
        _ => Err(AdminRefusal::InvalidToken),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
