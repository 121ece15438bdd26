//! The production `ItemStore` on DynamoDB: one table (see `docs/storage.md`), consistent reads,
//! writes only on change.
//!
//! A commit is one `TransactWriteItems` whose first action replaces the channel's meta record
//! on condition that its `seq` is still the one the commit was computed from, so concurrent
//! writers cannot both advance a channel. A commit too large for one transaction (more than
//! 100 actions or about 4 MB) is staged: its parts are written as `pending#` records, the meta
//! record switches to the new seq with a `pending` marker (the same condition, the commit
//! point), then the parts are applied and the marker removed. Whoever reads a channel with a
//! marker finishes the work, with writes conditioned on item seqs so a late finisher never
//! overwrites newer data.

mod named;
mod records;
mod requests;
mod retention;
mod staged;
mod table;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::TransactWriteItem;
use aws_sdk_dynamodb::Client;

use records::*;
use requests::delete_request;

use crate::channel::ChannelId;

use super::{
    trimmed_floor, ChannelMeta, Commit, ItemStore, LogPage, LoggedEvent, Page, RecordWrite,
    StoreError, StoredItem,
};

pub use records::TTL_ATTRIBUTE;

/// DynamoDB's item size limit (400 KB, names and values included).
const MAX_RECORD_BYTES: usize = 400 * 1024;
/// Largest item (its JSON) we accept, leaving room for its attributes and for an event that
/// carries it whole.
pub const MAX_ITEM_BYTES: usize = 350 * 1024;
/// Transaction limits: 100 actions, 4 MB in all.
const MAX_TRANSACTION_ACTIONS: usize = 100;
const MAX_TRANSACTION_BYTES: usize = 3_800_000;
/// Target size of one staged chunk of a large commit.
const CHUNK_BYTES: usize = 380_000;
/// How long staged chunks of an abandoned commit live.
const PENDING_TTL: Duration = Duration::from_secs(24 * 3600);
/// Concurrent requests while finishing a large commit.
const PARALLEL_WRITES: usize = 16;

/// Error codes DynamoDB uses when it throttles.
const THROTTLING: [&str; 3] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
];

pub struct DynamoItemStore {
    client: Client,
    table: String,
    capacity: u64,
    log_ttl: Duration,
    writes: AtomicU64,
    /// How long an inactive channel's meta and items live (their `expires_at`); `None`:
    /// for ever.
    retention: Option<Duration>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Approximate stored size of a record (DynamoDB counts names and values).
fn record_bytes(r: &Record) -> usize {
    r.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    aws_sdk_dynamodb::types::AttributeValue::S(s) => s.len(),
                    aws_sdk_dynamodb::types::AttributeValue::N(n) => n.len(),
                    _ => 16,
                }
        })
        .sum()
}

impl DynamoItemStore {
    /// Checks that `table` exists (creating it, with TTL on `expires_at`, when
    /// `create_if_missing`) and returns a store on it.
    pub async fn connect(
        client: Client,
        table: &str,
        log_capacity: u64,
        log_ttl: Duration,
        create_if_missing: bool,
    ) -> Result<DynamoItemStore, StoreError> {
        let store = DynamoItemStore {
            client,
            table: table.to_string(),
            capacity: log_capacity,
            log_ttl,
            writes: AtomicU64::new(0),
            retention: None,
        };
        table::ensure(&store, create_if_missing).await?;
        Ok(store)
    }

    /// Channels inactive for longer than `retention` expire through the table's TTL.
    pub fn with_retention(mut self, retention: Option<Duration>) -> DynamoItemStore {
        self.retention = retention;
        self
    }

    /// The channel's meta record; an expired one (TTL deletes lazily) reads as missing.
    async fn read_meta(&self, channel: &str) -> Result<MetaRecord, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(channel, META)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        let record = parse_meta(out.item())?;
        if record.expires_at.is_some_and(|at| at <= now_secs()) {
            return Ok(MetaRecord::default());
        }
        Ok(record)
    }

    /// The channel's meta, finishing a staged commit first if one is under way.
    async fn settled_meta(&self, channel: &str) -> Result<ChannelMeta, StoreError> {
        let record = self.read_meta(channel).await?;
        if let Some(pending) = &record.pending {
            self.finish(channel, pending).await?;
        }
        Ok(record.meta)
    }

    /// The condition that makes a meta write the commit point: the channel is still at
    /// `expected` and no staged commit is unfinished.
    /// A new channel's meta may also replace an expired one TTL has not deleted yet.
    fn meta_condition(expected: u64) -> (&'static str, Record) {
        let mut values = Record::from([(":expected".to_string(), n(expected))]);
        let expression = if expected == 0 {
            values.insert(":now".to_string(), n(now_secs()));
            "attribute_not_exists(pk) OR (seq = :expected AND attribute_not_exists(pending)) \
             OR expires_at <= :now"
        } else {
            "seq = :expected AND attribute_not_exists(pending)"
        };
        (expression, values)
    }

    fn meta_record(&self, channel: &str, meta: &ChannelMeta, pending: Option<&Pending>) -> Record {
        let mut r = key(channel, META);
        r.insert("seq".into(), n(meta.seq));
        r.insert(
            "meta".into(),
            s(serde_json::to_string(meta).expect("meta serializes")),
        );
        if let Some(p) = pending {
            r.insert(
                "pending".into(),
                s(serde_json::to_string(p).expect("pending serializes")),
            );
        }
        self.stamp(&mut r);
        r
    }

    /// The record's size, or `TooLarge` when DynamoDB would refuse it.
    fn checked_size(&self, channel: &str, id: &str, record: &Record) -> Result<usize, StoreError> {
        let bytes = record_bytes(record);
        if bytes > MAX_RECORD_BYTES {
            return Err(StoreError::TooLarge {
                channel: channel.to_string(),
                what: id.to_string(),
                bytes,
                limit: MAX_RECORD_BYTES,
            });
        }
        Ok(bytes)
    }

    /// After a conditional meta write failed: a conflict, or (when a staged commit was in the
    /// way and has now been finished) `None` to try again.
    async fn conflict(
        &self,
        channel: &str,
        expected: u64,
    ) -> Result<Option<StoreError>, StoreError> {
        let found = self.settled_meta(channel).await?.seq;
        Ok((found != expected).then(|| StoreError::Conflict {
            channel: channel.to_string(),
            expected,
            found,
        }))
    }

    /// One transaction; `Ok(false)` when the meta condition failed.
    /// One transaction whose first action is the meta put; with `fence`, its last is the lease
    /// check. `Ok(false)` when the meta condition failed; `Fenced` when the lease moved on.
    async fn commit_in_one(
        &self,
        channel: &str,
        mut actions: Vec<TransactWriteItem>,
        fence: Option<u64>,
    ) -> Result<bool, StoreError> {
        if let Some(epoch) = fence {
            actions.push(self.fence_check(channel, epoch));
        }
        let last = actions.len() - 1;
        match self
            .client
            .transact_write_items()
            // The SDK retries a request whose answer was lost; the token makes DynamoDB apply
            // it once (a retry of an applied commit would otherwise fail its own condition).
            .client_request_token(format!("{:032x}", rand::random::<u128>()))
            .set_transact_items(Some(actions))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let failed: Vec<usize> = e
                    .as_service_error()
                    .and_then(|s| match s {
                        TransactWriteItemsError::TransactionCanceledException(t) => Some(t),
                        _ => None,
                    })
                    .map(|t| {
                        t.cancellation_reasons()
                            .iter()
                            .enumerate()
                            .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                            .map(|(i, _)| i)
                            .collect()
                    })
                    .unwrap_or_default();
                match (fence, failed.as_slice()) {
                    (Some(epoch), f) if f.contains(&last) => Err(StoreError::Fenced {
                        channel: channel.to_string(),
                        epoch,
                    }),
                    (_, [0, ..]) => Ok(false),
                    _ => Err(self.error("TransactWriteItems", e)),
                }
            }
        }
    }

    /// Deletes change-log records at or below `floor` (best effort: readers never look below
    /// the floor, and TTL removes what a failed trim leaves).
    async fn trim_log(&self, channel: &str, floor: u64) {
        let result = async {
            let old = self
                .query_range(channel, &event_sk(0), &event_sk(floor))
                .await?;
            let deletes = old
                .iter()
                .filter_map(|r| Some(key(channel, get_s(r, "sk", "event").ok()?)))
                .map(delete_request)
                .collect();
            self.batch_write(deletes).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(%channel, error = %e, "could not trim the change log; TTL will");
        }
    }
}

#[async_trait]
impl ItemStore for DynamoItemStore {
    async fn load(
        &self,
        channel: &ChannelId,
    ) -> Result<(ChannelMeta, Vec<StoredItem>), StoreError> {
        let channel = channel.as_str();
        let record = self.read_meta(channel).await?;
        if !record.present {
            // New, or expired: whatever items are left are a previous life's.
            self.clean_up_expired(channel).await;
            return Ok((ChannelMeta::default(), Vec::new()));
        }
        if let Some(pending) = &record.pending {
            self.finish(channel, pending).await?;
        }
        let meta = record.meta;
        let records = self
            .query(
                channel,
                "begins_with(sk, :prefix)",
                [(":prefix", s(ITEM_PREFIX))],
            )
            .await?;
        let items = records.iter().map(parse_item).collect::<Result<_, _>>()?;
        Ok((meta, items))
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        let mut meta = commit.meta.clone();
        let previous_floor = meta.log_floor;
        let max_events = commit.retention.map_or(self.capacity, |r| r.max_events);
        meta.log_floor = trimmed_floor(meta.log_floor, meta.seq, max_events);
        // Age retention is the TTL: an event expires its kind's max age after its time.
        let max_age = commit
            .retention
            .and_then(|r| r.max_age)
            .unwrap_or(self.log_ttl)
            .as_secs();
        let mut writes = Vec::new();
        let mut bytes = 0;
        for item in &commit.upserts {
            let mut record = item_record(commit.channel.as_str(), item);
            self.stamp(&mut record);
            bytes += self.checked_size(commit.channel.as_str(), &item.id, &record)?;
            writes.push(self.put(record, None));
        }
        for id in &commit.removals {
            writes.push(self.delete(key(commit.channel.as_str(), item_sk(id))));
        }
        for event in &commit.events {
            let time = match event.time_ms {
                0 => now_secs(),
                ms => ms / 1000,
            };
            let record = event_record(commit.channel.as_str(), event, time + max_age);
            bytes += self.checked_size(
                commit.channel.as_str(),
                &format!("event {}", event.seq),
                &record,
            )?;
            writes.push(self.put(record, None));
        }
        // Retried only when an unfinished staged commit was in the way (and is now finished).
        for _ in 0..3 {
            // The meta put, the writes and (with a fence) the lease check in one transaction.
            let actions = 1 + writes.len() + usize::from(commit.fence.is_some());
            let done = if actions <= MAX_TRANSACTION_ACTIONS && bytes < MAX_TRANSACTION_BYTES {
                let mut actions = vec![self.put(
                    self.meta_record(commit.channel.as_str(), &meta, None),
                    Some(Self::meta_condition(commit.expected_seq)),
                )];
                actions.extend(writes.iter().cloned());
                self.commit_in_one(commit.channel.as_str(), actions, commit.fence)
                    .await?
            } else {
                self.commit_staged(&commit, &meta).await?
            };
            if done {
                self.writes.fetch_add(1, Ordering::Relaxed);
                if meta.log_floor > previous_floor {
                    self.trim_log(commit.channel.as_str(), meta.log_floor).await;
                }
                return Ok(());
            }
            if let Some(conflict) = self
                .conflict(commit.channel.as_str(), commit.expected_seq)
                .await?
            {
                return Err(conflict);
            }
        }
        Err(StoreError::Backend(format!(
            "channel {} kept changing during a commit",
            commit.channel
        )))
    }

    async fn events_after(
        &self,
        channel: &ChannelId,
        after: u64,
    ) -> Result<Option<Vec<LoggedEvent>>, StoreError> {
        let channel = channel.as_str();
        let meta = self.settled_meta(channel).await?;
        if meta.seq == 0 || after < meta.log_floor || after > meta.seq {
            return Ok(None);
        }
        let records = self
            .query_range(channel, &event_sk(after + 1), &event_sk(meta.seq))
            .await?;
        let events: Vec<LoggedEvent> = records.iter().map(parse_event).collect::<Result<_, _>>()?;
        // Every seq after the floor is logged; a hole means TTL expired some entries first.
        if events.len() as u64 != meta.seq - after {
            return Ok(None);
        }
        Ok(Some(events))
    }

    async fn log_page(
        &self,
        channel: &ChannelId,
        after: u64,
        limit: usize,
    ) -> Result<LogPage, StoreError> {
        let meta = self.settled_meta(channel.as_str()).await?;
        let from = after.max(meta.log_floor).saturating_add(1);
        if meta.seq == 0 || from > meta.seq || limit == 0 {
            let more = limit == 0 && from <= meta.seq;
            return Ok(LogPage {
                meta,
                events: Vec::new(),
                more,
            });
        }
        let records = self
            .query_range_limited(
                channel.as_str(),
                &event_sk(from),
                &event_sk(meta.seq),
                limit.saturating_add(1),
            )
            .await?;
        let mut events: Vec<LoggedEvent> =
            records.iter().map(parse_event).collect::<Result<_, _>>()?;
        let more = events.len() > limit;
        events.truncate(limit);
        Ok(LogPage { meta, events, more })
    }

    async fn seq_before(&self, channel: &ChannelId, time_ms: u64) -> Result<u64, StoreError> {
        let meta = self.settled_meta(channel.as_str()).await?;
        // Binary search on "the first logged event at or after seq m" (TTL may have left
        // holes): O(log n) one-record queries instead of reading the log.
        let (mut lo, mut hi) = (meta.log_floor, meta.seq);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let first = self
                .query_range_limited(channel.as_str(), &event_sk(mid), &event_sk(hi), 1)
                .await?;
            match first.first().map(parse_event).transpose()? {
                Some(e) if e.time_ms < time_ms => lo = e.seq,
                Some(_) => hi = mid - 1,
                None => hi = mid - 1,
            }
        }
        Ok(lo)
    }

    fn log_capacity(&self) -> u64 {
        self.capacity
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn max_item_bytes(&self) -> usize {
        MAX_ITEM_BYTES
    }

    async fn load_budget(&self, budget: &str) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(&budget_pk(budget), BUDGET_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        match out.item() {
            None => Ok(None),
            Some(r) => Ok(Some(get_s(r, "calls", "budget")?.to_string())),
        }
    }

    async fn save_budget(&self, budget: &str, usage: String) -> Result<(), StoreError> {
        let mut r = key(&budget_pk(budget), BUDGET_SK);
        r.insert("calls".into(), s(usage));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(r))
            .send()
            .await
            .map_err(|e| self.error("PutItem", e))?;
        Ok(())
    }

    async fn get_record(&self, ns: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.get_named(ns, key).await
    }

    async fn put_record(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        when: RecordWrite,
    ) -> Result<bool, StoreError> {
        self.put_named(ns, key, value, when).await
    }

    async fn delete_record(&self, ns: &str, key: &str) -> Result<bool, StoreError> {
        self.delete_named(ns, key).await
    }

    async fn list_records(&self, ns: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.list_named(ns).await
    }

    async fn meta(&self, channel: &ChannelId) -> Result<ChannelMeta, StoreError> {
        self.settled_meta(channel.as_str()).await
    }

    async fn item_count(&self, channel: &ChannelId) -> Result<u64, StoreError> {
        self.count_items(channel.as_str()).await
    }

    async fn items_page(
        &self,
        channel: &ChannelId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.page(channel.as_str(), after, limit).await
    }

    fn retention(&self) -> Option<Duration> {
        self.retention
    }

    async fn touch(&self, channel: &ChannelId, now: u64) -> Result<(), StoreError> {
        self.refresh_expiry(channel.as_str(), now).await
    }
}
