//! Channel leases in DynamoDB (behind [`super::Leases`]): which replica polls a channel, until when, and under which
//! fencing epoch.
//!
//! A lease is one record (`pk` = `lease#<channel id>`, `sk` = `lease`) with `owner`,
//! `lease_until` (unix ms) and `epoch`. Taking a free or expired lease increments the epoch in
//! the same conditional write, so every acquisition has a number no earlier holder shares; the
//! item store's commits are conditioned on it (`Commit::fence`). The epoch is never reset:
//! the record carries no TTL attribute.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use tokio::time::Instant;

use crate::channel::ChannelId;

/// The sort key of every lease record.
pub const LEASE_SK: &str = "lease";

/// The partition key of `channel`'s lease (channel ids start with a letter or digit and hold
/// no `#`, so this never meets a channel's own records).
pub fn lease_pk(channel: &str) -> String {
    format!("lease#{channel}")
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[derive(Debug, thiserror::Error)]
#[error("lease table {table}: {op} failed: {detail}")]
pub struct LeaseError {
    table: String,
    op: &'static str,
    detail: String,
}

impl LeaseError {
    pub fn new(table: &str, op: &'static str, detail: String) -> LeaseError {
        LeaseError {
            table: table.to_string(),
            op,
            detail,
        }
    }
}

/// A lease this replica holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub channel: ChannelId,
    pub epoch: u64,
    /// Until when this replica may act on it, by its own clock: the request's send time plus
    /// the TTL minus a safety margin, so it stops before anyone else may start.
    pub valid_until: Instant,
}

/// Who holds a lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub owner: String,
    pub epoch: u64,
    /// Unix ms.
    pub lease_until: u64,
}

impl Holder {
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.lease_until > now_ms
    }
}

/// Lease operations for one replica (`owner`).
#[derive(Clone)]
pub struct LeaseTable {
    client: Client,
    table: String,
    owner: String,
    ttl: Duration,
}

type Record = HashMap<String, AttributeValue>;

fn key(channel: &ChannelId) -> Record {
    HashMap::from([
        (
            "pk".to_string(),
            AttributeValue::S(lease_pk(channel.as_str())),
        ),
        ("sk".to_string(), AttributeValue::S(LEASE_SK.into())),
    ])
}

fn num(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_n(r: &Record, name: &str) -> Option<u64> {
    r.get(name)?.as_n().ok()?.parse().ok()
}

impl LeaseTable {
    pub fn new(client: Client, table: &str, owner: &str, ttl: Duration) -> LeaseTable {
        LeaseTable {
            client,
            table: table.to_string(),
            owner: owner.to_string(),
            ttl,
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How long before the stored expiry this replica stops acting on a lease: covers the
    /// request's own latency and clock skew between replicas.
    fn margin(&self) -> Duration {
        self.ttl / 5
    }

    fn error<E, R>(&self, op: &'static str, e: SdkError<E, R>) -> LeaseError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        LeaseError {
            table: self.table.clone(),
            op,
            detail: DisplayErrorContext(&e).to_string(),
        }
    }

    /// `Ok(None)` when only the condition failed.
    fn conditional<T, E, R>(
        &self,
        op: &'static str,
        result: Result<T, SdkError<E, R>>,
    ) -> Result<Option<T>, LeaseError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        match result {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(None),
            Err(e) => Err(self.error(op, e)),
        }
    }

    /// Takes `channel`'s lease if nobody else holds it (free, expired, or ours), with a new
    /// epoch. `Ok(None)` when another replica holds it.
    pub async fn acquire(&self, channel: &ChannelId) -> Result<Option<Held>, LeaseError> {
        let sent = Instant::now();
        let now = now_ms();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(channel)))
            .update_expression(
                "SET #owner = :me, lease_until = :until, epoch = if_not_exists(epoch, :zero) + :one",
            )
            // Also our own lease: a replica that gave it up locally (renewal too late) takes it
            // back at once under a new epoch, which fences its old poller's late commits.
            .condition_expression("attribute_not_exists(pk) OR lease_until <= :now OR #owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", AttributeValue::S(self.owner.clone()))
            .expression_attribute_values(":until", num(now + self.ttl.as_millis() as u64))
            .expression_attribute_values(":now", num(now))
            .expression_attribute_values(":zero", num(0))
            .expression_attribute_values(":one", num(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let Some(out) = self.conditional("UpdateItem (acquire)", result)? else {
            return Ok(None);
        };
        let epoch = out
            .attributes()
            .and_then(|a| get_n(a, "epoch"))
            .ok_or_else(|| LeaseError {
                table: self.table.clone(),
                op: "UpdateItem (acquire)",
                detail: "the answer holds no epoch".into(),
            })?;
        Ok(Some(Held {
            channel: channel.clone(),
            epoch,
            valid_until: sent + self.ttl - self.margin(),
        }))
    }

    /// Extends a held lease. `Ok(None)` when it is no longer ours (taken over after expiry).
    pub async fn renew(&self, held: &Held) -> Result<Option<Held>, LeaseError> {
        let sent = Instant::now();
        let until = now_ms() + self.ttl.as_millis() as u64;
        Ok(self
            .set_until(held, until, "UpdateItem (renew)")
            .await?
            .then(|| Held {
                valid_until: sent + self.ttl - self.margin(),
                ..held.clone()
            }))
    }

    /// Gives a held lease up at once (its epoch stays). Returns whether it was still ours.
    pub async fn release(&self, held: &Held) -> Result<bool, LeaseError> {
        self.set_until(held, 0, "UpdateItem (release)").await
    }

    /// Sets `lease_until` of a lease still held as `held` (same owner and epoch); `false` when
    /// it no longer is.
    async fn set_until(
        &self,
        held: &Held,
        until: u64,
        op: &'static str,
    ) -> Result<bool, LeaseError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&held.channel)))
            .update_expression("SET lease_until = :until")
            .condition_expression("#owner = :me AND epoch = :epoch")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", AttributeValue::S(self.owner.clone()))
            .expression_attribute_values(":epoch", num(held.epoch))
            .expression_attribute_values(":until", num(until))
            .send()
            .await;
        Ok(self.conditional(op, result)?.is_some())
    }

    /// The lease as stored, if the channel ever had one.
    pub async fn holder(&self, channel: &ChannelId) -> Result<Option<Holder>, LeaseError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(channel)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        Ok(out.item().and_then(|r| {
            Some(Holder {
                owner: r.get("owner")?.as_s().ok()?.clone(),
                epoch: get_n(r, "epoch")?,
                lease_until: get_n(r, "lease_until")?,
            })
        }))
    }
}
