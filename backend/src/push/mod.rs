//! Push channels: channels whose items producers publish (the HTTP publish API, an SQS queue)
//! instead of restream polling an upstream. Declared in `channels/*.toml` with `kind = "push"`;
//! every batch goes through the channel's writer (the poller's counterpart, under the channel's
//! lease in cluster mode), so persistence, `seq`, snapshots, resumes and fan-out are the polled
//! channels' own.
//!
//! - `spec.rs`: the channel file (`mode`, `keep`, `[queue]`) and the registry entry it makes;
//! - `batch.rs`: what a publish carries ([`PushBatch`]), its receipt and its errors;
//! - `plan.rs`: the pure decision of one batch (what to commit, what to announce);
//! - `publishing.rs`: [`Publishing`], the one way in for the API, the queue and the CLI.

pub mod batch;
pub mod plan;
mod publishing;
#[cfg(feature = "aws")]
pub mod queue;
#[cfg(feature = "aws")]
mod queue_map;
pub mod spec;

pub use batch::{PushBatch, PushError, PushOp, PushReceipt};
pub use publishing::Publishing;
pub use spec::{PushChannel, PushMode, PushSpec, QueueSpec};
