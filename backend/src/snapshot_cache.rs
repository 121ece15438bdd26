//! The current snapshot message of channels polled here, so a fresh WebSocket subscribe gets
//! it inline in its WOH response instead of a publish Pushpin must route back to it.
//!
//! A poller offers its snapshot when it answers a fresh subscriber (never on its own, so an
//! idle channel costs nothing) and forgets it before every commit and when it stops: an entry
//! is always the channel's state at its `seq`. A subscribe answered from here still asks the
//! poller to resume it after that `seq`, so an event committed meanwhile is not missed.
//! Bounded by bytes (`state.snapshot_cache_bytes`, 0 = off); a snapshot larger than Pushpin
//! 1.36 delivers from a WOH response ([`MAX_INLINE_BYTES`]) is never kept. Counted in
//! `restream_snapshot_cache_events_total` and `restream_snapshot_cache_bytes`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::channel::ChannelId;

/// Largest message kept: Pushpin 1.36 holds back a WOH response message over 16 KiB until
/// the client's next message (reference §5.4).
pub const MAX_INLINE_BYTES: usize = 16 * 1024;

/// One channel's snapshot message at `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentSnapshot {
    pub seq: u64,
    pub message: Arc<str>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<ChannelId, CurrentSnapshot>,
    bytes: usize,
}

/// At most `capacity` bytes of snapshot messages; 0 keeps nothing.
pub struct SnapshotCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl Default for SnapshotCache {
    /// Keeps nothing (tests and embedders that do not configure it).
    fn default() -> SnapshotCache {
        SnapshotCache::new(0)
    }
}

impl SnapshotCache {
    pub fn new(capacity: usize) -> SnapshotCache {
        SnapshotCache {
            capacity,
            inner: Mutex::default(),
        }
    }

    /// The channel's snapshot, when its poller offered one since its last commit.
    pub fn current(&self, channel: &ChannelId) -> Option<CurrentSnapshot> {
        if self.capacity == 0 {
            return None;
        }
        let found = self.lock().entries.get(channel).cloned();
        if found.is_some() {
            event("inline");
        }
        found
    }

    /// Keeps `message` as the channel's snapshot at `seq` (replacing an older one) unless it
    /// is too large to send inline or the cache is full.
    pub fn offer(&self, channel: &ChannelId, seq: u64, message: &str) {
        if self.capacity == 0 {
            return;
        }
        if message.len() > MAX_INLINE_BYTES {
            return event("too_large");
        }
        let mut inner = self.lock();
        let replaced = match inner.entries.get(channel) {
            Some(kept) if kept.seq == seq => return, // Already current.
            Some(kept) => kept.message.len(),
            None => 0,
        };
        if inner.bytes - replaced + message.len() > self.capacity {
            return event("full");
        }
        let current = CurrentSnapshot {
            seq,
            message: Arc::from(message),
        };
        inner.entries.insert(channel.clone(), current);
        inner.bytes = inner.bytes - replaced + message.len();
        crate::metrics::get()
            .snapshot_cache_bytes
            .set(inner.bytes as i64);
        event("stored");
    }

    /// Drops the channel's snapshot: it is about to change, or its poller stopped.
    pub fn forget(&self, channel: &ChannelId) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if let Some(gone) = inner.entries.remove(channel) {
            inner.bytes -= gone.message.len();
            crate::metrics::get()
                .snapshot_cache_bytes
                .set(inner.bytes as i64);
        }
    }

    /// Bytes of messages held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("snapshot cache lock")
    }
}

fn event(name: &str) {
    crate::metrics::get()
        .snapshot_cache
        .with_label_values(&[name])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ChannelId {
        ChannelId::parse(name).unwrap()
    }

    #[test]
    fn keeps_the_offered_snapshot_until_forgotten() {
        let cache = SnapshotCache::new(1000);
        assert_eq!(cache.current(&id("a")), None);
        cache.offer(&id("a"), 3, "{\"seq\":3}");
        let current = cache.current(&id("a")).unwrap();
        assert_eq!((current.seq, &*current.message), (3, "{\"seq\":3}"));
        cache.offer(&id("a"), 4, "{\"seq\":4,\"x\":1}");
        assert_eq!(
            cache.current(&id("a")).unwrap().seq,
            4,
            "a newer one replaces it"
        );
        assert_eq!(cache.bytes(), "{\"seq\":4,\"x\":1}".len());
        cache.forget(&id("a"));
        assert_eq!(cache.current(&id("a")), None);
        assert_eq!(cache.bytes(), 0);
        cache.forget(&id("a")); // Forgetting twice is harmless.
    }

    #[test]
    fn holds_at_most_its_capacity_and_nothing_pushpin_would_hold_back() {
        let cache = SnapshotCache::new(25);
        cache.offer(&id("a"), 1, &"a".repeat(10));
        cache.offer(&id("b"), 1, &"b".repeat(10));
        cache.offer(&id("c"), 1, &"c".repeat(10));
        assert!(cache.current(&id("c")).is_none(), "full: not kept");
        assert_eq!(cache.bytes(), 20);
        cache.offer(&id("a"), 2, &"a".repeat(15));
        assert_eq!(cache.bytes(), 25, "a replacement counts only its growth");
        cache.forget(&id("b"));
        cache.offer(&id("c"), 1, &"c".repeat(10));
        assert!(cache.current(&id("c")).is_some(), "room again");

        let big = SnapshotCache::new(1 << 20);
        big.offer(&id("a"), 1, &"x".repeat(MAX_INLINE_BYTES + 1));
        assert!(big.current(&id("a")).is_none(), "over 16 KiB: not inline");
        big.offer(&id("a"), 1, &"x".repeat(MAX_INLINE_BYTES));
        assert!(big.current(&id("a")).is_some());

        let off = SnapshotCache::new(0);
        off.offer(&id("a"), 1, "{}");
        assert!(off.current(&id("a")).is_none(), "capacity 0 keeps nothing");
    }
}
