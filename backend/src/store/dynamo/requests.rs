//! The DynamoDB requests the store is built from: transaction actions, queries, batch
//! writes, and what their errors mean.

use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem, WriteRequest};

use super::records::*;

use crate::store::StoreError;

use super::{DynamoItemStore, THROTTLING};

impl DynamoItemStore {
    /// A readable error for a failed request; throttling after every retry says so.
    pub(super) fn error<E, R>(&self, op: &str, e: SdkError<E, R>) -> StoreError
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
    pub(super) fn applied<T, E, R>(
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

    pub(super) fn put(&self, item: Record, condition: Option<(&str, Record)>) -> TransactWriteItem {
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
    pub(super) fn fence_check(&self, channel: &str, epoch: u64) -> TransactWriteItem {
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

    pub(super) fn delete(&self, key: Record) -> TransactWriteItem {
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

    /// Every record of `pk` whose sort key lies in `[from, to]`, in key order.
    pub(super) async fn query_range(
        &self,
        pk: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<Record>, StoreError> {
        self.query(
            pk,
            "sk BETWEEN :from AND :to",
            [(":from", s(from)), (":to", s(to))],
        )
        .await
    }

    /// The first `limit` records of `pk` whose sort key lies in `[from, to]`, in key order.
    pub(super) async fn query_range_limited(
        &self,
        pk: &str,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Record> = None;
        loop {
            let want = limit - out.len();
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":from", s(from))
                .expression_attribute_values(":to", s(to))
                .consistent_read(true)
                .limit(i32::try_from(want).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.error("Query", e))?;
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if out.len() < limit => start = Some(key),
                _ => return Ok(out),
            }
        }
    }

    /// Every record of `pk` whose sort key satisfies `condition`, in key order.
    pub(super) async fn query<const N: usize>(
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
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(format!("pk = :pk AND {condition}"))
            .set_expression_attribute_values(Some(bound))
            .consistent_read(true);
        let mut out = Vec::new();
        self.each_page(query, |page| out.extend(page.items.unwrap_or_default()))
            .await?;
        Ok(out)
    }

    /// Runs `query` page by page (DynamoDB answers at most 1 MB per call) through the SDK's
    /// paginator, handing each page to `each`.
    pub(super) async fn each_page(
        &self,
        query: QueryFluentBuilder,
        mut each: impl FnMut(QueryOutput),
    ) -> Result<(), StoreError> {
        let mut pages = query.into_paginator().send();
        while let Some(page) = pages.next().await {
            each(page.map_err(|e| self.error("Query", e))?);
        }
        Ok(())
    }

    /// `BatchWriteItem` in groups of 25, resending what DynamoDB left unprocessed.
    pub(super) async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
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
}

pub(super) fn put_request(record: Record) -> aws_sdk_dynamodb::types::PutRequest {
    aws_sdk_dynamodb::types::PutRequest::builder()
        .set_item(Some(record))
        .build()
        .expect("item is set")
}

pub(super) fn delete_request(key: Record) -> WriteRequest {
    WriteRequest::builder()
        .delete_request(
            aws_sdk_dynamodb::types::DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .expect("key is set"),
        )
        .build()
}
