//! The embedded default `ItemStore`: one redb file (ACID, crash-safe, no server).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::ops::Bound;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::channel::ChannelId;

use super::{
    aged_floor, trimmed_floor, unix_now, unix_now_ms, ChannelMeta, Commit, ItemStore, LogPage,
    LogRetention, LoggedEvent, Page, RecordWrite, StoreError, StoredItem,
};

/// channel → JSON `ChannelMeta`.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("channel_meta");
/// (channel, item id) → JSON `StoredItem`.
pub(super) const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");
/// budget id → JSON list of recent call times (unix ms).
const BUDGETS: TableDefinition<&str, &[u8]> = TableDefinition::new("budgets");
/// (channel, seq) → the event message as sent to clients.
pub(super) const LOG: TableDefinition<(&str, u64), &str> = TableDefinition::new("change_log");
/// (channel, seq) → the event's time (unix ms); absent for events logged before history
/// existed (time 0). Apart from the messages, so a search by time reads 8-byte values.
pub(super) const LOG_TIMES: TableDefinition<(&str, u64), u64> =
    TableDefinition::new("change_log_times");
/// channel → unix seconds of its last commit or touch (what retention goes by).
pub(super) const ACTIVITY: TableDefinition<&str, u64> = TableDefinition::new("channel_activity");

/// Activity records one sweep pass looks at, whatever it finds (bounded work per pass).
pub(super) const SWEEP_SCAN: usize = 1000;

pub struct RedbStore {
    db: Arc<Database>,
    capacity: u64,
    writes: AtomicU64,
    retention: Option<Duration>,
    /// Where the next sweep pass starts (the last channel the previous one looked at).
    sweep_from: Arc<Mutex<Option<String>>>,
    /// Store operations running at once, each on a blocking thread. Writes take turns in redb
    /// anyway: without a bound, thousands of first polls at once grew the blocking pool to
    /// hundreds of threads, each waiting on the same lock and holding memory.
    running: Arc<tokio::sync::Semaphore>,
}

/// Store operations on blocking threads at once (reads run side by side; writes queue in redb).
const MAX_RUNNING_OPERATIONS: usize = 8;

pub(super) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Embedded(Box::new(e))
}

impl RedbStore {
    /// Opens (or creates) the store file, creating its folder if needed.
    pub fn open(path: &Path, log_capacity: u64) -> Result<RedbStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::File {
                action: "create",
                path: dir.to_path_buf(),
                source: Box::new(e),
            })?;
        }
        let db = Database::create(path).map_err(|e| StoreError::File {
            action: "open",
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(META).map_err(backend)?;
            txn.open_table(ITEMS).map_err(backend)?;
            txn.open_table(LOG).map_err(backend)?;
            txn.open_table(LOG_TIMES).map_err(backend)?;
            txn.open_table(BUDGETS).map_err(backend)?;
            txn.open_table(super::redb_records::RECORDS)
                .map_err(backend)?;
            // Channels stored before retention existed count as active from now on.
            let meta = txn.open_table(META).map_err(backend)?;
            let mut activity = txn.open_table(ACTIVITY).map_err(backend)?;
            let now = unix_now();
            for entry in meta.iter().map_err(backend)? {
                let (k, _) = entry.map_err(backend)?;
                if activity.get(k.value()).map_err(backend)?.is_none() {
                    activity.insert(k.value(), now).map_err(backend)?;
                }
            }
        }
        txn.commit().map_err(backend)?;
        Ok(RedbStore {
            db: Arc::new(db),
            capacity: log_capacity,
            writes: AtomicU64::new(0),
            retention: None,
            sweep_from: Arc::default(),
            running: Arc::new(tokio::sync::Semaphore::new(MAX_RUNNING_OPERATIONS)),
        })
    }

    /// Channels inactive for longer than `retention` are removed by [`ItemStore::sweep`].
    pub fn with_retention(mut self, retention: Option<Duration>) -> RedbStore {
        self.retention = retention;
        self
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        let turn = self.running.clone().acquire_owned().await;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            f(&db)
        })
        .await
        .map_err(backend)?
    }
}

/// Up to `limit` logged events after `after`, in seq order, and whether more follow.
fn read_log(
    txn: &redb::ReadTransaction,
    channel: &str,
    after: u64,
    limit: usize,
) -> Result<(Vec<LoggedEvent>, bool), StoreError> {
    let log = txn.open_table(LOG).map_err(backend)?;
    let times = txn.open_table(LOG_TIMES).map_err(backend)?;
    let mut out = Vec::new();
    for entry in log
        .range((channel, after.saturating_add(1))..=(channel, u64::MAX))
        .map_err(backend)?
    {
        let (k, v) = entry.map_err(backend)?;
        if out.len() == limit {
            return Ok((out, true));
        }
        let seq = k.value().1;
        let time = times
            .get((channel, seq))
            .map_err(backend)?
            .map_or(0, |t| t.value());
        out.push(LoggedEvent::new(seq, v.value(), time));
    }
    Ok((out, false))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn read_meta(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    channel: &str,
) -> Result<ChannelMeta, StoreError> {
    match table.get(channel).map_err(backend)? {
        Some(v) => decode(v.value()),
        None => Ok(ChannelMeta::default()),
    }
}

#[async_trait]
impl ItemStore for RedbStore {
    async fn load(
        &self,
        channel: &ChannelId,
    ) -> Result<(ChannelMeta, Vec<StoredItem>), StoreError> {
        // The canonical text is the key: unchanged from when keys were plain strings.
        let channel = channel.as_str().to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let meta = read_meta(&txn.open_table(META).map_err(backend)?, &channel)?;
            let items_table = txn.open_table(ITEMS).map_err(backend)?;
            let mut items = Vec::new();
            // Item ids sort after "" and a channel's keys are contiguous.
            for entry in items_table
                .range((channel.as_str(), "")..)
                .map_err(backend)?
            {
                let (k, v) = entry.map_err(backend)?;
                if k.value().0 != channel {
                    break;
                }
                items.push(decode(v.value())?);
            }
            Ok((meta, items))
        })
        .await
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        if commit.fence.is_some() {
            return Err(StoreError::FenceUnsupported);
        }
        let keep = commit.retention.unwrap_or(LogRetention {
            max_events: self.capacity,
            max_age: None,
        });
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut meta_table = txn.open_table(META).map_err(backend)?;
                let current = read_meta(&meta_table, commit.channel.as_str())?;
                if current.seq != commit.expected_seq {
                    return Err(StoreError::Conflict {
                        channel: commit.channel.to_string(),
                        expected: commit.expected_seq,
                        found: current.seq,
                    });
                }
                let mut items = txn.open_table(ITEMS).map_err(backend)?;
                for item in &commit.upserts {
                    let bytes = serde_json::to_vec(item).expect("items serialize");
                    items
                        .insert(
                            (commit.channel.as_str(), item.id.as_str()),
                            bytes.as_slice(),
                        )
                        .map_err(backend)?;
                }
                for id in &commit.removals {
                    items
                        .remove((commit.channel.as_str(), id.as_str()))
                        .map_err(backend)?;
                }
                let mut log = txn.open_table(LOG).map_err(backend)?;
                let mut times = txn.open_table(LOG_TIMES).map_err(backend)?;
                let ch = commit.channel.as_str();
                for e in &commit.events {
                    log.insert((ch, e.seq), e.message.as_str())
                        .map_err(backend)?;
                    times.insert((ch, e.seq), e.time_ms).map_err(backend)?;
                }
                let mut meta = commit.meta.clone();
                meta.log_floor = trimmed_floor(meta.log_floor, meta.seq, keep.max_events);
                let cutoff = keep.cutoff_ms(unix_now_ms());
                if cutoff > 0 {
                    let mut aged = Vec::new();
                    for entry in times
                        .range((ch, meta.log_floor + 1)..=(ch, meta.seq))
                        .map_err(backend)?
                    {
                        let (k, v) = entry.map_err(backend)?;
                        if v.value() >= cutoff {
                            break;
                        }
                        aged.push((k.value().1, v.value()));
                    }
                    meta.log_floor = aged_floor(meta.log_floor, cutoff, aged);
                }
                if meta.log_floor > current.log_floor {
                    let (from, to) = (current.log_floor, meta.log_floor);
                    log.retain_in((ch, from)..=(ch, to), |_, _| false)
                        .map_err(backend)?;
                    times
                        .retain_in((ch, from)..=(ch, to), |_, _| false)
                        .map_err(backend)?;
                }
                let bytes = serde_json::to_vec(&meta).expect("meta serializes");
                meta_table
                    .insert(commit.channel.as_str(), bytes.as_slice())
                    .map_err(backend)?;
                txn.open_table(ACTIVITY)
                    .map_err(backend)?
                    .insert(commit.channel.as_str(), unix_now())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)?;
            Ok(())
        })
        .await?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn events_after(
        &self,
        channel: &ChannelId,
        after: u64,
    ) -> Result<Option<Vec<LoggedEvent>>, StoreError> {
        let channel = channel.as_str().to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let meta = read_meta(&txn.open_table(META).map_err(backend)?, &channel)?;
            if meta.seq == 0 || after < meta.log_floor || after > meta.seq {
                return Ok(None);
            }
            let (out, _) = read_log(&txn, &channel, after, usize::MAX)?;
            Ok(Some(out))
        })
        .await
    }

    async fn log_page(
        &self,
        channel: &ChannelId,
        after: u64,
        limit: usize,
    ) -> Result<LogPage, StoreError> {
        let channel = channel.as_str().to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let meta = read_meta(&txn.open_table(META).map_err(backend)?, &channel)?;
            let (events, more) = read_log(&txn, &channel, after.max(meta.log_floor), limit)?;
            Ok(LogPage { meta, events, more })
        })
        .await
    }

    async fn seq_before(&self, channel: &ChannelId, time_ms: u64) -> Result<u64, StoreError> {
        let channel = channel.as_str().to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let meta = read_meta(&txn.open_table(META).map_err(backend)?, &channel)?;
            let times = txn.open_table(LOG_TIMES).map_err(backend)?;
            let log = txn.open_table(LOG).map_err(backend)?;
            // Binary search over the log's seqs (time order is seq order); an event without a
            // time entry predates history (time 0).
            let time_of = |seq: u64| -> Result<u64, StoreError> {
                Ok(times
                    .get((channel.as_str(), seq))
                    .map_err(backend)?
                    .map_or(0, |v| v.value()))
            };
            let (mut lo, mut hi) = (meta.log_floor, meta.seq);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                let present = log.get((channel.as_str(), mid)).map_err(backend)?.is_some();
                if present && time_of(mid)? < time_ms {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            Ok(lo)
        })
        .await
    }

    fn log_capacity(&self) -> u64 {
        self.capacity
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    async fn load_budget(&self, budget: &str) -> Result<Option<String>, StoreError> {
        let budget = budget.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(BUDGETS).map_err(backend)?;
            let value = table.get(budget.as_str()).map_err(backend)?;
            value
                .map(|v| {
                    String::from_utf8(v.value().to_vec())
                        .map_err(|e| StoreError::Corrupt(format!("budget {budget}: {e}")))
                })
                .transpose()
        })
        .await
    }

    async fn save_budget(&self, budget: &str, usage: String) -> Result<(), StoreError> {
        let budget = budget.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(BUDGETS).map_err(backend)?;
                table
                    .insert(budget.as_str(), usage.as_bytes())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn meta(&self, channel: &ChannelId) -> Result<ChannelMeta, StoreError> {
        let channel = channel.as_str().to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            read_meta(&txn.open_table(META).map_err(backend)?, &channel)
        })
        .await
    }

    async fn item_count(&self, channel: &ChannelId) -> Result<u64, StoreError> {
        let channel = channel.as_str().to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let items = txn.open_table(ITEMS).map_err(backend)?;
            let mut count = 0;
            for entry in items.range((channel.as_str(), "")..).map_err(backend)? {
                let (k, _) = entry.map_err(backend)?;
                if k.value().0 != channel {
                    break;
                }
                count += 1;
            }
            Ok(count)
        })
        .await
    }

    async fn items_page(
        &self,
        channel: &ChannelId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let channel = channel.as_str().to_string();
        let after = after.map(str::to_string);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let meta = read_meta(&txn.open_table(META).map_err(backend)?, &channel)?;
            let table = txn.open_table(ITEMS).map_err(backend)?;
            let from = match &after {
                Some(a) => Bound::Excluded((channel.as_str(), a.as_str())),
                None => Bound::Included((channel.as_str(), "")),
            };
            let mut items = Vec::new();
            for entry in table.range((from, Bound::Unbounded)).map_err(backend)? {
                let (k, v) = entry.map_err(backend)?;
                if k.value().0 != channel || items.len() > limit {
                    break;
                }
                items.push(decode::<StoredItem>(v.value())?);
            }
            Ok(Page::of(meta, items, after.as_deref(), limit))
        })
        .await
    }

    async fn get_record(&self, ns: &str, key: &str) -> Result<Option<String>, StoreError> {
        let (ns, key) = (ns.to_string(), key.to_string());
        self.blocking(move |db| super::redb_records::get(db, &ns, &key))
            .await
    }

    async fn put_record(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        when: RecordWrite,
    ) -> Result<bool, StoreError> {
        let (ns, key, value) = (ns.to_string(), key.to_string(), value.to_string());
        self.blocking(move |db| super::redb_records::put(db, &ns, &key, &value, when))
            .await
    }

    async fn delete_record(&self, ns: &str, key: &str) -> Result<bool, StoreError> {
        let (ns, key) = (ns.to_string(), key.to_string());
        self.blocking(move |db| super::redb_records::delete(db, &ns, &key))
            .await
    }

    async fn list_records(&self, ns: &str) -> Result<Vec<(String, String)>, StoreError> {
        let ns = ns.to_string();
        self.blocking(move |db| super::redb_records::list(db, &ns))
            .await
    }

    fn retention(&self) -> Option<Duration> {
        self.retention
    }

    async fn touch(&self, channel: &ChannelId, now: u64) -> Result<(), StoreError> {
        let channel = channel.as_str().to_string();
        self.blocking(move |db| {
            // Most touches find nothing to do (a channel not stored yet, or marked this
            // second): a read transaction tells, without a write and its fsync.
            let last = {
                let txn = db.begin_read().map_err(backend)?;
                match txn.open_table(ACTIVITY) {
                    Ok(activity) => activity
                        .get(channel.as_str())
                        .map_err(backend)?
                        .map(|v| v.value()),
                    Err(redb::TableError::TableDoesNotExist(_)) => None,
                    Err(e) => return Err(backend(e)),
                }
            };
            // Only a stored channel has activity to record.
            if last.is_none_or(|last| last >= now) {
                return Ok(());
            }
            let mut txn = db.begin_write().map_err(backend)?;
            // A mark lost in a crash only makes the channel look older than it is, and its
            // poller marks it again at its first attempt after the restart: no fsync for it.
            txn.set_durability(redb::Durability::None)
                .map_err(backend)?;
            {
                let mut activity = txn.open_table(ACTIVITY).map_err(backend)?;
                activity.insert(channel.as_str(), now).map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn sweep(&self, now: u64, max_channels: usize) -> Result<usize, StoreError> {
        let Some(retention) = self.retention else {
            return Ok(0);
        };
        let cutoff = now.saturating_sub(retention.as_secs());
        let sweep_from = self.sweep_from.clone();
        self.blocking(move |db| {
            let mut from = sweep_from.lock().expect("sweep lock");
            super::redb_sweep::sweep_pass(db, &mut from, cutoff, max_channels)
        })
        .await
    }
}
