//! Forwarding: a replica whose subscribers asked for a snapshot of a channel polled elsewhere
//! hands the requests to the lease holder in one batch.

use std::time::Duration;

use super::{Cluster, ForwardedSnapshot, ForwardedSnapshots, Holder};
use crate::channel::ChannelId;

/// A request that can travel to another replica.
pub trait Forwardable {
    fn to_wire(&self) -> ForwardedSnapshot;
}

/// What became of a batch.
#[derive(Debug)]
pub enum Handed<R> {
    /// The replica holding this lease took every request.
    Delivered(Holder),
    /// No replica took them (not polled anywhere yet, or about to be here).
    Undelivered(Vec<R>),
}

/// How long an undelivered batch waits before it comes back to be tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Hands `requests` to the replica polling `channel` (per `holder` while its lease runs, else
/// as the lease table says). What no replica took comes back, after a short pause.
pub async fn forward<R: Forwardable>(
    cluster: &Cluster,
    channel: &ChannelId,
    requests: Vec<R>,
    holder: Option<Holder>,
) -> Handed<R> {
    let now = cluster.leases().now_ms();
    let holder = match holder.filter(|h| h.is_live(now)) {
        Some(h) => Some(h),
        None => match cluster.leases().holder(channel).await {
            Ok(h) => h.filter(|h| h.is_live(now)),
            Err(e) => {
                tracing::warn!(channel = %channel, error = %e, "cannot read a lease");
                None
            }
        },
    };
    let elsewhere = holder
        .filter(|h| h.owner != cluster.me().id)
        .and_then(|h| Some((cluster.member(&h.owner)?, h)));
    if let Some((member, holder)) = elsewhere {
        let batch = ForwardedSnapshots::new(channel, requests.iter().map(R::to_wire).collect())
            .sent_by(&cluster.me().id);
        match cluster.leases().hand_over(&member, &batch).await {
            Ok(()) => {
                crate::metrics::get()
                    .lease_events
                    .with_label_values(&["forwarded"])
                    .inc_by(requests.len() as u64);
                return Handed::Delivered(holder);
            }
            Err(e) => {
                tracing::warn!(channel = %channel, error = %e, "cannot hand snapshot requests to their replica")
            }
        }
    }
    tokio::time::sleep(RETRY_PAUSE).await;
    Handed::Undelivered(requests)
}

/// Sends a push batch to `holder`, the replica holding its channel's lease, and returns its
/// answer; `Unavailable` when it cannot be reached (the producer retries).
pub async fn forward_publish(
    cluster: &Cluster,
    channel: &ChannelId,
    holder: &Holder,
    batch: &crate::push::PushBatch,
) -> Result<crate::push::PushReceipt, crate::push::PushError> {
    let Some(member) = cluster.member(&holder.owner) else {
        tracing::warn!(channel = %channel, holder = %holder.owner, "the lease holder is not a known replica; publish refused");
        return Err(crate::push::PushError::Unavailable);
    };
    match cluster.leases().publish_to(&member, channel, batch).await {
        Ok(answer) => {
            crate::metrics::get()
                .lease_events
                .with_label_values(&["publish_forwarded"])
                .inc();
            answer
        }
        Err(e) => {
            tracing::warn!(channel = %channel, error = %e, "cannot hand a publish to the lease holder");
            Err(crate::push::PushError::Unavailable)
        }
    }
}
