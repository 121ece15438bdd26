//! Routing push batches to their channel's writer: the running one; one started for the
//! batch (single node); or, in cluster mode, one started under the channel's lease taken at
//! once, else the replica holding that lease (the batch is forwarded, its answer relayed).

use std::sync::Arc;

use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::slot::{Attempt, Poller, Slot};
use super::Scheduler;
use crate::channel::ChannelId;
use crate::cluster::{Cluster, Holder};
use crate::poller::PublishRequest;
use crate::push::PushError;

impl Scheduler {
    /// Sends a batch to `channel`'s writer, wherever it runs, starting it if needed.
    pub(super) fn route_publish(
        &mut self,
        channel: ChannelId,
        request: PublishRequest,
        forwarded: bool,
        shutdown: &CancellationToken,
    ) {
        match self.slots.get_mut(&channel) {
            Some(Slot::Polling(p)) if p.lost_lease() => self.forget_poller(&channel),
            Some(Slot::Polling(p)) => return deliver(p, request, self.push.linger),
            _ => {}
        }
        let entry = match self.resolve(&channel) {
            Ok(entry) if entry.fetcher.push().is_some() => entry,
            _ => return refuse(request, PushError::NotPush(channel.name().to_string())),
        };
        let mut running = self.running.clone();
        if !self.within_caps(&channel, &entry, &mut running) {
            return refuse(request, PushError::ChannelCap);
        }
        let Some(cluster) = self.cluster.clone() else {
            self.start(channel.clone(), entry, None, shutdown);
            if let Some(Slot::Polling(p)) = self.slots.get_mut(&channel) {
                deliver(p, request, self.push.linger);
            }
            return;
        };
        self.publish_in_cluster(channel, request, forwarded, &cluster);
    }

    /// Cluster mode, no writer here: forwards to the live holder of the lease if one is
    /// known, else queues the batch and tries the lease at once (a publish does not wait for
    /// the channel's preferred replica).
    fn publish_in_cluster(
        &mut self,
        channel: ChannelId,
        request: PublishRequest,
        forwarded: bool,
        cluster: &Arc<Cluster>,
    ) {
        let max = self.push.max_pending_batches;
        let now_ms = cluster.leases().now_ms();
        let me = cluster.leases().owner().to_string();
        let Some(r) = self.remote(&channel) else {
            return refuse(request, PushError::NotPush(channel.name().to_string()));
        };
        let holder = r
            .holder
            .clone()
            .filter(|h| h.is_live(now_ms) && h.owner != me);
        if let (Some(holder), false) = (holder, forwarded) {
            return self.forward_publish(channel, holder, request);
        }
        if r.publishes.len() >= max {
            return refuse(request, PushError::Busy);
        }
        r.publishes.push((request, forwarded));
        if r.attempt != Attempt::InFlight {
            r.attempt = Attempt::Due; // A publish does not wait for a retry time.
            self.try_acquire(channel, cluster);
        }
    }

    /// Sends a batch to the replica holding its channel's lease; the answer goes straight
    /// back to the producer.
    fn forward_publish(&mut self, channel: ChannelId, holder: Holder, request: PublishRequest) {
        let Some(cluster) = self.cluster.clone() else {
            return refuse(request, PushError::Unavailable);
        };
        self.tracker.spawn(async move {
            let answer =
                crate::cluster::forward_publish(&cluster, &channel, &holder, &request.batch).await;
            let _ = request.reply.send(answer);
        });
    }

    /// A lease attempt ended without the lease: the queued batches go to the holder (unless
    /// they were forwarded here already) or are refused for now.
    pub(super) fn publishes_not_taken(&mut self, channel: &ChannelId, holder: Option<Holder>) {
        let Some(Slot::Remote(r)) = self.slots.get_mut(channel) else {
            return;
        };
        let waiting = std::mem::take(&mut r.publishes);
        for (request, forwarded) in waiting {
            match (&holder, forwarded) {
                (Some(h), false) => self.forward_publish(channel.clone(), h.clone(), request),
                _ => refuse(request, PushError::Unavailable),
            }
        }
    }

    /// Whether batches wait for `channel`'s lease.
    pub(super) fn publishes_waiting(&self, channel: &ChannelId) -> bool {
        matches!(self.slots.get(channel), Some(Slot::Remote(r)) if !r.publishes.is_empty())
    }
}

/// Hands a batch to a running writer, which lingers `linger` from this publish on.
pub(super) fn deliver(poller: &mut Poller, request: PublishRequest, linger: std::time::Duration) {
    let Some(batches) = &poller.batches else {
        return refuse(request, PushError::NotPush(String::new()));
    };
    poller.linger_until = Some(Instant::now() + linger);
    match batches.try_send(request) {
        Ok(()) => {}
        Err(TrySendError::Full(request)) => {
            crate::metrics::get()
                .queue_full
                .with_label_values(&["writer"])
                .inc();
            refuse(request, PushError::Busy)
        }
        Err(TrySendError::Closed(request)) => refuse(request, PushError::Unavailable),
    }
}

fn refuse(request: PublishRequest, error: PushError) {
    let _ = request.reply.send(Err(error));
}
