//! What one publish carries, what it answers, and why it can be refused.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One operation of a batch, applied in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushOp {
    /// `items` mode: adds the item, or replaces the stored one with the same id.
    Upsert(Map<String, Value>),
    /// `items` mode: removes the item with this id (nothing if there is none).
    Delete(String),
    /// `events` mode: appends one event carrying this value.
    Append(Value),
}

/// Everything one publish asks for; committed atomically, in order, or not at all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushBatch {
    pub ops: Vec<PushOp>,
    /// `PUT`: the batch is the whole set; stored items it does not upsert are removed.
    #[serde(default)]
    pub replace: bool,
    /// A retried batch with the same key is a no-op that answers the first receipt.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// What a committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushReceipt {
    /// The channel's seq after the batch (unchanged when the batch changed nothing).
    pub seq: u64,
    pub new: usize,
    pub updated: usize,
    pub removed: usize,
    /// Upserts equal to the stored item: nothing written, nothing sent.
    pub unchanged: usize,
    /// The `Idempotency-Key` was seen before: nothing was done, this is the first receipt.
    #[serde(default)]
    pub replayed: bool,
}

/// Longest `Idempotency-Key` accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// Why a batch was not committed. Nothing of a refused batch is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The batch does not fit the channel (an entry without a usable id, an op of the other
    /// mode, an empty batch...). Public text: says which entry and why, never a secret.
    #[error("{0}")]
    Invalid(String),
    /// The channel is not a push channel (a polled one, or unknown).
    #[error("channel {0} does not take publishes")]
    NotPush(String),
    /// The same `Idempotency-Key` came with a different batch.
    #[error("this Idempotency-Key was used for a different batch")]
    KeyReused,
    /// Too many publishes wait for this channel's writer; try again shortly.
    #[error("too many publishes are waiting for this channel; retry shortly")]
    Busy,
    /// A channel cap (`limits.max_channels*`) leaves no room for this channel's writer.
    #[error("the channel limit is reached; retry later")]
    ChannelCap,
    /// The store, the lease or the replica holding it could not be reached; nothing was
    /// committed (the detail is logged, not returned).
    #[error("publishing is unavailable right now; retry shortly")]
    Unavailable,
}

impl PushError {
    /// The error code of the API's JSON answer and the `reason` label of metrics.
    pub fn code(&self) -> &'static str {
        match self {
            PushError::Invalid(_) => "invalid_items",
            PushError::NotPush(_) => "not_a_push_channel",
            PushError::KeyReused => "idempotency_key_reused",
            PushError::Busy => "busy",
            PushError::ChannelCap => "channel_limit",
            PushError::Unavailable => "unavailable",
        }
    }
}
