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
