//! The items and status API's read cache: a channel's pages and item count at one `seq`, so
//! repeated reads of an unchanged channel do no store read. A changed channel has a new seq,
//! so its old entries are never served again and age out. Bounded by the items it holds
//! (least recently used first out), whatever strangers ask for; hits, misses and evictions are
//! counted in `restream_read_cache_events_total`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::channel::ChannelId;
use crate::store::Page;

/// Longest cursor whose page is cached (a longer one is read from the store each time).
const MAX_CACHED_CURSOR: usize = 256;

/// What is cached: one read of one channel at one seq.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReadKey {
    Count {
        channel: ChannelId,
        seq: u64,
    },
    Page {
        channel: ChannelId,
        seq: u64,
        after: Option<String>,
        limit: usize,
    },
}

impl ReadKey {
    fn cacheable(&self) -> bool {
        match self {
            ReadKey::Count { .. } => true,
            ReadKey::Page { after, .. } => {
                after.as_ref().is_none_or(|a| a.len() <= MAX_CACHED_CURSOR)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum Cached {
    Count(u64),
    Page(Arc<Page>),
}

impl Cached {
    /// Its share of the capacity: the items it holds (at least 1).
    fn weight(&self) -> usize {
        match self {
            Cached::Count(_) => 1,
            Cached::Page(p) => p.items.len().max(1),
        }
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<ReadKey, (u64, Cached)>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, ReadKey>,
    weight: usize,
    tick: u64,
}

/// At most `capacity` items' worth of reads; 0 caches nothing.
pub struct ReadCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl ReadCache {
    pub fn new(capacity: usize) -> ReadCache {
        ReadCache {
            capacity,
            inner: Mutex::default(),
        }
    }

    pub fn get(&self, key: &ReadKey) -> Option<Cached> {
        let metrics = &crate::metrics::get().read_cache;
        let mut inner = self.inner.lock().expect("read cache lock");
        inner.tick += 1;
        let tick = inner.tick;
        let Some((used, value)) = inner.entries.get_mut(key) else {
            metrics.with_label_values(&["miss"]).inc();
            return None;
        };
        let (old, value) = (std::mem::replace(used, tick), value.clone());
        inner.order.remove(&old);
        inner.order.insert(tick, key.clone());
        metrics.with_label_values(&["hit"]).inc();
        Some(value)
    }

    pub fn insert(&self, key: ReadKey, value: Cached) {
        let weight = value.weight();
        if weight > self.capacity || !key.cacheable() {
            return;
        }
        let mut inner = self.inner.lock().expect("read cache lock");
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((old, previous)) = inner.entries.insert(key.clone(), (tick, value)) {
            inner.order.remove(&old);
            inner.weight -= previous.weight();
        }
        inner.order.insert(tick, key);
        inner.weight += weight;
        while inner.weight > self.capacity {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some((_, gone)) = inner.entries.remove(&oldest) {
                inner.weight -= gone.weight();
                crate::metrics::get()
                    .read_cache
                    .with_label_values(&["eviction"])
                    .inc();
            }
        }
    }

    /// Entries held (for tests).
    pub fn len(&self) -> usize {
        self.inner.lock().expect("read cache lock").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredItem;

    fn page(n: usize) -> Cached {
        let item = |i: usize| StoredItem {
            id: format!("{i}"),
            hash: String::new(),
            data: serde_json::Map::new(),
            seq: 1,
            first_seen: 0,
            last_changed: 0,
        };
        Cached::Page(Arc::new(Page {
            items: (0..n).map(item).collect(),
            ..Page::default()
        }))
    }

    fn key(seq: u64, after: Option<&str>) -> ReadKey {
        ReadKey::Page {
            channel: ChannelId::parse("c").unwrap(),
            seq,
            after: after.map(str::to_string),
            limit: 10,
        }
    }

    #[test]
    fn holds_at_most_its_capacity_and_evicts_the_least_recently_used() {
        let cache = ReadCache::new(10);
        cache.insert(key(1, None), page(4));
        cache.insert(key(1, Some("a")), page(4));
        assert!(cache.get(&key(1, None)).is_some(), "a hit");
        assert!(cache.get(&key(2, None)).is_none(), "another seq misses");
        cache.insert(key(1, Some("b")), page(4));
        assert!(
            cache.get(&key(1, Some("a"))).is_none(),
            "least recently used went"
        );
        assert!(cache.get(&key(1, None)).is_some());
        assert_eq!(cache.len(), 2);
        cache.insert(key(1, Some("huge")), page(11));
        assert!(
            cache.get(&key(1, Some("huge"))).is_none(),
            "larger than the cache"
        );
        let long = "x".repeat(MAX_CACHED_CURSOR + 1);
        cache.insert(key(1, Some(&long)), page(1));
        assert!(
            cache.get(&key(1, Some(&long))).is_none(),
            "long cursors are not kept"
        );
        // Strangers' distinct cursors never grow it past its capacity.
        for i in 0..1000 {
            cache.insert(key(1, Some(&i.to_string())), page(1));
        }
        assert_eq!(cache.len(), 10);
        let empty = ReadCache::new(0);
        empty.insert(key(1, None), Cached::Count(3));
        assert!(empty.is_empty(), "capacity 0 caches nothing");
    }
}
