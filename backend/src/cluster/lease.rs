//! Channel leases (behind [`super::Leases`]): which replica polls a channel, until when, and under
//! which fencing epoch; the DynamoDB table is in `lease_table`.
//!
//! A lease is one record (`pk` = `lease#<channel id>`, `sk` = `lease`) with `owner`, `epoch`,
//! and either `session` (DynamoDB: the lease lives as long as its owner's replica session,
//! which one heartbeat per renewal period keeps alive for every lease at once) or a
//! `lease_until` of its own (unix ms; the in-memory table, and records written by versions
//! before sessions). Taking a free or expired lease increments the epoch in the same
//! conditional write, so every acquisition has a number no earlier holder shares; the item
//! store's commits are conditioned on it (`Commit::fence`). The epoch is never reset: the
//! record carries no TTL attribute.

use std::time::{SystemTime, UNIX_EPOCH};

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
    /// The replica session it was taken under (DynamoDB leases live as long as the session's
    /// heartbeat); 0 for leases renewed one by one (the in-memory table).
    pub session: u64,
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
