//! The head of a stream request: parsed from the raw socket's bytes
//! (httparse) or taken from a request hyper already parsed.

use axum::http;

use crate::limits::MAX_HEAD;

/// The most header fields a request may carry (more: `431`).
pub const MAX_HEADERS: usize = 64;

/// The head of an HTTP request, as the [`Resolve`] implementation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, as sent (methods are case-sensitive): `GET`, `HEAD`, ...
    pub method: String,
    /// The path of the request target, still percent-encoded, starting
    /// with `/` (an absolute-form target is reduced to its path), or `*`
    /// for `OPTIONS *`.
    pub path: String,
    /// The query of the request target, without the `?`, if there is one.
    pub query: Option<String>,
    /// The minor version of HTTP/1.x: 0 or 1.
    pub minor_version: u8,
    /// The header fields in the order received, names lowercased, values
    /// trimmed (bytes that are not UTF-8 are replaced); at most
    /// [`MAX_HEADERS`] of them.
    pub headers: Vec<(String, String)>,
}

/// Why a request head cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Longer than [`MAX_HEAD`] or with more than [`MAX_HEADERS`] fields:
    /// `431`.
    #[error("request header fields too large")]
    TooLarge,
    /// Not an HTTP/1.x request head: `400`.
    #[error("malformed request head")]
    Malformed,
}

impl RequestHead {
    /// Parses a request head at the start of `buf`: `Ok(None)` while it is
    /// incomplete, or the head and the number of bytes it took. Heads longer
    /// than [`MAX_HEAD`] are refused.
    pub fn parse(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
        RequestHead::parse_limited(buf, MAX_HEAD)
    }

    /// [`RequestHead::parse`] with heads longer than `max_head` bytes
    /// refused.
    pub fn parse_limited(
        buf: &[u8],
        max_head: usize,
    ) -> Result<Option<(RequestHead, usize)>, HeadError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut fields);
        let used = match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) if n <= max_head => n,
            Ok(httparse::Status::Complete(_)) => return Err(HeadError::TooLarge),
            Ok(httparse::Status::Partial) if buf.len() >= max_head => {
                return Err(HeadError::TooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(_) => return Err(HeadError::Malformed),
        };
        let method = req.method.ok_or(HeadError::Malformed)?;
        let target = req.path.ok_or(HeadError::Malformed)?;
        let minor_version = req.version.ok_or(HeadError::Malformed)?;
        let (path, query) = split_target(target).ok_or(HeadError::Malformed)?;
        let headers = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).trim().to_string(),
                )
            })
            .collect();
        Ok(Some((
            RequestHead {
                method: method.to_string(),
                path,
                query,
                minor_version,
                headers,
            },
            used,
        )))
    }

    /// Builds the head of a request that hyper parsed (a stream request on a
    /// connection served by the API server).
    pub fn from_parts(parts: &http::request::Parts) -> RequestHead {
        RequestHead {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            minor_version: u8::from(parts.version != http::Version::HTTP_10),
            headers: parts
                .headers
                .iter()
                .take(MAX_HEADERS)
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).trim().to_string(),
                    )
                })
                .collect(),
        }
    }

    /// The value of the first header field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The values of every header field named `name` (case-insensitive).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection may carry another request after this one:
    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive`.
    pub fn wants_keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.headers_named("connection")
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if has("close") {
            false
        } else {
            self.minor_version >= 1 || has("keep-alive")
        }
    }
}

/// Splits a request target into path and query; absolute-form targets
/// (`http://host/path`) are reduced to their path.
fn split_target(target: &str) -> Option<(String, Option<String>)> {
    let origin = if target.starts_with('/') {
        target
    } else if target == "*" {
        // `OPTIONS *`: not a stream request; left to whoever serves it.
        return Some(("*".to_string(), None));
    } else {
        let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return None;
        };
        match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
            Some(i) => return Some(("/".to_string(), Some(rest[i + 1..].to_string()))),
            None => "/",
        }
    };
    let origin = origin.split('#').next().unwrap_or(origin);
    Some(match origin.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (origin.to_string(), None),
    })
}
