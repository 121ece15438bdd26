//! Paged reads and retention on DynamoDB: a page of items is one `Query` with `Limit` and
//! `ExclusiveStartKey`; retention is the table's TTL on `expires_at`.
//!
//! With `store.retention_secs`, every commit stamps the meta and the items it writes with
//! `expires_at = now + retention`, and an active poller refreshes every item and then the meta
//! at least every quarter of the retention ([`DynamoItemStore::refresh_expiry`]). So the meta
//! never expires before any of its items, and nothing of an active channel expires. TTL
//! deletes an inactive channel's records in any order (and late): a meta past its
//! `expires_at` reads as missing, a channel without meta is new, and the items a previous life
//! left behind are deleted when the channel is loaded again (never shown, never `removed`).

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::Select;
use futures_util::{stream, StreamExt, TryStreamExt};

use super::records::*;
use super::{now_secs, DynamoItemStore, PARALLEL_WRITES};
use crate::store::{Page, StoreError};

impl DynamoItemStore {
    /// Adds `expires_at` (now + retention) to a meta or item record, with retention.
    pub(super) fn stamp(&self, record: &mut Record) {
        if let Some(retention) = self.retention {
            record.insert(TTL_ATTRIBUTE.into(), n(now_secs() + retention.as_secs()));
        }
    }

    /// At most `limit` items after `after`: one `Query` (more only when DynamoDB's 1 MB page
    /// ends first) for `limit + 1` items, to know whether more follow.
    pub(super) async fn page(
        &self,
        channel: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let record = self.read_meta(channel).await?;
        if !record.present {
            return Ok(Page::default());
        }
        let meta = match record.pending {
            Some(_) => self.settled_meta(channel).await?,
            None => record.meta,
        };
        // A sort key holds at most 1,024 bytes, so no stored id is longer than what is left
        // after the prefix: a longer cursor starts at its longest such prefix, and the few ids
        // between that and the cursor are dropped below.
        let mut start = after.map(|a| key(channel, item_sk(fitting_prefix(a))));
        let mut records = Vec::new();
        loop {
            let want = limit + 1 - records.len();
            let out = self
                .items_query(channel)
                .consistent_read(true)
                .limit(i32::try_from(want).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.error("Query", e))?;
            for record in out.items.unwrap_or_default() {
                let item = parse_item(&record)?;
                if after.is_none_or(|a| item.id.as_str() > a) {
                    records.push(item);
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() && records.len() <= limit => start = Some(k),
                _ => break,
            }
        }
        Ok(Page::of(meta, records, after, limit))
    }

    /// A `Query` over the channel's item records (not its meta or change log).
    fn items_query(&self, channel: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(channel))
            .expression_attribute_values(":prefix", s(ITEM_PREFIX))
    }

    /// How many items the channel holds: a `Query` that returns only a count.
    pub(super) async fn count_items(&self, channel: &str) -> Result<u64, StoreError> {
        if !self.read_meta(channel).await?.present {
            return Ok(0);
        }
        let query = self
            .items_query(channel)
            .select(Select::Count)
            .consistent_read(true);
        let mut count = 0;
        self.each_page(query, |page| {
            count += u64::try_from(page.count).unwrap_or(0)
        })
        .await?;
        Ok(count)
    }

    /// The channel's item keys (and `first_seen`), nothing else.
    async fn item_keys(&self, channel: &str) -> Result<Vec<Record>, StoreError> {
        let query = self
            .items_query(channel)
            .projection_expression("pk, sk, first_seen")
            .consistent_read(true);
        let mut out = Vec::new();
        self.each_page(query, |page| out.extend(page.items.unwrap_or_default()))
            .await?;
        Ok(out)
    }

    /// Pushes the channel's expiry to `now + retention`: every item first, then the meta (so
    /// the meta never expires after one of its items). Skipped when the meta's expiry
    /// is less than a quarter of the retention old, or the channel is not stored.
    pub(super) async fn refresh_expiry(&self, channel: &str, now: u64) -> Result<(), StoreError> {
        let Some(retention) = self.retention else {
            return Ok(());
        };
        let record = self.read_meta(channel).await?;
        let expires = now + retention.as_secs();
        let fresh_enough = record
            .expires_at
            .is_some_and(|at| at + retention.as_secs() / 4 >= expires);
        if !record.present || fresh_enough {
            return Ok(());
        }
        let keys = self.item_keys(channel).await?;
        let updates = keys
            .into_iter()
            .filter_map(|r| Some(key(channel, get_s(&r, "sk", "item").ok()?)));
        // Items first: the meta's expiry stays the earliest.
        stream::iter(updates)
            .map(|k| self.set_expiry(k, expires))
            .buffer_unordered(PARALLEL_WRITES)
            .try_collect::<Vec<()>>()
            .await?;
        self.set_expiry(key(channel, META), expires).await
    }

    /// `SET expires_at` on an existing record (a deleted one stays deleted).
    async fn set_expiry(&self, key: Record, expires: u64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression("SET expires_at = :e")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":e", n(expires))
            .send()
            .await;
        self.applied("UpdateItem", result).map(|_| ())
    }

    /// A channel without meta: deletes the items a previous life left (first seen over a
    /// retention ago; a concurrent first commit's items are newer and stay). Best effort:
    /// TTL deletes whatever this leaves.
    pub(super) async fn clean_up_expired(&self, channel: &str) {
        let Some(retention) = self.retention else {
            return;
        };
        let cutoff = now_secs().saturating_sub(retention.as_secs());
        let result = async {
            let orphans: Vec<(Record, u64)> = self
                .item_keys(channel)
                .await?
                .into_iter()
                .filter_map(|r| {
                    let first_seen = get_n(&r, "first_seen", "item").ok()?;
                    let sk = get_s(&r, "sk", "item").ok()?.to_string();
                    (first_seen <= cutoff).then(|| (key(channel, sk), first_seen))
                })
                .collect();
            let removed = stream::iter(orphans)
                .map(|(k, first_seen)| async move {
                    let result = self
                        .client
                        .delete_item()
                        .table_name(&self.table)
                        .set_key(Some(k))
                        .condition_expression("first_seen = :f")
                        .expression_attribute_values(":f", n(first_seen))
                        .send()
                        .await;
                    self.applied("DeleteItem", result)
                })
                .buffer_unordered(PARALLEL_WRITES)
                .try_collect::<Vec<bool>>()
                .await?;
            Ok::<usize, StoreError>(removed.into_iter().filter(|r| *r).count())
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(%channel, removed, "deleted the items of an expired channel");
                crate::metrics::get()
                    .store_orphans_removed
                    .inc_by(removed as u64);
            }
            Err(e) => {
                tracing::warn!(%channel, error = %e, "could not delete an expired channel's items; TTL will")
            }
        }
    }
}

/// The longest prefix of `id` (on a character boundary) that fits a sort key after the item
/// prefix: `id` itself for every id DynamoDB can hold.
fn fitting_prefix(id: &str) -> &str {
    const MAX_SORT_KEY_BYTES: usize = 1024;
    let room = MAX_SORT_KEY_BYTES - ITEM_PREFIX.len();
    let mut end = id.len().min(room);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    &id[..end]
}
