//! Tokens verified lately. Pushpin replays a client's URL, `?token=` included, on every
//! WebSocket-over-HTTP request of its connection, so one token would otherwise be verified
//! again (signature, claims) for every message its client sends. A verified token is kept by
//! its SHA-256 with the key set that verified it (new keys, after a rotation or a refresh,
//! drop every entry) and used until its `exp`; refusals are never kept. Entries count their
//! token's length plus [`ENTRY_OVERHEAD`], at most [`MAX_BYTES`] in all; past that the cache
//! starts over. Counted in `restream_auth_token_cache_total{event="hit"|"miss"}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::claims::Claims;
use super::keys::KeySet;

/// Most bytes of tokens represented (4 MiB: thousands of connections' tokens).
pub const MAX_BYTES: usize = 4 << 20;

/// What an entry counts besides its token's length (the digest, the claims' fixed part).
pub const ENTRY_OVERHEAD: usize = 96;

#[derive(Default)]
struct Inner {
    /// The key set the entries were verified with.
    keys: Option<Arc<KeySet>>,
    entries: HashMap<[u8; 32], Claims>,
    bytes: usize,
}

#[derive(Default)]
pub struct VerifiedTokens {
    inner: Mutex<Inner>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn count(event: &str) {
    crate::metrics::get()
        .auth_token_cache
        .with_label_values(&[event])
        .inc();
}

impl VerifiedTokens {
    /// The claims of `token` if `keys` verified it and it has not expired at `now`.
    pub fn get(&self, keys: &Arc<KeySet>, token: &str, now: u64) -> Option<Claims> {
        let digest = digest(token);
        let inner = self.inner.lock().expect("verified tokens lock");
        let current = inner.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, keys));
        let claims = match current {
            true => inner.entries.get(&digest).filter(|c| c.exp > now).cloned(),
            false => None,
        };
        drop(inner);
        count(if claims.is_some() { "hit" } else { "miss" });
        claims
    }

    /// Keeps `claims`, which `keys` verified for `token`.
    pub fn insert(&self, keys: &Arc<KeySet>, token: &str, claims: &Claims) {
        let digest = digest(token);
        let size = token.len() + ENTRY_OVERHEAD;
        let mut inner = self.inner.lock().expect("verified tokens lock");
        let current = inner.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, keys));
        if !current || inner.bytes + size > MAX_BYTES {
            *inner = Inner {
                keys: Some(keys.clone()),
                ..Inner::default()
            };
        }
        if inner.entries.insert(digest, claims.clone()).is_none() {
            inner.bytes += size;
        }
    }

    /// Bytes counted for the entries held.
    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("verified tokens lock").bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: None,
            exp,
            channels: Vec::new(),
            publish: Vec::new(),
        }
    }

    #[test]
    fn a_token_is_kept_for_its_keys_until_it_expires() {
        let cache = VerifiedTokens::default();
        let keys = Arc::new(KeySet::default());
        assert_eq!(cache.get(&keys, "t1", 10), None);
        cache.insert(&keys, "t1", &claims(100));
        assert_eq!(cache.get(&keys, "t1", 10), Some(claims(100)));
        assert_eq!(cache.get(&keys, "t2", 10), None, "another token");
        assert_eq!(cache.get(&keys, "t1", 100), None, "expired at its exp");
        let rotated = Arc::new(KeySet::default());
        assert_eq!(
            cache.get(&rotated, "t1", 10),
            None,
            "other keys verify again"
        );
        cache.insert(&rotated, "t3", &claims(100));
        assert_eq!(cache.get(&keys, "t3", 10), None);
        assert_eq!(
            cache.get(&rotated, "t1", 10),
            None,
            "entries of old keys are gone"
        );
        assert_eq!(cache.bytes(), 2 + ENTRY_OVERHEAD);
    }

    #[test]
    fn holds_at_most_its_bytes() {
        let cache = VerifiedTokens::default();
        let keys = Arc::new(KeySet::default());
        let long = "x".repeat(MAX_BYTES / 3);
        for n in 0..3 {
            cache.insert(&keys, &format!("{n}{long}"), &claims(100));
        }
        assert!(cache.bytes() <= MAX_BYTES);
        assert_eq!(cache.get(&keys, &format!("2{long}"), 10), Some(claims(100)));
        assert_eq!(
            cache.get(&keys, &format!("0{long}"), 10),
            None,
            "started over"
        );
    }
}
