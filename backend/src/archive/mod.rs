//! Archive sinks: every event of a channel with a sink is appended as NDJSON to objects
//! partitioned by channel and hour — on S3 or in a local folder — and read back for history
//! ranges older than the store keeps (docs/history.md).
//!
//! This file is the contract the admin API and the history reader use; the sinks, the
//! archiver and the reader live in the submodules.

pub mod archiver;
pub mod book;
pub mod control;
pub mod holds;
pub mod layout;
pub mod leader;
pub mod local;
pub mod reader;
#[cfg(feature = "aws")]
pub mod s3;
pub mod setup;
pub mod target;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::channel::ChannelId;

pub use archiver::Archiver;
pub use holds::Holds;
pub use leader::Leader;
pub use setup::Setup;
pub use target::{SinkTarget, TargetError};

/// Where a sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkType {
    /// Objects in the `archive.s3_bucket` bucket.
    S3,
    /// Files under `archive.local_dir` (the embedded setup).
    Local,
}

impl SinkType {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkType::S3 => "s3",
            SinkType::Local => "local",
        }
    }

    pub fn parse(text: &str) -> Option<SinkType> {
        match text {
            "s3" => Some(SinkType::S3),
            "local" => Some(SinkType::Local),
            _ => None,
        }
    }
}

/// Who turned a sink on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnabledBy {
    /// `archive.sinks` in the settings (the admin API cannot remove it).
    Settings,
    /// `PUT /admin/channels/{name}/sinks/{type}`.
    Api,
}

/// One channel's sink and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkState {
    /// The canonical channel id (`name?k=v…`).
    pub channel: String,
    pub sink: SinkType,
    pub enabled_by: EnabledBy,
    /// Seq of the last event written to the archive (0: none yet).
    pub archived_seq: u64,
    /// Time (unix ms) of that event (0: none yet).
    pub archived_time_ms: u64,
    /// The channel's current seq, as last seen by the archiver.
    pub channel_seq: u64,
    /// Events committed but not archived yet.
    pub lag_events: u64,
    /// Seconds since the oldest event not archived yet was committed (0: caught up).
    pub lag_secs: u64,
    /// The last failure's general description while failing (never a secret); `None` when
    /// the last attempt worked.
    pub last_error: Option<String>,
}

/// Why a sink operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The sink type has no target in the settings (`archive.s3_bucket` / `archive.local_dir`).
    #[error("the {0} sink is not configured on this deployment")]
    NotConfigured(&'static str),
    /// The sink was turned on in the settings; only the settings can turn it off.
    #[error("this sink is set in the settings (archive.sinks) and cannot be removed here")]
    InSettings,
    /// Sink state could not be read or written.
    #[error("sink state is unavailable: {0}")]
    Store(String),
}

/// What the admin API does with sinks.
#[async_trait]
pub trait SinkControl: Send + Sync {
    /// Every channel's sinks, in channel then type order.
    async fn list(&self) -> Result<Vec<SinkState>, SinkError>;
    /// Turns a sink on (idempotent; archiving starts from the log's current floor).
    async fn enable(&self, channel: &ChannelId, sink: SinkType) -> Result<SinkState, SinkError>;
    /// Turns a sink off; false when it was not on. What was archived stays.
    async fn disable(&self, channel: &ChannelId, sink: SinkType) -> Result<bool, SinkError>;
    /// One sink's state; `None` when it is not on.
    async fn state(
        &self,
        channel: &ChannelId,
        sink: SinkType,
    ) -> Result<Option<SinkState>, SinkError>;
    /// Each sink type failing on this replica, with a general description (for `/readyz`).
    fn failing(&self) -> Vec<(SinkType, String)> {
        Vec::new()
    }
}
