//! Stream tokens at the serving node: the cluster keys they are signed
//! with (a key rotation changes them while the node runs), and the data
//! path's resolver: a stream request's token, title and disk checked, its
//! file found, an HLS playlist rewritten so every segment goes through
//! placement.

use std::path::PathBuf;

use ringcast_files::stream::{Refusal, RequestHead, Resolve, Resolved};
use ringcast_proto::token::{StreamToken, TokenError};

use super::service::{unix_now, Streaming, MAX_PLAYLIST, STREAM_PREFIX};
use crate::library::catalog::{self, Title};

impl Streaming {
    /// The cluster keys tokens derive from, as a key rotation stage has
    /// them: the first signs new tokens, and a token signed under
    /// any of them is accepted (so tokens signed by nodes one stage ahead or
    /// behind are accepted, as their frames are). Empty `keys` change nothing.
    pub fn set_keys(&self, keys: Vec<[u8; 32]>) {
        if !keys.is_empty() {
            *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        }
    }

    pub(super) fn signing_key(&self) -> [u8; 32] {
        self.keys.read().unwrap_or_else(|e| e.into_inner())[0]
    }

    fn verify_token(&self, text: &str) -> Result<StreamToken, TokenError> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let now = unix_now();
        for key in &keys {
            match StreamToken::verify(text, key, now) {
                Err(TokenError::BadSignature) => continue,
                verified => return verified,
            }
        }
        Err(TokenError::BadSignature)
    }

    fn resolve_token(&self, rest: &str) -> Result<(StreamToken, Title, PathBuf), Refusal> {
        let deny = |status: u16, message: &str| Refusal::new(status, message);
        let (token, title) = rest
            .split_once('/')
            .ok_or_else(|| deny(404, "no such stream"))?;
        let token = self
            .verify_token(token)
            .map_err(|e| deny(403, &e.to_string()))?;
        if token.node != self.me {
            return Err(deny(403, "the stream token is for another node"));
        }
        if token.title != title {
            return Err(deny(403, "the stream token is for another title"));
        }
        let title = catalog::parse_title(title).map_err(|e| deny(400, &e.to_string()))?;
        let mount = self
            .mounts
            .get(&token.disk)
            .ok_or_else(|| deny(404, "this node does not reach that disk"))?;
        let (_file, path) = catalog::open_title(mount, &title).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => deny(404, "no such title on that disk"),
            std::io::ErrorKind::PermissionDenied => deny(404, "no such title on that disk"),
            _ => Refusal::new(503, "the disk cannot be read; ask the play URL again")
                .with_header("Retry-After", "1"),
        })?;
        Ok((token, title, path))
    }
}

impl Resolve for Streaming {
    fn resolve(&self, req: &RequestHead) -> Result<Resolved, Refusal> {
        self.resolve_stream(req).inspect_err(|r| {
            if r.status == 503 {
                self.shared.metrics.count_unavailable("stream");
            }
        })
    }
}

impl Streaming {
    fn resolve_stream(&self, req: &RequestHead) -> Result<Resolved, Refusal> {
        let rest = req.path.strip_prefix(STREAM_PREFIX).unwrap_or_default();
        let (token, title, path) = self.resolve_token(rest)?;
        let content_type = ringcast_files::stream::content_type_for(title.as_str());
        if title.as_str().ends_with(".m3u8") {
            return playlist(&path, &title, &token, content_type);
        }
        Ok(Resolved::File {
            path,
            content_type: content_type.into(),
            disk: token.disk.0,
        })
    }
}

/// HLS: the playlist's segment URIs are rewritten to play URLs of the same
/// stream, so every segment request goes through placement.
fn playlist(
    path: &std::path::Path,
    title: &Title,
    token: &StreamToken,
    content_type: &str,
) -> Result<Resolved, Refusal> {
    let stream = token.stream;
    let unreadable = |m: &str| Refusal::new(503, m).with_header("Retry-After", "1");
    let meta = std::fs::metadata(path).map_err(|_| unreadable("the playlist cannot be read"))?;
    if meta.len() > MAX_PLAYLIST {
        return Err(unreadable("the playlist is too large"));
    }
    let text =
        std::fs::read_to_string(path).map_err(|_| unreadable("the playlist cannot be read"))?;
    let folder = title.folder().map(|f| format!("{f}/")).unwrap_or_default();
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.contains("://") || l.starts_with('/') {
            out.push_str(line);
        } else {
            out.push_str(&format!(
                "http://{}/v1/play/{folder}{l}?stream={stream}",
                token.entry
            ));
        }
        out.push('\n');
    }
    let etag = format!("\"pl-{:x}-{}\"", meta.len(), stream);
    Ok(Resolved::Bytes {
        body: out.into_bytes(),
        content_type: content_type.to_string().into(),
        etag,
    })
}
