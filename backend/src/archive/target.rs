//! Where a sink's objects live: one object-safe trait ([`SinkTarget`]) over a local folder
//! ([`super::local::LocalTarget`]) and an S3 bucket ([`super::s3::S3Target`]). Keys are
//! relative to the target's root (`archive.local_dir`, `archive.s3_prefix`).

use async_trait::async_trait;

use super::SinkType;

/// A target's failure: `what` in general terms for operators and the admin API (never a
/// host, a path or a secret); `detail` for the logs.
#[derive(Debug, thiserror::Error)]
#[error("the {sink} sink cannot {what}")]
pub struct TargetError {
    pub sink: &'static str,
    pub what: &'static str,
    pub detail: String,
}

#[async_trait]
pub trait SinkTarget: Send + Sync {
    fn sink(&self) -> SinkType;
    /// Writes (or replaces, whole) the object `key`.
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), TargetError>;
    /// Up to `max` object keys under `prefix` (a folder, ending with `/`) that sort after
    /// `start_after`, in key order.
    async fn list(
        &self,
        prefix: &str,
        start_after: &str,
        max: usize,
    ) -> Result<Vec<String>, TargetError>;
    /// The object `key` whole.
    async fn get(&self, key: &str) -> Result<Vec<u8>, TargetError>;
}
