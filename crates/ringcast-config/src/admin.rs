//! The admin token as a node holds it: its SHA-256 digest, never the token
//! (`SECURITY.md`). A node checks an operator's token against the digest; a
//! configuration that leaks (a node's cache, a captured fetch) gives nobody
//! the power to make nodes leave or drain.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 of the cluster's admin token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AdminDigest([u8; 32]);

impl AdminDigest {
    /// The digest of `token`.
    pub fn of(token: &str) -> AdminDigest {
        AdminDigest(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `given` is the token, compared in constant time (of the
    /// digests, so the token's length leaks nothing either).
    pub fn matches(&self, given: &str) -> bool {
        AdminDigest::of(given).0.ct_eq(&self.0).into()
    }
}

/// Never the bytes: a digest is not a secret, but there is no use in
/// printing it either.
impl fmt::Debug for AdminDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminDigest(..)")
    }
}

/// In JSON: 64 hexadecimal characters.
impl Serialize for AdminDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for AdminDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&text, &mut digest)
            .map_err(|_| D::Error::custom("admin_token_sha256 is not 64 hexadecimal characters"))?;
        Ok(AdminDigest(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_itself_matches() {
        let d = AdminDigest::of("let-me-in");
        assert!(d.matches("let-me-in"));
        assert!(!d.matches("let-me-i"));
        assert!(!d.matches(""));
        let json = serde_json::to_string(&d).unwrap();
        assert!(!json.contains("let-me-in"));
        assert_eq!(serde_json::from_str::<AdminDigest>(&json).unwrap(), d);
    }
}
