//! DESIGN 6 and claim 13: the signed stream token a client is sent to its
//! serving node with. It names the title, the disk, the node that serves it
//! (and so the service address it is served at, whoever holds that address
//! now), the stream it belongs to and when it expires, and carries an HMAC
//! under a key derived from the cluster key, so no client can forge or alter
//! one. A token for an HLS playlist also grants the files of its folder (the
//! playlist's segments and variants), so a stream is placed once, at its
//! playlist, and its segments go straight to the serving node.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

use crate::ids::{DiskId, NodeId};

/// Longest token text accepted, before any decoding.
pub const MAX_TOKEN_LEN: usize = 1024;
const TAG_LEN: usize = 32;
const DOMAIN: &[u8] = b"ringcast stream token v1";

/// What a token grants: reading one title from one disk on one node until it expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamToken {
    /// The title.
    pub title: String,
    /// The disk to read it from.
    pub disk: DiskId,
    /// The node that serves it.
    pub node: NodeId,
    /// The stream the request belongs to (placement keeps a stream on its node).
    pub stream: u64,
    /// Unix time in seconds after which the token is refused.
    pub expires: u64,
}

/// A token that must be refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not of the form `<hex>.<hex>`, too long, or not decodable.
    #[error("the stream token is malformed")]
    Malformed,
    /// The tag does not match: forged or altered.
    #[error("the stream token's signature is not valid")]
    BadSignature,
    /// Past its expiry; the token is authentic, so its stream may be placed
    /// again.
    #[error("the stream token has expired")]
    Expired(Box<StreamToken>),
}

/// The suffix of the titles whose token grants their whole folder.
pub const PLAYLIST_SUFFIX: &str = ".m3u8";

fn mac(cluster_key: &[u8; 32]) -> Hmac<Sha256> {
    // A key of its own, derived from the cluster key, so tokens and frames
    // never share a MAC key.
    let mut derive =
        <Hmac<Sha256> as Mac>::new_from_slice(cluster_key).expect("HMAC accepts any key length");
    derive.update(DOMAIN);
    let key = derive.finalize().into_bytes();
    <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC accepts any key length")
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex only: one text per token, so no two texts verify alike.
fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl StreamToken {
    /// The token as URL-safe text: hex payload, a dot, hex tag.
    pub fn sign(&self, cluster_key: &[u8; 32]) -> String {
        let payload = postcard::to_allocvec(self).expect("tokens always serialize");
        let mut m = mac(cluster_key);
        m.update(&payload);
        let tag = m.finalize().into_bytes();
        format!("{}.{}", to_hex(&payload), to_hex(&tag))
    }

    /// Checks a token's signature and expiry at `now_unix` seconds.
    pub fn verify(
        text: &str,
        cluster_key: &[u8; 32],
        now_unix: u64,
    ) -> Result<StreamToken, TokenError> {
        if text.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (payload, tag) = text.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = from_hex(payload).ok_or(TokenError::Malformed)?;
        let tag = from_hex(tag).ok_or(TokenError::Malformed)?;
        if tag.len() != TAG_LEN {
            return Err(TokenError::Malformed);
        }
        let mut m = mac(cluster_key);
        m.update(&payload);
        m.verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
        let (token, rest) = postcard::take_from_bytes::<StreamToken>(&payload)
            .map_err(|_| TokenError::Malformed)?;
        if !rest.is_empty() {
            return Err(TokenError::Malformed);
        }
        if now_unix > token.expires {
            return Err(TokenError::Expired(Box::new(token)));
        }
        Ok(token)
    }

    /// Whether the token grants `requested` (a title): its own title, or,
    /// for an HLS playlist, any file of the playlist's folder (a playlist
    /// at the top of the library grants only itself: its folder is every
    /// title).
    pub fn grants(&self, requested: &str) -> bool {
        if requested == self.title {
            return true;
        }
        if !self.title.ends_with(PLAYLIST_SUFFIX) {
            return false;
        }
        match (self.title.rsplit_once('/'), requested.rsplit_once('/')) {
            (Some((folder, _)), Some((wanted, name))) => {
                folder == wanted && !name.is_empty() && !wanted.is_empty()
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [5; 32];

    fn token() -> StreamToken {
        StreamToken {
            title: "movie/index.m3u8".into(),
            disk: DiskId(3),
            node: NodeId(2),
            stream: 77,
            expires: 1_000,
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let text = token().sign(&KEY);
        assert_eq!(StreamToken::verify(&text, &KEY, 999), Ok(token()));
        assert_eq!(StreamToken::verify(&text, &KEY, 1_000), Ok(token()));
        assert_eq!(
            StreamToken::verify(&text, &KEY, 1_001),
            Err(TokenError::Expired(Box::new(token())))
        );
    }

    #[test]
    fn a_playlist_token_grants_its_folder_and_nothing_else() {
        let t = token();
        assert!(t.grants("movie/index.m3u8"));
        assert!(t.grants("movie/seg3.ts"));
        assert!(t.grants("movie/720p.m3u8"));
        assert!(!t.grants("other/seg3.ts"));
        assert!(!t.grants("movie.mp4"));
        assert!(!t.grants("movie/"));
        let mp4 = StreamToken {
            title: "movie.mp4".into(),
            ..token()
        };
        assert!(mp4.grants("movie.mp4"));
        assert!(!mp4.grants("other.mp4"));
        let top = StreamToken {
            title: "index.m3u8".into(),
            ..token()
        };
        assert!(!top.grants("seg3.ts"));
    }

    #[test]
    fn another_key_or_an_altered_payload_is_refused() {
        let text = token().sign(&KEY);
        assert_eq!(
            StreamToken::verify(&text, &[6; 32], 0),
            Err(TokenError::BadSignature)
        );
        let mut other = token();
        other.title = "other.mp4".into();
        let forged = format!(
            "{}.{}",
            other.sign(&[6; 32]).split_once('.').unwrap().0,
            text.split_once('.').unwrap().1
        );
        assert_eq!(
            StreamToken::verify(&forged, &KEY, 0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in ["", ".", "abc", "zz.zz", "00.00", &"a".repeat(2000)] {
            assert_eq!(
                StreamToken::verify(bad, &KEY, 0),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics_the_verifier(s in ".{0,300}") {
            let _ = StreamToken::verify(&s, &KEY, 0);
        }

        #[test]
        fn a_flipped_character_is_never_accepted(i in 0usize..200, c in proptest::char::range('0', 'f')) {
            let text = token().sign(&KEY);
            let i = i % text.len();
            let mut chars: Vec<char> = text.chars().collect();
            prop_assume!(chars[i] != c && chars[i] != '.');
            chars[i] = c;
            let altered: String = chars.into_iter().collect();
            prop_assert!(StreamToken::verify(&altered, &KEY, 0).is_err());
        }
    }
}
