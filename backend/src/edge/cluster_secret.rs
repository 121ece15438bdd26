//! The secret replicas share: `/internal/*` requests carry it in `Restream-Cluster-Secret`,
//! compared in constant time.

use subtle::ConstantTimeEq;

use crate::config::Secret;

/// The header a replica's `/internal/*` request carries the secret in.
pub const HEADER: &str = "Restream-Cluster-Secret";

pub struct ClusterSecret(Secret);

impl ClusterSecret {
    pub fn new(secret: Secret) -> ClusterSecret {
        ClusterSecret(secret)
    }

    /// The value to send.
    pub fn header_value(&self) -> &str {
        self.0.expose()
    }

    /// Whether `presented` (the header's bytes, if any) is the secret; the time taken does
    /// not depend on how much of it matched.
    pub fn admits(&self, presented: Option<&[u8]>) -> bool {
        let expected = self.0.expose().as_bytes();
        presented.is_some_and(|p| bool::from(p.ct_eq(expected)))
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_secret_is_admitted() {
        let s = ClusterSecret::new(Secret::new("0123456789abcdef0123"));
        assert!(s.admits(Some(b"0123456789abcdef0123")));
        assert!(!s.admits(None));
        assert!(!s.admits(Some(b"")));
        assert!(!s.admits(Some(b"0123456789abcdef012")));
        assert!(!s.admits(Some(b"0123456789abcdef01234")));
        assert!(!s.admits(Some(b"0123456789abcdef0124")));
        assert_eq!(format!("{s:?}"), "ClusterSecret(<redacted>)");
    }
}
