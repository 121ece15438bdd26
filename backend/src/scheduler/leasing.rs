//! Cluster mode: taking channels' leases in the background, starting pollers under them, and
//! forwarding snapshot requests to the replica that polls a channel.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::slot::{Attempt, Remote, Slot};
use super::{Command, Scheduler, SNAPSHOT_WAIT};
use crate::channel::ChannelId;
use crate::cluster::{self, Cluster, Handed, Held, Holder, LeaseError};
use crate::poller::SnapshotRequest;

/// The outcome of one try at a channel's lease.
pub(super) enum Attempted {
    /// Taken: the poller may start under it.
    Taken { held: Held, cluster: Arc<Cluster> },
    /// Held by another replica: try again just after it runs out.
    HeldElsewhere { holder: Holder, retry_in: Duration },
    /// The table could not be asked (or held no record): try again later.
    Failed { retry_in: Duration },
}

/// A forwarding task's result.
pub(super) struct Forwarded {
    channel: ChannelId,
    handed: Handed<SnapshotRequest>,
}

impl Scheduler {
    /// The `Remote` slot of `channel`, made if the channel had none; `None` when it is polled
    /// here or ignored.
    pub(super) fn remote(&mut self, channel: &ChannelId) -> Option<&mut Remote> {
        match self
            .slots
            .entry(channel.clone())
            .or_insert_with(|| Slot::Remote(Remote::default()))
        {
            Slot::Remote(r) => Some(r),
            _ => None,
        }
    }

    /// The earliest lease attempt due after `after`: earlier ones were tried by that pass.
    pub(super) fn next_attempt_after(&mut self, after: Instant) -> Option<Instant> {
        while let Some(Reverse((t, channel))) = self.due.peek() {
            let current = matches!(
                self.slots.get(channel),
                Some(Slot::Remote(Remote { attempt: Attempt::After(at), .. })) if at == t
            );
            if current && *t > after {
                return Some(*t);
            }
            self.due.pop();
        }
        None
    }

    /// Tries to take `channel`'s lease in the background, at once if the channel prefers this
    /// replica, else once it has gone unowned for a lease TTL.
    pub(super) fn try_acquire(&mut self, channel: ChannelId, cluster: &Arc<Cluster>) {
        let now = Instant::now();
        let Some(r) = self.remote(&channel) else {
            return;
        };
        let since = *r.unowned_since.get_or_insert(now);
        // Batches waiting for the lease do not wait for the channel's preferred replica.
        let urgent = !r.publishes.is_empty();
        let waiting = match r.attempt {
            Attempt::InFlight => true,
            Attempt::After(t) => t > now,
            Attempt::Due => false,
        };
        if waiting || (!urgent && !cluster.prefers_me(&channel) && now < since + cluster.ttl()) {
            return;
        }
        r.attempt = Attempt::InFlight;
        // Seen held by another replica: that replica most likely renewed it since, so a read
        // (not a refused conditional write, which costs write capacity) comes first.
        let read_first = r
            .holder
            .as_ref()
            .is_some_and(|h| h.owner != cluster.leases().owner());
        let (cluster, commands) = (cluster.clone(), self.commands_tx.clone());
        self.tracker.spawn(async move {
            let attempt = attempt_lease(cluster, &channel, read_first).await;
            if let Err(refused) = commands.send(Command::Acquired { channel, attempt }).await {
                give_back(refused.0).await; // The scheduler is shutting down.
            }
        });
    }

    /// A lease attempt's outcome.
    pub(super) fn acquired(
        &mut self,
        channel: ChannelId,
        attempt: Attempted,
        shutdown: &CancellationToken,
    ) {
        let (next, holder) = match attempt {
            Attempted::Taken { held, cluster } => {
                if let Some(Slot::Remote(r)) = self.slots.get_mut(&channel) {
                    r.attempt = Attempt::Due;
                }
                return self.start_leased(channel, held, cluster, shutdown);
            }
            Attempted::HeldElsewhere { holder, retry_in } => (retry_in, Some(holder)),
            Attempted::Failed { retry_in } => (retry_in, None),
        };
        self.publishes_not_taken(&channel, holder.clone());
        let at = Instant::now() + next;
        if let Some(r) = self.remote(&channel) {
            r.attempt = Attempt::After(at);
            if holder.is_some() {
                r.holder = holder;
            }
            self.due.push(Reverse((at, channel)));
        }
    }

    /// Starts the poller of a channel whose lease was just taken (or gives the lease back if
    /// the channel is no longer wanted here).
    fn start_leased(
        &mut self,
        channel: ChannelId,
        held: Held,
        cluster: Arc<Cluster>,
        shutdown: &CancellationToken,
    ) {
        let wanted =
            self.demand.is_active(&channel, Instant::now()) || self.publishes_waiting(&channel);
        let polled = matches!(self.slots.get(&channel), Some(Slot::Polling(_)));
        match self.resolve(&channel) {
            Ok(entry) if wanted && !polled => {
                tracing::info!(channel = %channel, epoch = held.epoch, "lease taken; polling here");
                crate::metrics::get()
                    .lease_events
                    .with_label_values(&["acquired"])
                    .inc();
                self.start(channel, entry, Some((cluster, held)), shutdown);
            }
            _ => {
                self.tracker.spawn(async move {
                    if let Err(e) = cluster.leases().release(&held).await {
                        tracing::warn!(error = %e, "cannot give back an unneeded lease; it expires by itself");
                    }
                });
            }
        }
    }

    /// Queues `requests` for `channel`'s poller, wherever it runs, and forwards them.
    pub(super) fn wait_for_poller(&mut self, channel: ChannelId, requests: Vec<SnapshotRequest>) {
        match self.remote(&channel) {
            Some(r) => {
                let room = super::slot::MAX_WAITING_REQUESTS.saturating_sub(r.waiting.len());
                let dropped = requests.len().saturating_sub(room);
                r.waiting.extend(requests.into_iter().take(room));
                if dropped > 0 {
                    crate::metrics::get()
                        .queue_full
                        .with_label_values(&["waiting"])
                        .inc_by(dropped as u64);
                }
            }
            None => {
                tracing::debug!(channel = %channel, "snapshot requested for a channel no fetcher serves");
                return;
            }
        }
        self.forward_waiting(channel);
    }

    /// Hands `channel`'s waiting snapshot requests to its owner in one task (one lease read
    /// and one request per batch, not per subscriber).
    fn forward_waiting(&mut self, channel: ChannelId) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let Some(Slot::Remote(r)) = self.slots.get_mut(&channel) else {
            return;
        };
        if r.forwarding {
            return; // The running task's result brings the rest along.
        }
        let mut requests = std::mem::take(&mut r.waiting);
        requests.retain(|r| {
            let fresh = r.requested_at.elapsed() <= SNAPSHOT_WAIT;
            if !fresh {
                tracing::warn!(channel = %channel, "no replica polls this channel; a subscriber gets no snapshot");
            }
            fresh
        });
        if requests.is_empty() {
            return;
        }
        r.forwarding = true;
        let holder = r.holder.clone();
        let commands = self.commands_tx.clone();
        self.tracker.spawn(async move {
            let handed = cluster::forward(&cluster, &channel, requests, holder).await;
            let _ = commands
                .send(Command::Forwarded(Forwarded { channel, handed }))
                .await;
        });
    }

    /// A forwarding task's result: requests no replica took wait here for the channel's
    /// poller (local or remote) and are tried again.
    pub(super) fn forwarded(&mut self, f: Forwarded, shutdown: &CancellationToken) {
        let channel = f.channel;
        let left = match (self.slots.get_mut(&channel), f.handed) {
            (Some(Slot::Remote(r)), handed) => {
                r.forwarding = false;
                match handed {
                    Handed::Delivered(h) => {
                        r.holder = Some(h);
                        Vec::new()
                    }
                    Handed::Undelivered(left) => {
                        r.holder = None;
                        left
                    }
                }
            }
            (_, Handed::Delivered(_)) => Vec::new(),
            (_, Handed::Undelivered(left)) => left,
        };
        self.serve_if_active(&channel, shutdown);
        match self.slots.get_mut(&channel) {
            Some(Slot::Polling(p)) => {
                for request in left {
                    p.send(&channel, request);
                }
            }
            Some(Slot::Remote(r)) => {
                let mut left = left;
                left.append(&mut r.waiting);
                if !left.is_empty() {
                    r.waiting = left;
                    self.forward_waiting(channel);
                }
            }
            _ if !left.is_empty() => self.wait_for_poller(channel, left),
            _ => {}
        }
    }
}

/// Shutting down: a lease taken after the scheduler stopped reading its commands is released
/// at once rather than left to expire (the other replicas take the channel sooner).
pub(super) async fn give_back(command: Command) {
    if let Command::Acquired {
        attempt: Attempted::Taken { held, cluster },
        ..
    } = command
    {
        cluster.release(&held).await;
    }
}

/// One try at `channel`'s lease: the lease if taken, else its holder (when read) and how long
/// to wait before the next try — just after the holder's lease runs out (renewed, the next
/// try finds it live again and waits for the new expiry), or a third of a TTL after an error.
async fn attempt_lease(cluster: Arc<Cluster>, channel: &ChannelId, read_first: bool) -> Attempted {
    let leases = cluster.leases();
    if read_first {
        match leases.holder(channel).await {
            Ok(Some(h)) if h.owner != leases.owner() && h.is_live(leases.now_ms()) => {
                return not_taken(&cluster, channel, Ok(Some(h)));
            }
            Ok(_) => {} // Free, expired or ours: take it.
            Err(e) => return not_taken(&cluster, channel, Err(e)),
        }
    }
    match leases.acquire(channel).await {
        Ok(Some(held)) => Attempted::Taken {
            held,
            cluster: cluster.clone(),
        },
        Ok(None) => {
            crate::metrics::get()
                .lease_events
                .with_label_values(&["refused"])
                .inc();
            not_taken(&cluster, channel, leases.holder(channel).await)
        }
        Err(e) => {
            tracing::warn!(channel = %channel, error = %e, "cannot take a lease");
            Attempted::Failed {
                retry_in: cluster.renew_every(),
            }
        }
    }
}

/// The lease was not taken: when to try again, from a read of its holder.
fn not_taken(
    cluster: &Cluster,
    channel: &ChannelId,
    read: Result<Option<Holder>, LeaseError>,
) -> Attempted {
    let retry_in = cluster.renew_every();
    match read {
        Ok(Some(holder)) => Attempted::HeldElsewhere {
            retry_in: retry_after(cluster, channel, &holder),
            holder,
        },
        Ok(None) => {
            tracing::debug!(channel = %channel, "lease refused but no holder on record");
            Attempted::Failed { retry_in }
        }
        Err(e) => {
            tracing::warn!(channel = %channel, error = %e, "cannot read a lease's holder");
            Attempted::Failed { retry_in }
        }
    }
}

/// Just after `holder`'s lease runs out, between 100 ms and one TTL from now.
fn retry_after(cluster: &Cluster, channel: &ChannelId, holder: &Holder) -> Duration {
    let now = cluster.leases().now_ms();
    let left = Duration::from_millis(holder.lease_until.saturating_sub(now));
    tracing::debug!(channel = %channel, holder = %holder.owner, epoch = holder.epoch, left_ms = left.as_millis() as u64, "lease held elsewhere");
    (left + Duration::from_millis(100)).clamp(Duration::from_millis(100), cluster.ttl())
}
