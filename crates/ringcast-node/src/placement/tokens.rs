//! Stream tokens at the serving node: the cluster keys they are signed
//! with (a key rotation changes them while the node runs), and the data
//! path's resolver: a stream request's token, title and disk checked, its
//! file found, an HLS playlist rewritten so its segments come straight
//! back to the serving node's service address under the stream's token.
//!
//! Claim 13 on the wire: a node serves a token made out to itself, or to a
//! node whose service address it holds now (that node failed, and players
//! keep asking the address). The file comes from the token's disk when this
//! node reaches it and it works, else from another disk of this node that
//! holds the title, else the request is sent back to placement (`307` to the
//! play URL of the same stream), as is a request whose token expired.

use std::path::PathBuf;
use std::time::Duration;

use ringcast_files::stream::{Refusal, RequestHead, Resolve, Resolved};
use ringcast_proto::service;
use ringcast_proto::token::{StreamToken, TokenError};
use ringcast_proto::DiskId;

use super::service::{unix_now, Streaming, MAX_PLAYLIST, STREAM_PREFIX, TOKEN_LIFETIME};
use crate::library::catalog::{self, Title};

/// The longest a playlist's segment tokens stay valid: a day of video.
pub const MAX_PLAYLIST_TOKEN: Duration = Duration::from_secs(24 * 3600);

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

    /// Whether this node serves tokens made out to `node`: its own, those
    /// of a node whose service address it holds under its map, and those of
    /// a node whose address it still listens on while it hands it on
    /// (claim 13: the grace in which both holders listen, so that no
    /// request in between is turned away).
    fn serves_for(&self, node: ringcast_proto::NodeId) -> bool {
        if node == self.me {
            return true;
        }
        if self
            .holdings
            .holds(ringcast_proto::service::Address::Node(node))
        {
            return true;
        }
        let snap = self
            .shared
            .snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner());
        snap.map.as_ref().is_some_and(|m| {
            service::holder_of(m, snap.tables.as_ref(), &self.priority, node) == Some(self.me)
        })
    }

    /// The disk to read `title` from for `token`: the token's own when this
    /// node reaches it, the tables say it works and it holds the title (a
    /// playlist's segments may lie on other disks than the playlist), else
    /// another disk of this node that holds the title and works.
    fn pick_disk(&self, token: &StreamToken, title: &Title) -> Option<(DiskId, PathBuf)> {
        let snap = self
            .shared
            .snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let works = |d: DiskId| {
            snap.tables
                .as_ref()
                .is_none_or(|t| t.serves_from(self.me, d))
        };
        let catalogs = self.catalogs.read().unwrap_or_else(|e| e.into_inner());
        // A disk holds the title when its last scan listed it; a disk not
        // scanned yet is asked (the open says whether it is there).
        let holds = |d: &DiskId| catalogs.get(d).is_none_or(|c| c.titles.contains_key(title));
        if let Some(mount) = self.mounts.get(&token.disk) {
            if works(token.disk) && holds(&token.disk) {
                return Some((token.disk, mount.clone()));
            }
        }
        self.mounts
            .iter()
            .find(|(d, _)| {
                **d != token.disk
                    && works(**d)
                    && catalogs
                        .get(d)
                        .is_some_and(|c| c.titles.contains_key(title))
            })
            .map(|(d, m)| (*d, m.clone()))
    }

    /// Where a request goes back to placement: the play URL of the same
    /// stream at the cluster address, or this node's service address.
    fn replace(&self, title: &str, stream: u64, why: &str) -> Refusal {
        let me = self.service.of_node(self.me, self.shared.http);
        let entry = self.service.cluster.unwrap_or(me);
        self.shared.metrics.count_placement("sent_back");
        Refusal::new(307, why)
            .with_header(
                "Location",
                self.shared
                    .web()
                    .url(entry, &format!("/v1/play/{title}?stream={stream}")),
            )
            .with_header("Access-Control-Allow-Origin", "*")
    }

    fn resolve_stream(&self, req: &RequestHead) -> Result<Resolved, Refusal> {
        let deny = |status: u16, message: &str| Refusal::new(status, message);
        let rest = req.path.strip_prefix(STREAM_PREFIX).unwrap_or_default();
        let (text, requested) = rest
            .split_once('/')
            .ok_or_else(|| deny(404, "no such stream"))?;
        let title = catalog::parse_title(requested).map_err(|e| deny(400, &e.to_string()))?;
        let token = match self.verify_token(text) {
            Ok(t) => t,
            Err(TokenError::Expired(t)) if t.grants(title.as_str()) => {
                return Err(self.replace(title.as_str(), t.stream, "the stream token expired"));
            }
            Err(e) => return Err(deny(403, &e.to_string())),
        };
        if !token.grants(title.as_str()) {
            return Err(deny(403, "the stream token is for another title"));
        }
        if !self.serves_for(token.node) {
            // A good token that reached the wrong node: a connection kept
            // alive across a move of its address, or a map that moved on
            // since placement. Placement knows where the stream is now.
            return Err(self.replace(
                title.as_str(),
                token.stream,
                "the stream token is for a node whose address is not held here",
            ));
        }
        self.note_stream(token.stream);
        let Some((disk, mount)) = self.pick_disk(&token, &title) else {
            return Err(self.replace(
                title.as_str(),
                token.stream,
                "this node reaches no working disk holding the title",
            ));
        };
        let gate = self.gate(disk);
        let Some(_pass) = gate.enter() else {
            return Err(
                Refusal::new(503, "the disk is busy; ask again").with_header("Retry-After", "1")
            );
        };
        let (_file, path) = catalog::open_title(&mount, &title).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => deny(404, "no such title on that disk"),
            std::io::ErrorKind::PermissionDenied => deny(404, "no such title on that disk"),
            _ => Refusal::new(503, "the disk cannot be read; ask the play URL again")
                .with_header("Retry-After", "1"),
        })?;
        let content_type = ringcast_files::stream::content_type_for(title.as_str());
        if title
            .as_str()
            .ends_with(ringcast_proto::token::PLAYLIST_SUFFIX)
        {
            return self.playlist(&path, &title, &token, content_type);
        }
        Ok(Resolved::File {
            path,
            content_type: content_type.into(),
            disk: disk.0,
        })
    }

    /// HLS: the playlist's relative URIs (segments, variant playlists) are
    /// rewritten to absolute stream URLs of the same stream at the serving
    /// node's service address, under a token this node signs for as long as
    /// the playlist plays: a player fetches them straight from there, on
    /// its keep-alive connection, with no redirect and no placement.
    fn playlist(
        &self,
        path: &std::path::Path,
        title: &Title,
        token: &StreamToken,
        content_type: &str,
    ) -> Result<Resolved, Refusal> {
        let unreadable = |m: &str| Refusal::new(503, m).with_header("Retry-After", "1");
        let meta =
            std::fs::metadata(path).map_err(|_| unreadable("the playlist cannot be read"))?;
        if meta.len() > MAX_PLAYLIST {
            return Err(unreadable("the playlist is too large"));
        }
        let text =
            std::fs::read_to_string(path).map_err(|_| unreadable("the playlist cannot be read"))?;
        let playing = Duration::from_secs_f64(playlist_seconds(&text).min(1e6));
        let lifetime = (TOKEN_LIFETIME + playing * 2).min(MAX_PLAYLIST_TOKEN);
        let segments = StreamToken {
            expires: unix_now() + lifetime.as_secs(),
            ..token.clone()
        }
        .sign(&self.signing_key());
        let at = self.service.of_node(token.node, self.http_of(token.node));
        let folder = title.folder().map(|f| format!("{f}/")).unwrap_or_default();
        let scheme = self.shared.web().scheme();
        let mut out = String::with_capacity(text.len() * 2);
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') || l.contains("://") || l.starts_with('/') {
                out.push_str(line);
            } else {
                out.push_str(&format!(
                    "{scheme}://{at}{STREAM_PREFIX}{segments}/{folder}{l}"
                ));
            }
            out.push('\n');
        }
        let etag = format!("\"pl-{:x}-{}\"", meta.len(), token.stream);
        Ok(Resolved::Bytes {
            body: out.into_bytes(),
            content_type: content_type.to_string().into(),
            etag,
        })
    }

    /// The own HTTP listener of `node`, from the map (this node's when unknown).
    fn http_of(&self, node: ringcast_proto::NodeId) -> std::net::SocketAddr {
        let snap = self
            .shared
            .snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner());
        snap.map
            .as_ref()
            .and_then(|m| m.member(node))
            .map_or(self.shared.http, |m| m.addrs.http)
    }
}

/// The playing time of a media playlist: the sum of its `#EXTINF` durations.
fn playlist_seconds(text: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("#EXTINF:"))
        .filter_map(|rest| rest.split(',').next()?.trim().parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
        .sum()
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

#[cfg(test)]
mod tests {
    use super::playlist_seconds;

    #[test]
    fn a_playlist_plays_for_the_sum_of_its_segments() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\nseg0.ts\n#EXTINF:1.5,\nseg1.ts\n#EXTINF:nan,\n#EXT-X-ENDLIST\n";
        assert!((playlist_seconds(text) - 3.5).abs() < 1e-9);
        assert_eq!(playlist_seconds("#EXTM3U\n"), 0.0);
    }
}
