//! In-memory `ItemStore`, for tests and throwaway runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::channel::ChannelId;

use super::{
    aged_floor, trimmed_floor, unix_now, unix_now_ms, ChannelMeta, Commit, ItemStore, LogPage,
    LogRetention, LoggedEvent, Page, RecordWrite, StoreError, StoredItem,
};

#[derive(Default)]
struct Channel {
    meta: ChannelMeta,
    items: BTreeMap<String, StoredItem>,
    /// seq → (message, time ms).
    log: BTreeMap<u64, (String, u64)>,
    /// Unix seconds of the last commit or touch.
    last_active: u64,
}

pub struct MemoryStore {
    channels: Mutex<HashMap<ChannelId, Channel>>,
    budgets: Mutex<HashMap<String, String>>,
    /// (namespace, key) → value.
    records: Mutex<BTreeMap<(String, String), String>>,
    capacity: u64,
    writes: AtomicU64,
    retention: Option<Duration>,
}

impl MemoryStore {
    pub fn new(log_capacity: u64) -> MemoryStore {
        MemoryStore {
            channels: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
            records: Mutex::default(),
            capacity: log_capacity,
            writes: AtomicU64::new(0),
            retention: None,
        }
    }

    /// Channels inactive for longer than `retention` are removed by [`ItemStore::sweep`].
    pub fn with_retention(mut self, retention: Option<Duration>) -> MemoryStore {
        self.retention = retention;
        self
    }
}

#[async_trait]
impl ItemStore for MemoryStore {
    async fn load(
        &self,
        channel: &ChannelId,
    ) -> Result<(ChannelMeta, Vec<StoredItem>), StoreError> {
        let map = self.channels.lock().expect("store lock");
        Ok(match map.get(channel) {
            Some(c) => (c.meta.clone(), c.items.values().cloned().collect()),
            None => (ChannelMeta::default(), Vec::new()),
        })
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        if commit.fence.is_some() {
            return Err(StoreError::FenceUnsupported);
        }
        let mut map = self.channels.lock().expect("store lock");
        let c = map.entry(commit.channel.clone()).or_default();
        if c.meta.seq != commit.expected_seq {
            return Err(StoreError::Conflict {
                channel: commit.channel.to_string(),
                expected: commit.expected_seq,
                found: c.meta.seq,
            });
        }
        for item in commit.upserts {
            c.items.insert(item.id.clone(), item);
        }
        for id in &commit.removals {
            c.items.remove(id);
        }
        for e in commit.events {
            c.log.insert(e.seq, (e.message, e.time_ms));
        }
        let keep = commit.retention.unwrap_or(LogRetention {
            max_events: self.capacity,
            max_age: None,
        });
        let mut meta = commit.meta;
        meta.log_floor = trimmed_floor(meta.log_floor, meta.seq, keep.max_events);
        meta.log_floor = aged_floor(
            meta.log_floor,
            keep.cutoff_ms(unix_now_ms()),
            c.log
                .range(meta.log_floor + 1..)
                .map(|(s, (_, t))| (*s, *t)),
        );
        c.log.retain(|seq, _| *seq > meta.log_floor);
        c.meta = meta;
        c.last_active = unix_now();
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn events_after(
        &self,
        channel: &ChannelId,
        after: u64,
    ) -> Result<Option<Vec<LoggedEvent>>, StoreError> {
        let map = self.channels.lock().expect("store lock");
        let Some(c) = map.get(channel) else {
            return Ok(None);
        };
        if c.meta.seq == 0 || after < c.meta.log_floor || after > c.meta.seq {
            return Ok(None);
        }
        Ok(Some(
            c.log
                .range(after + 1..)
                .map(|(seq, (m, t))| LoggedEvent::new(*seq, m.clone(), *t))
                .collect(),
        ))
    }

    async fn log_page(
        &self,
        channel: &ChannelId,
        after: u64,
        limit: usize,
    ) -> Result<LogPage, StoreError> {
        let map = self.channels.lock().expect("store lock");
        let Some(c) = map.get(channel) else {
            return Ok(LogPage::default());
        };
        let mut rest = c
            .log
            .range(after.max(c.meta.log_floor) + 1..)
            .map(|(seq, (m, t))| LoggedEvent::new(*seq, m.clone(), *t));
        let events: Vec<LoggedEvent> = rest.by_ref().take(limit).collect();
        Ok(LogPage {
            meta: c.meta.clone(),
            events,
            more: rest.next().is_some(),
        })
    }

    async fn seq_before(&self, channel: &ChannelId, time_ms: u64) -> Result<u64, StoreError> {
        let map = self.channels.lock().expect("store lock");
        let Some(c) = map.get(channel) else {
            return Ok(0);
        };
        Ok(c.log
            .range(c.meta.log_floor + 1..)
            .take_while(|(_, (_, t))| *t < time_ms)
            .last()
            .map_or(c.meta.log_floor, |(seq, _)| *seq))
    }

    fn log_capacity(&self) -> u64 {
        self.capacity
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    async fn load_budget(&self, budget: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .budgets
            .lock()
            .expect("store lock")
            .get(budget)
            .cloned())
    }

    async fn save_budget(&self, budget: &str, usage: String) -> Result<(), StoreError> {
        self.budgets
            .lock()
            .expect("store lock")
            .insert(budget.to_string(), usage);
        Ok(())
    }

    async fn meta(&self, channel: &ChannelId) -> Result<ChannelMeta, StoreError> {
        let map = self.channels.lock().expect("store lock");
        Ok(map.get(channel).map(|c| c.meta.clone()).unwrap_or_default())
    }

    async fn item_count(&self, channel: &ChannelId) -> Result<u64, StoreError> {
        let map = self.channels.lock().expect("store lock");
        Ok(map.get(channel).map_or(0, |c| c.items.len() as u64))
    }

    async fn items_page(
        &self,
        channel: &ChannelId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let map = self.channels.lock().expect("store lock");
        let Some(c) = map.get(channel) else {
            return Ok(Page::default());
        };
        let from = match after {
            Some(a) => std::ops::Bound::Excluded(a.to_string()),
            None => std::ops::Bound::Unbounded,
        };
        let items = c
            .items
            .range((from, std::ops::Bound::Unbounded))
            .take(limit + 1)
            .map(|(_, i)| i.clone());
        Ok(Page::of(c.meta.clone(), items, after, limit))
    }

    fn retention(&self) -> Option<Duration> {
        self.retention
    }

    async fn get_record(&self, ns: &str, key: &str) -> Result<Option<String>, StoreError> {
        let records = self.records.lock().expect("store lock");
        Ok(records.get(&(ns.to_string(), key.to_string())).cloned())
    }

    async fn put_record(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        when: RecordWrite,
    ) -> Result<bool, StoreError> {
        let mut records = self.records.lock().expect("store lock");
        let k = (ns.to_string(), key.to_string());
        let ok = match when {
            RecordWrite::Upsert => true,
            RecordWrite::IfPresent => records.contains_key(&k),
            RecordWrite::IfAbsent => !records.contains_key(&k),
        };
        if ok {
            records.insert(k, value.to_string());
        }
        Ok(ok)
    }

    async fn delete_record(&self, ns: &str, key: &str) -> Result<bool, StoreError> {
        let mut records = self.records.lock().expect("store lock");
        Ok(records.remove(&(ns.to_string(), key.to_string())).is_some())
    }

    async fn list_records(&self, ns: &str) -> Result<Vec<(String, String)>, StoreError> {
        let records = self.records.lock().expect("store lock");
        Ok(records
            .range((ns.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == ns)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn touch(&self, channel: &ChannelId, now: u64) -> Result<(), StoreError> {
        if let Some(c) = self.channels.lock().expect("store lock").get_mut(channel) {
            c.last_active = c.last_active.max(now);
        }
        Ok(())
    }

    async fn sweep(&self, now: u64, max_channels: usize) -> Result<usize, StoreError> {
        let Some(retention) = self.retention else {
            return Ok(0);
        };
        let cutoff = now.saturating_sub(retention.as_secs());
        let mut map = self.channels.lock().expect("store lock");
        let expired: Vec<ChannelId> = map
            .iter()
            .filter(|(_, c)| c.last_active < cutoff)
            .map(|(id, _)| id.clone())
            .take(max_channels)
            .collect();
        for id in &expired {
            map.remove(id);
        }
        Ok(expired.len())
    }
}
