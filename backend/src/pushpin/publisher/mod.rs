//! Publishing to Pushpin: ZeroMQ PUSH (default, [`ZmqPublisher`]) or HTTP `POST /publish`
//! ([`HttpPublisher`]).
//!
//! Several Pushpin instances get one PUSH socket each: a shared PUSH socket would round-robin
//! items between instances instead of sending every item to all of them.
//!
//! Two kinds of target. The configured ones (`pushpin.*`) are this replica's own: a publish
//! returns once every one of them accepted the items, and fails (the poller retries before
//! its next poll) when one did not. In cluster mode the Pushpins the other replicas advertise
//! are added and removed as membership changes ([`Publisher::set_remotes`]); they get every
//! item best effort, never waited for: one that is slow or gone must not delay or fail the
//! others, so its items queue per target up to a bound and beyond it are dropped and counted
//! (`restream_publish_failures_total`, one per target and publish). Its clients notice the gap
//! by seq and resume with `since`; a Pushpin that is gone is dropped at the next refresh.

mod paced;
mod via_http;
mod via_zmq;

use async_trait::async_trait;
use thiserror::Error;

use crate::pushpin::grip::PublishItem;

pub use paced::{chunks, BurstWindow, Paced, PAUSE as BURST_PAUSE};
pub use via_http::HttpPublisher;
pub use via_zmq::ZmqPublisher;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("ZeroMQ publish to {spec} failed: {source}")]
    Zmq {
        spec: String,
        #[source]
        source: zmq::Error,
    },
    #[error("HTTP publish to {url} failed: {detail}")]
    Http { url: String, detail: String },
    #[error("the publisher has shut down")]
    Closed,
}

/// Sends GRIP items to every Pushpin.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes items in order; returns once every configured Pushpin accepted them (or one
    /// failed: the error names the first).
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError>;

    /// Cluster mode: the other replicas' Pushpins (ZeroMQ specs or HTTP publish URLs, as this
    /// publisher speaks), published to best effort beside the configured ones. Replaces the
    /// previous set; what is published after this call reaches the new ones.
    fn set_remotes(&self, _targets: &[String]) {}

    /// WebSocket bytes one burst may carry (`pushpin.ws_burst_bytes`); 0: no bound. A caller
    /// that wants to act between the chunks of a long burst (answer subscribers) splits it
    /// itself with [`chunks`].
    fn burst_bytes(&self) -> usize {
        0
    }
}

/// Counts published items in the metrics (failures are counted per target where they happen).
pub struct Metered<P>(pub P);

#[async_trait]
impl<P: Publisher> Publisher for Metered<P> {
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError> {
        let result = self.0.publish(items).await;
        if result.is_ok() {
            crate::metrics::get().published.inc_by(items.len() as u64);
        }
        result
    }

    fn set_remotes(&self, targets: &[String]) {
        self.0.set_remotes(targets)
    }
}

/// A target's failures, logged when they start and when they end (not per item).
#[derive(Debug, Default)]
struct Health {
    failing: bool,
}

impl Health {
    fn failed(&mut self, target: &str, error: &dyn std::fmt::Display) {
        crate::metrics::get().publish_failures.inc();
        if !std::mem::replace(&mut self.failing, true) {
            tracing::warn!(target, error = %error, "publishing to a Pushpin fails (logged once until it recovers)");
        }
    }

    fn succeeded(&mut self, target: &str) {
        if std::mem::replace(&mut self.failing, false) {
            tracing::info!(target, "publishing to a Pushpin works again");
        }
    }
}

/// Sets `restream_pushpins`.
fn count_pushpins(n: usize) {
    crate::metrics::get().pushpins.set(n as i64);
}
