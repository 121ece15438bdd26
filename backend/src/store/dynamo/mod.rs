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

mod records;
mod table;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem, WriteRequest};
use aws_sdk_dynamodb::Client;
use futures_util::{stream, StreamExt, TryStreamExt};

use records::*;

use crate::channel::ChannelId;

use super::{trimmed_floor, ChannelMeta, Commit, ItemStore, LoggedEvent, StoreError, StoredItem};

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
        };
        table::ensure(&store, create_if_missing).await?;
        Ok(store)
    }

    /// A readable error for a failed request; throttling after every retry says so.
    fn error<E, R>(&self, op: &str, e: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let attempts = self
            .client
            .config()
            .retry_config()
            .map(|r| r.max_attempts())
            .unwrap_or(1);
        match e.code() {
            Some(code) if THROTTLING.contains(&code) => StoreError::Backend(format!(
                "DynamoDB throttled {op} on table {} after {attempts} attempts ({code}); \
                 raise the table's capacity or use on-demand billing",
                self.table
            )),
            Some("ResourceNotFoundException") => StoreError::Backend(format!(
                "DynamoDB table {} does not exist ({op})",
                self.table
            )),
            _ => StoreError::Backend(format!(
                "DynamoDB {op} on table {} failed: {}",
                self.table,
                DisplayErrorContext(&e)
            )),
        }
    }

    /// `Ok(true)` when a conditional request was applied, `Ok(false)` when only its condition
    /// failed (another writer was first).
    fn applied<T, E, R>(
        &self,
        op: &str,
        result: Result<T, SdkError<E, R>>,
    ) -> Result<bool, StoreError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(self.error(op, e)),
        }
    }

    fn put(&self, item: Record, condition: Option<(&str, Record)>) -> TransactWriteItem {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        if let Some((expression, values)) = condition {
            put = put
                .condition_expression(expression)
                .set_expression_attribute_values(Some(values));
        }
        TransactWriteItem::builder()
            .put(put.build().expect("table and item are set"))
            .build()
    }

    /// The condition that `channel`'s lease still has `epoch` (cluster mode's fence).
    fn fence_check(&self, channel: &str, epoch: u64) -> TransactWriteItem {
        TransactWriteItem::builder()
            .condition_check(
                ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(
                        &crate::cluster::lease_pk(channel),
                        crate::cluster::LEASE_SK,
                    )))
                    .condition_expression("epoch = :epoch")
                    .expression_attribute_values(":epoch", n(epoch))
                    .build()
                    .expect("table, key and condition are set"),
            )
            .build()
    }

    fn delete(&self, key: Record) -> TransactWriteItem {
        TransactWriteItem::builder()
            .delete(
                Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key))
                    .build()
                    .expect("table and key are set"),
            )
            .build()
    }

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
        parse_meta(out.item())
    }

    /// The channel's meta, finishing a staged commit first if one is under way.
    async fn settled_meta(&self, channel: &str) -> Result<ChannelMeta, StoreError> {
        let record = self.read_meta(channel).await?;
        if let Some(pending) = &record.pending {
            self.finish(channel, pending).await?;
        }
        Ok(record.meta)
    }

    /// Every record of `pk` whose sort key lies in `[from, to]`, in key order.
    async fn query_range(&self, pk: &str, from: &str, to: &str) -> Result<Vec<Record>, StoreError> {
        self.query(
            pk,
            "sk BETWEEN :from AND :to",
            [(":from", s(from)), (":to", s(to))],
        )
        .await
    }

    /// Every record of `pk` whose sort key satisfies `condition`, in key order.
    async fn query<const N: usize>(
        &self,
        pk: &str,
        condition: &str,
        values: [(&str, aws_sdk_dynamodb::types::AttributeValue); N],
    ) -> Result<Vec<Record>, StoreError> {
        let mut bound: Record = values
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        bound.insert(":pk".into(), s(pk));
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(format!("pk = :pk AND {condition}"))
                .set_expression_attribute_values(Some(bound.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.error("Query", e))?;
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// The condition that makes a meta write the commit point: the channel is still at
    /// `expected` and no staged commit is unfinished.
    fn meta_condition(expected: u64) -> (&'static str, Record) {
        let values = Record::from([(":expected".to_string(), n(expected))]);
        let expression = if expected == 0 {
            "attribute_not_exists(pk) OR (seq = :expected AND attribute_not_exists(pending))"
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

    /// A large commit: stage its chunks, switch the meta record (the commit point), finish.
    /// `Ok(false)` when the meta condition failed.
    async fn commit_staged(&self, commit: &Commit, meta: &ChannelMeta) -> Result<bool, StoreError> {
        let chunks = chunked(commit);
        let expires = now_secs() + PENDING_TTL.as_secs();
        let pending = Pending {
            seq: meta.seq,
            attempt: rand::random(),
            chunks: chunks.len(),
        };
        let staged: Vec<Record> = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let mut r = key(commit.channel.as_str(), pending_sk(&pending, i));
                r.insert(
                    "chunk".into(),
                    s(serde_json::to_string(chunk).expect("chunks serialize")),
                );
                r.insert(TTL_ATTRIBUTE.into(), n(expires));
                r
            })
            .collect();
        self.batch_write(
            staged
                .into_iter()
                .map(|r| WriteRequest::builder().put_request(put_request(r)).build())
                .collect(),
        )
        .await?;
        let meta_put = self.meta_record(commit.channel.as_str(), meta, Some(&pending));
        let switched = match commit.fence {
            // The commit point and the fence in one transaction.
            Some(epoch) => {
                let put = self.put(meta_put, Some(Self::meta_condition(commit.expected_seq)));
                self.commit_in_one(commit.channel.as_str(), vec![put], Some(epoch))
                    .await?
            }
            None => {
                let (condition, values) = Self::meta_condition(commit.expected_seq);
                let result = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(meta_put))
                    .condition_expression(condition)
                    .set_expression_attribute_values(Some(values))
                    .send()
                    .await;
                self.applied("PutItem", result)?
            }
        };
        if !switched {
            return Ok(false);
        }
        self.finish(commit.channel.as_str(), &pending).await?;
        Ok(true)
    }

    /// Applies a staged commit's chunks (idempotent, safe against newer commits), then clears
    /// the marker and the chunks.
    async fn finish(&self, channel: &str, pending: &Pending) -> Result<(), StoreError> {
        let expires = now_secs() + self.log_ttl.as_secs();
        for i in 0..pending.chunks {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key(channel, pending_sk(pending, i))))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| self.error("GetItem", e))?;
            // A missing chunk was finished and cleared by another reader.
            let Some(record) = out.item() else { continue };
            let chunk = parse_chunk(record)?;
            let mut writes: Vec<(Record, bool)> = Vec::new();
            writes.extend(
                chunk
                    .upserts
                    .iter()
                    .map(|i| (item_record(channel, i), true)),
            );
            writes.extend(
                chunk
                    .events
                    .iter()
                    .map(|e| (event_record(channel, e, expires), true)),
            );
            writes.extend(
                chunk
                    .removals
                    .iter()
                    .map(|id| (key(channel, item_sk(id)), false)),
            );
            stream::iter(writes)
                .map(|(record, is_put)| self.write_if_not_newer(record, is_put, pending.seq))
                .buffer_unordered(PARALLEL_WRITES)
                .try_collect::<Vec<()>>()
                .await?;
        }
        let cleared = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(channel, META)))
            .update_expression("REMOVE pending")
            .condition_expression("pending = :p")
            .expression_attribute_values(
                ":p",
                s(serde_json::to_string(pending).expect("pending serializes")),
            )
            .send()
            .await;
        self.applied("UpdateItem", cleared)?;
        self.batch_write(
            (0..pending.chunks)
                .map(|i| delete_request(key(channel, pending_sk(pending, i))))
                .collect(),
        )
        .await
    }

    /// A put or delete that does nothing when the record already holds a newer seq.
    async fn write_if_not_newer(
        &self,
        record: Record,
        is_put: bool,
        seq: u64,
    ) -> Result<(), StoreError> {
        let condition = "attribute_not_exists(seq) OR seq <= :s";
        if is_put {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(record))
                .condition_expression(condition)
                .expression_attribute_values(":s", n(seq))
                .send()
                .await;
            self.applied("PutItem", result).map(|_| ())
        } else {
            let result = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(record))
                .condition_expression(condition)
                .expression_attribute_values(":s", n(seq))
                .send()
                .await;
            self.applied("DeleteItem", result).map(|_| ())
        }
    }

    /// `BatchWriteItem` in groups of 25, resending what DynamoDB left unprocessed.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for group in requests.chunks(25) {
            let mut todo = group.to_vec();
            let mut delay = Duration::from_millis(50);
            while !todo.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, todo)
                    .send()
                    .await
                    .map_err(|e| self.error("BatchWriteItem", e))?;
                todo = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                if !todo.is_empty() {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        Ok(())
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

fn put_request(record: Record) -> aws_sdk_dynamodb::types::PutRequest {
    aws_sdk_dynamodb::types::PutRequest::builder()
        .set_item(Some(record))
        .build()
        .expect("item is set")
}

fn delete_request(key: Record) -> WriteRequest {
    WriteRequest::builder()
        .delete_request(
            aws_sdk_dynamodb::types::DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .expect("key is set"),
        )
        .build()
}

/// Splits a commit's writes into chunks of about [`CHUNK_BYTES`] of JSON each. Each write is
/// measured as the chunk will store it: serialized, so an event's message counts with its
/// quotes escaped (a message of 1,000 bytes can take 1,300 in the chunk).
fn chunked(commit: &Commit) -> Vec<Chunk> {
    fn json_len(v: &impl serde::Serialize) -> usize {
        serde_json::to_string(v).map_or(0, |s| s.len())
    }
    let mut chunks = vec![Chunk::default()];
    let mut size = 0;
    let mut room = |bytes: usize, chunks: &mut Vec<Chunk>| {
        if size + bytes > CHUNK_BYTES && size > 0 {
            chunks.push(Chunk::default());
            size = 0;
        }
        size += bytes + 8;
    };
    for item in &commit.upserts {
        room(json_len(item), &mut chunks);
        chunks
            .last_mut()
            .expect("one chunk")
            .upserts
            .push(item.clone());
    }
    for id in &commit.removals {
        room(json_len(id), &mut chunks);
        chunks
            .last_mut()
            .expect("one chunk")
            .removals
            .push(id.clone());
    }
    for event in &commit.events {
        room(json_len(event), &mut chunks);
        chunks
            .last_mut()
            .expect("one chunk")
            .events
            .push(event.clone());
    }
    chunks
}

#[async_trait]
impl ItemStore for DynamoItemStore {
    async fn load(
        &self,
        channel: &ChannelId,
    ) -> Result<(ChannelMeta, Vec<StoredItem>), StoreError> {
        let channel = channel.as_str();
        let meta = self.settled_meta(channel).await?;
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
        meta.log_floor = trimmed_floor(meta.log_floor, meta.seq, self.capacity);
        let expires = now_secs() + self.log_ttl.as_secs();
        let mut writes = Vec::new();
        let mut bytes = 0;
        for item in &commit.upserts {
            let record = item_record(commit.channel.as_str(), item);
            bytes += self.checked_size(commit.channel.as_str(), &item.id, &record)?;
            writes.push(self.put(record, None));
        }
        for id in &commit.removals {
            writes.push(self.delete(key(commit.channel.as_str(), item_sk(id))));
        }
        for event in &commit.events {
            let record = event_record(commit.channel.as_str(), event, expires);
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

    fn log_capacity(&self) -> u64 {
        self.capacity
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn max_item_bytes(&self) -> usize {
        MAX_ITEM_BYTES
    }

    async fn load_budget(&self, budget: &str) -> Result<Vec<u64>, StoreError> {
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
            None => Ok(Vec::new()),
            Some(r) => serde_json::from_str(get_s(r, "calls", "budget")?)
                .map_err(|e| StoreError::Corrupt(format!("budget {budget}: {e}"))),
        }
    }

    async fn save_budget(&self, budget: &str, calls: Vec<u64>) -> Result<(), StoreError> {
        let mut r = key(&budget_pk(budget), BUDGET_SK);
        r.insert(
            "calls".into(),
            s(serde_json::to_string(&calls).expect("numbers serialize")),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(r))
            .send()
            .await
            .map_err(|e| self.error("PutItem", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_fit_a_record_even_when_event_messages_are_all_quotes() {
        // 400 quote-heavy events of ~1.3 KB: escaped, each takes ~2 KB in a chunk.
        let message = format!(
            "{{\"type\":\"new\",\"item\":{{{}}}}}",
            "\"a\":\"b\",".repeat(130)
        );
        let commit = Commit {
            events: (1..=400)
                .map(|seq| LoggedEvent {
                    seq,
                    message: message.clone(),
                })
                .collect(),
            ..Commit::new(crate::channel::ChannelId::parse("t").unwrap())
        };
        let chunks = chunked(&commit);
        assert!(chunks.len() > 1);
        for chunk in &chunks {
            let bytes = serde_json::to_string(chunk).unwrap().len();
            assert!(bytes <= CHUNK_BYTES + 4096, "a chunk of {bytes} bytes");
        }
        assert_eq!(chunks.iter().map(|c| c.events.len()).sum::<usize>(), 400);
    }
}
