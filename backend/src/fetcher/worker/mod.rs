//! Warm fetcher workers: long-lived Python processes that import a fetcher's `main.py` once
//! and serve calls one at a time, as AWS Lambda keeps an execution environment warm.
//!
//! Layout: [`protocol`] (the frames on the pipes), `child` (one worker process), `pool` (one
//! fetcher's workers, its FIFO queue, the global cap), `worker.py` (the Python side).

mod child;
mod pool;
pub mod protocol;

pub use child::{stderr_tail, Called, Failure};
pub use pool::{Refused, WorkerCap, WorkerPool};

use serde::{Deserialize, Serialize};

/// Default of `fetchers.workers_per_fetcher`.
pub const DEFAULT_WORKERS_PER_FETCHER: usize = 2;
/// Default of `fetchers.max_workers`.
pub const DEFAULT_MAX_WORKERS: usize = 16;
/// Default of `fetchers.worker_max_calls`.
pub const DEFAULT_WORKER_MAX_CALLS: u64 = 1000;
/// Default of `fetchers.worker_max_rss_mb`.
pub const DEFAULT_WORKER_MAX_RSS_MB: u64 = 256;

/// How process fetchers run (`fetchers.process_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessMode {
    /// Warm workers that serve many calls each (the default).
    #[default]
    Warm,
    /// A new Python process for every call.
    Oneshot,
}

/// The limits of one fetcher's warm workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Workers (and calls running at once) per fetcher, ≥ 1.
    pub per_fetcher: usize,
    /// A worker is replaced after serving this many calls (≥ 1).
    pub max_calls: u64,
    /// A worker is replaced after a call that leaves its resident memory above this.
    pub max_rss_bytes: u64,
}

impl Default for WorkerSettings {
    fn default() -> WorkerSettings {
        WorkerSettings {
            per_fetcher: DEFAULT_WORKERS_PER_FETCHER,
            max_calls: DEFAULT_WORKER_MAX_CALLS,
            max_rss_bytes: DEFAULT_WORKER_MAX_RSS_MB * 1024 * 1024,
        }
    }
}
