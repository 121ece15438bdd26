//! Durable item state: what each channel holds, its sequence counter and a bounded change log.
//!
//! Items are keyed by (channel id, item id) with a content hash; a channel's meta holds its
//! last `seq`, the fetcher's opaque state and the oldest seq the change log can replay from.
//! [`RedbStore`] (an embedded, crash-safe file) is the default, `DynamoItemStore` (feature `aws`) runs in
//! production, [`MemoryStore`] serves tests.

#[cfg(feature = "aws")]
mod dynamo;
mod memory;
mod redb_records;
mod redb_store;
mod redb_sweep;
mod stored_items;

pub mod conformance;
pub mod conformance_history;
pub mod conformance_records;
pub mod conformance_retention;

#[cfg(feature = "aws")]
pub use dynamo::{DynamoItemStore, TTL_ATTRIBUTE};
pub use memory::MemoryStore;
pub use redb_store::RedbStore;
pub use stored_items::StoredItems;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::channel::ChannelId;

/// One item as last seen upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredItem {
    pub id: String,
    /// Content hash (`x3:` + hex XXH3-128, see `changes::hash`); records of older versions
    /// hold a hex SHA-256 of the item's JSON, which still compares.
    pub hash: String,
    pub data: Map<String, Value>,
    /// Seq of the event that last changed it.
    pub seq: u64,
    /// Unix seconds.
    pub first_seen: u64,
    pub last_changed: u64,
}

/// Per-channel bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelMeta {
    /// Seq of the last event; 0 = never polled successfully.
    pub seq: u64,
    /// Opaque value round-tripped to the fetcher (ETag, cursor…).
    pub fetcher_state: Option<Value>,
    /// Every event after this seq is in the change log.
    pub log_floor: u64,
    /// The seq before the last commit that had events: that commit's events are the ones
    /// after it. A new owner re-publishes them (its predecessor may have died between
    /// persisting and publishing them).
    #[serde(default)]
    pub committed_from: u64,
    /// Time of the last logged event (unix ms): the next one is never stamped earlier, so a
    /// channel's history is in time order and in seq order at once.
    #[serde(default)]
    pub last_event_ms: u64,
}

/// A logged event: its seq, the exact message sent to clients, and when it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedEvent {
    pub seq: u64,
    pub message: String,
    /// Unix milliseconds of the commit that logged it; 0 for events logged before history
    /// existed (they sort first).
    #[serde(default)]
    pub time_ms: u64,
}

impl LoggedEvent {
    pub fn new(seq: u64, message: impl Into<String>, time_ms: u64) -> LoggedEvent {
        LoggedEvent {
            seq,
            message: message.into(),
            time_ms,
        }
    }
}

/// How much of a channel's change log (its history) a commit keeps: the last `max_events`,
/// none older than `max_age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRetention {
    pub max_events: u64,
    /// `None`: kept whatever their age (count only).
    pub max_age: Option<std::time::Duration>,
}

impl LogRetention {
    /// Events stamped before this (unix ms) are past the age limit at `now_ms`.
    pub fn cutoff_ms(&self, now_ms: u64) -> u64 {
        self.max_age
            .map_or(0, |a| now_ms.saturating_sub(a.as_millis() as u64))
    }
}

/// One page of a channel's change log, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogPage {
    /// The channel's meta as read with the page (`seq`, `log_floor`).
    pub meta: ChannelMeta,
    /// At most `limit` events with seq after the requested one, in seq (and time) order.
    pub events: Vec<LoggedEvent>,
    /// More logged events follow the last one of this page.
    pub more: bool,
}

/// Everything one poll changes, written atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub channel: ChannelId,
    /// The channel's seq this commit was computed from; the write fails if it moved.
    pub expected_seq: u64,
    pub meta: ChannelMeta,
    pub upserts: Vec<StoredItem>,
    pub removals: Vec<String>,
    pub events: Vec<LoggedEvent>,
    /// What the log keeps after this commit; `None`: the store's defaults (its capacity and,
    /// in DynamoDB, its log TTL).
    pub retention: Option<LogRetention>,
    /// Cluster mode: the epoch of the lease this replica polls the channel under. The commit
    /// is refused (`StoreError::Fenced`) unless the lease still has that epoch.
    pub fence: Option<u64>,
}

impl Commit {
    /// A commit to `channel` that writes nothing yet (from seq 0, unfenced).
    pub fn new(channel: ChannelId) -> Commit {
        Commit {
            channel,
            expected_seq: 0,
            meta: ChannelMeta::default(),
            upserts: Vec::new(),
            removals: Vec::new(),
            events: Vec::new(),
            retention: None,
            fence: None,
        }
    }

    /// True when the commit would write nothing.
    pub fn is_empty(&self, previous: &ChannelMeta) -> bool {
        self.upserts.is_empty()
            && self.removals.is_empty()
            && self.events.is_empty()
            && &self.meta == previous
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("channel {channel} moved from seq {expected} to {found} under us")]
    Conflict {
        channel: String,
        expected: u64,
        found: u64,
    },
    #[error("channel {channel}: the lease epoch {epoch} is no longer current (another replica took the channel over)")]
    Fenced { channel: String, epoch: u64 },
    /// A remote store's request failed (its text says which and what to do).
    #[error("item store failed: {0}")]
    Backend(String),
    /// The embedded store's database failed.
    #[error("item store failed: {0}")]
    Embedded(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The embedded store's file cannot be created or opened.
    #[error("item store failed: cannot {action} {}: {source}", path.display())]
    File {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Fenced commits (cluster mode) need a store that also keeps the leases.
    #[error("item store failed: fenced commits (cluster mode) need the DynamoDB store")]
    FenceUnsupported,
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("{what} of channel {channel} is {bytes} bytes, over the store's limit of {limit}")]
    TooLarge {
        channel: String,
        what: String,
        bytes: usize,
        limit: usize,
    },
}

/// One page of a channel's items, read without the rest of the channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The channel's meta as read with the page.
    pub meta: ChannelMeta,
    /// At most `limit` items, sorted by id, all after the `after` id.
    pub items: Vec<StoredItem>,
    /// More items follow the last one of this page.
    pub more: bool,
}

impl Page {
    /// The page of `items` (sorted by id) after `after`, at most `limit` long.
    pub fn of(
        meta: ChannelMeta,
        items: impl IntoIterator<Item = StoredItem>,
        after: Option<&str>,
        limit: usize,
    ) -> Page {
        let mut rest = items
            .into_iter()
            .filter(|i| after.is_none_or(|a| i.id.as_str() > a));
        let items: Vec<StoredItem> = rest.by_ref().take(limit).collect();
        Page {
            meta,
            more: rest.next().is_some(),
            items,
        }
    }
}

/// When [`ItemStore::put_record`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordWrite {
    /// Whatever is there.
    Upsert,
    /// Only over an existing record (a concurrent delete wins).
    IfPresent,
    /// Only when there is none (a concurrent create wins).
    IfAbsent,
}

/// The error of a store without small records (wrappers, test doubles).
fn records_unsupported() -> StoreError {
    StoreError::Backend("this item store keeps no records".into())
}

/// Where channel state lives.
#[async_trait]
pub trait ItemStore: Send + Sync {
    /// The channel's meta and items (sorted by item id); empty for an unknown channel.
    async fn load(&self, channel: &ChannelId)
        -> Result<(ChannelMeta, Vec<StoredItem>), StoreError>;
    /// Applies a commit atomically, if the channel is still at `expected_seq`. The change log
    /// keeps at most the store's capacity of events per channel.
    async fn commit(&self, commit: Commit) -> Result<(), StoreError>;
    /// Events with seq > `after`, in order; `None` when the log no longer holds all of them.
    async fn events_after(
        &self,
        channel: &ChannelId,
        after: u64,
    ) -> Result<Option<Vec<LoggedEvent>>, StoreError>;
    /// Number of item/channel writes performed so far (for tests and metrics).
    fn writes(&self) -> u64;
    /// Events kept per channel for resume (the change log's length).
    fn log_capacity(&self) -> u64;
    /// Largest item (its JSON, in bytes) the store can keep; larger items are skipped with a
    /// warning rather than failing the whole poll.
    fn max_item_bytes(&self) -> usize {
        usize::MAX
    }
    /// One budget's saved usage, as `crate::budget` encoded it (opaque here; older versions
    /// saved a JSON list of call times, which the budget still reads); `None` if never saved.
    async fn load_budget(&self, budget: &str) -> Result<Option<String>, StoreError>;
    /// Replaces a budget's saved usage.
    async fn save_budget(&self, budget: &str, usage: String) -> Result<(), StoreError>;

    // Reads that fetch only what they return (the HTTP API's) and retention. The defaults
    // fall back on `load` and keep everything, for wrappers and test doubles.

    /// The channel's meta alone (default meta for an unknown or expired channel).
    async fn meta(&self, channel: &ChannelId) -> Result<ChannelMeta, StoreError> {
        Ok(self.load(channel).await?.0)
    }
    /// How many items the channel holds, without returning them.
    async fn item_count(&self, channel: &ChannelId) -> Result<u64, StoreError> {
        Ok(self.load(channel).await?.1.len() as u64)
    }
    /// At most `limit` items with ids after `after` (all from the first when `None`), in id
    /// order, and the meta; reads about `limit + 1` items, never the whole channel.
    async fn items_page(
        &self,
        channel: &ChannelId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let (meta, items) = self.load(channel).await?;
        Ok(Page::of(meta, items, after, limit))
    }
    /// At most `limit` logged events with seq > `after` (from the log's start when it is
    /// below the floor), oldest first, and the meta; reads about `limit + 1` events.
    async fn log_page(
        &self,
        channel: &ChannelId,
        after: u64,
        limit: usize,
    ) -> Result<LogPage, StoreError> {
        let meta = self.meta(channel).await?;
        let events = self
            .events_after(channel, after.max(meta.log_floor).min(meta.seq))
            .await?
            .unwrap_or_default();
        let more = events.len() > limit;
        Ok(LogPage {
            meta,
            events: events.into_iter().take(limit).collect(),
            more,
        })
    }
    /// The seq of the last logged event stamped before `time_ms`, or the log's floor when
    /// none is: a read of the history from `time_ms` on starts after it. Events are in time
    /// order, so stores search rather than scan.
    async fn seq_before(&self, channel: &ChannelId, time_ms: u64) -> Result<u64, StoreError> {
        let page = self.log_page(channel, 0, usize::MAX).await?;
        Ok(page
            .events
            .iter()
            .take_while(|e| e.time_ms < time_ms)
            .last()
            .map_or(page.meta.log_floor, |e| e.seq))
    }
    // Small named records shared by every replica (the archive sinks' state): a namespace
    // holds few of them (listed whole), each a short text. The defaults refuse.

    /// The record `key` of namespace `ns`, if any.
    async fn get_record(&self, ns: &str, key: &str) -> Result<Option<String>, StoreError> {
        let _ = (ns, key);
        Err(records_unsupported())
    }
    /// Writes the record; false when `when` did not hold (nothing written).
    async fn put_record(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        when: RecordWrite,
    ) -> Result<bool, StoreError> {
        let _ = (ns, key, value, when);
        Err(records_unsupported())
    }
    /// Deletes the record; false when there was none.
    async fn delete_record(&self, ns: &str, key: &str) -> Result<bool, StoreError> {
        let _ = (ns, key);
        Err(records_unsupported())
    }
    /// Every record of `ns`, in key order.
    async fn list_records(&self, ns: &str) -> Result<Vec<(String, String)>, StoreError> {
        let _ = ns;
        Err(records_unsupported())
    }
    /// How long a channel nobody polls is kept (`None`: for ever). An active poller calls
    /// [`ItemStore::touch`] at least every quarter of it.
    fn retention(&self) -> Option<std::time::Duration> {
        None
    }
    /// Marks the channel active at `now` (unix seconds), so retention does not remove it
    /// (a commit does the same). A no-op without retention.
    async fn touch(&self, _channel: &ChannelId, _now: u64) -> Result<(), StoreError> {
        Ok(())
    }
    /// Deletes up to `max_channels` channels inactive since before `now - retention` (items,
    /// meta, change log) and returns how many; stores whose database expires records itself
    /// (DynamoDB's TTL) do nothing here.
    async fn sweep(&self, _now: u64, _max_channels: usize) -> Result<usize, StoreError> {
        Ok(0)
    }
}

/// Unix milliseconds now.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The time to stamp a commit's events with: now, but never before the channel's last
/// event (a clock stepping back keeps the history in order). Records it in `meta`.
pub fn stamp_events(meta: &mut ChannelMeta) -> u64 {
    let time = unix_now_ms().max(meta.last_event_ms);
    meta.last_event_ms = time;
    time
}

/// The floor after dropping, from `floor` on, the events stamped before `cutoff_ms`; `times`
/// yields (seq, time) in seq order after the current floor.
pub(crate) fn aged_floor(
    floor: u64,
    cutoff_ms: u64,
    times: impl IntoIterator<Item = (u64, u64)>,
) -> u64 {
    times
        .into_iter()
        .take_while(|&(_, t)| t < cutoff_ms)
        .last()
        .map_or(floor, |(seq, _)| seq.max(floor))
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Default number of events kept per channel for resume.
pub const DEFAULT_LOG_CAPACITY: u64 = 1000;

/// New `log_floor` after appending up to `new_seq` with `capacity` entries kept.
pub(crate) fn trimmed_floor(floor: u64, new_seq: u64, capacity: u64) -> u64 {
    floor.max(new_seq.saturating_sub(capacity))
}
