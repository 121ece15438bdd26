//! The scheduler: keeps exactly one poller running for every active channel we can serve.
//!
//! Every channel it knows has one slot (`slot::Slot`): polled here, ignored (no fetcher
//! serves it), or, in cluster mode (docs/scaling.md), not polled here. There a poller runs only
//! under the channel's lease: the scheduler tries to take the leases of active channels (at
//! once where the channel prefers this replica, after a grace period otherwise), and hands
//! snapshot requests for channels polled elsewhere to the owning replica.
//!
//! Push channels get a writer instead of a poller, started by subscribers or by a publish
//! (and kept `push.linger_secs` after the last one).
//!
//! Layout: `mod.rs` the loop and its commands, `slot.rs` the per-channel states, `local.rs`
//! passes and starting pollers, `leasing.rs` cluster mode's leases and forwarding,
//! `publishing.rs` routing push batches to their channel's writer.

mod leasing;
mod local;
mod publishing;
#[cfg(test)]
mod push_tests;
mod slot;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::channel::ChannelId;
use crate::cluster::{Cluster, Forwardable, ForwardedSnapshot, HandOver};
use crate::demand::Demand;
use crate::fetcher::{Registry, SharedRegistry};
use crate::poller::{PollerContext, SnapshotRequest, SNAPSHOT_DELAY};

use leasing::{Attempted, Forwarded};
use slot::Slot;

/// Requests from HTTP handlers (and the scheduler's own lease tasks) to the scheduler.
enum Command {
    Snapshot {
        channel: ChannelId,
        request: SnapshotRequest,
    },
    /// The outcome of an attempt to take a channel's lease.
    Acquired {
        channel: ChannelId,
        attempt: Attempted,
    },
    Forwarded(Forwarded),
    /// A push batch for `channel`'s writer; `forwarded` when another replica sent it here.
    Publish {
        channel: ChannelId,
        request: crate::poller::PublishRequest,
        forwarded: bool,
    },
}

/// How long a snapshot request waits for its channel's poller to appear (here or elsewhere in
/// the cluster) before it is dropped.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

/// Longest a publish waits for its commit (a lease to take, a writer to start, the store).
const PUBLISH_WAIT: Duration = Duration::from_secs(30);

/// How often demand is re-read even without a change notification: for TTL expiries and
/// channel caps, and in cluster mode for pollers whose lease was lost. A pass costs
/// O(active channels) (about 1 % of a core per second at 10,000 channels), so a single node,
/// which has no leases to lose, passes less often; expiries already wait for a TTL plus slack.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
const RECONCILE_EVERY_SINGLE_NODE: Duration = Duration::from_secs(5);

/// A cloneable way to reach the scheduler from request handlers.
#[derive(Clone)]
pub struct SchedulerHandle {
    commands: mpsc::Sender<Command>,
    cluster: Option<Arc<Cluster>>,
}

impl SchedulerHandle {
    /// A handle that reaches no scheduler (for tests and tools): requests are logged and dropped.
    pub fn disconnected() -> SchedulerHandle {
        let (commands, _) = mpsc::channel(1);
        SchedulerHandle {
            commands,
            cluster: None,
        }
    }

    /// Asks the channel's poller to send a new subscriber its snapshot (or missed events).
    pub fn request_snapshot(&self, channel: ChannelId, request: SnapshotRequest) {
        let _ = self.try_request_snapshot(channel, request);
    }

    /// Commits a push batch to `channel` through its writer: here, or (cluster mode) on the
    /// replica holding the channel's lease. `forwarded`: another replica sent it (it is not
    /// sent on again).
    pub async fn publish(
        &self,
        channel: ChannelId,
        batch: crate::push::PushBatch,
        forwarded: bool,
    ) -> Result<crate::push::PushReceipt, crate::push::PushError> {
        use crate::push::PushError;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = crate::poller::PublishRequest { batch, reply };
        let command = Command::Publish {
            channel,
            request,
            forwarded,
        };
        match self.commands.try_send(command) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                crate::metrics::get()
                    .queue_full
                    .with_label_values(&["scheduler"])
                    .inc();
                return Err(PushError::Busy);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(PushError::Unavailable),
        }
        match tokio::time::timeout(PUBLISH_WAIT, answer).await {
            Ok(Ok(result)) => result,
            // Dropped unanswered (a writer that stopped) or too slow: whether it committed is
            // unknown, and the producer's retry (with its Idempotency-Key) settles it.
            Ok(Err(_)) | Err(_) => Err(PushError::Unavailable),
        }
    }

    /// [`SchedulerHandle::request_snapshot`]; false when the scheduler has stopped.
    fn try_request_snapshot(&self, channel: ChannelId, request: SnapshotRequest) -> bool {
        match self
            .commands
            .try_send(Command::Snapshot { channel, request })
        {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                crate::metrics::get()
                    .queue_full
                    .with_label_values(&["scheduler"])
                    .inc();
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!("scheduler stopped; a subscriber gets no snapshot");
                false
            }
        }
    }

    /// Cluster mode: snapshot requests another replica handed over, for a channel polled
    /// here. A sender not seen yet is looked up first, so that its Pushpin receives the
    /// answers. False when this replica is shutting down: the sender tries again (and finds
    /// the channel's next poller).
    ///
    /// What this replica published before it reached the sender's Pushpin (a refresh added
    /// it) never reached the subscriber, however early it asked: the channel's first snapshot
    /// broadcast, events a resume would count as received live. So the request counts as made
    /// `SNAPSHOT_DELAY` before that Pushpin was added at the earliest; the poller then deems
    /// covered only what was published to it, and sends the rest.
    pub async fn hand_over(&self, batch: HandOver) -> bool {
        let now = Instant::now();
        let mut not_before = None;
        if let (Some(cluster), Some(from)) = (&self.cluster, &batch.from) {
            cluster.meet(from).await;
            not_before = cluster
                .reached_since(from)
                .map(|t| t.checked_sub(SNAPSHOT_DELAY).unwrap_or(t));
        }
        for r in batch.requests {
            let asked = now.checked_sub(r.age).unwrap_or(now);
            let request = SnapshotRequest {
                connection_channel: r.connection_channel,
                since: r.since,
                transport: r.transport,
                requested_at: not_before.map_or(asked, |t| asked.max(t)),
            };
            if !self.try_request_snapshot(batch.channel.clone(), request) {
                return false;
            }
        }
        true
    }
}

impl Forwardable for SnapshotRequest {
    fn to_wire(&self) -> ForwardedSnapshot {
        ForwardedSnapshot::new(
            &self.connection_channel,
            self.since,
            self.transport,
            self.requested_at.elapsed(),
        )
    }
}

pub struct Scheduler {
    registry: Arc<SharedRegistry>,
    demand: Arc<Demand>,
    /// Every poller's context, shared.
    ctx: Arc<PollerContext>,
    tracker: TaskTracker,
    slots: HashMap<ChannelId, Slot>,
    commands: mpsc::Receiver<Command>,
    /// For lease and forwarding tasks to report back.
    commands_tx: mpsc::Sender<Command>,
    cluster: Option<Arc<Cluster>>,
    /// Cluster mode: when lease attempts fall due, earliest first; an entry whose slot moved
    /// on is dropped when it comes up. An index into `slots` (not state of its own) so that
    /// finding the next wake-up is not a scan of every channel per command.
    due: BinaryHeap<Reverse<(Instant, ChannelId)>>,
    /// The registry the `Ignored` slots were judged against: a re-discovered fetcher may
    /// serve them.
    ignored_with: Option<Arc<Registry>>,
    /// Channel caps (`limits.max_channels*`): never more pollers than these, whatever demand
    /// says (stats after a restart included); channels already polling keep their place.
    caps: Option<crate::config::Limits>,
    /// Push channels' writers: batches queued, keys remembered, linger.
    push: crate::config::PushSettings,
    /// The `Polling` slots, counted (a count per subscribe would cost O(channels)).
    running: local::Running,
}

impl Scheduler {
    pub fn new(
        registry: Arc<SharedRegistry>,
        demand: Arc<Demand>,
        ctx: PollerContext,
        cluster: Option<Arc<Cluster>>,
    ) -> (Scheduler, SchedulerHandle) {
        let (tx, rx) = mpsc::channel(10_000);
        let handle = SchedulerHandle {
            commands: tx.clone(),
            cluster: cluster.clone(),
        };
        let scheduler = Scheduler {
            registry,
            demand,
            ctx: Arc::new(ctx),
            tracker: TaskTracker::new(),
            slots: HashMap::new(),
            commands: rx,
            commands_tx: tx.clone(),
            cluster,
            due: BinaryHeap::new(),
            ignored_with: None,
            caps: None,
            push: Default::default(),
            running: Default::default(),
        };
        (scheduler, handle)
    }

    /// Caps the pollers this scheduler runs, per fetcher and overall.
    pub fn with_channel_caps(mut self, caps: crate::config::Limits) -> Scheduler {
        self.caps = Some(caps);
        self
    }

    /// Push channels' writers follow these settings.
    pub fn with_push_settings(mut self, push: crate::config::PushSettings) -> Scheduler {
        self.push = push;
        self
    }

    /// Runs until `shutdown`, then waits for every poller to stop (releasing its lease) and,
    /// in cluster mode, leaves the cluster (its membership record is deleted).
    pub async fn run(mut self, shutdown: CancellationToken) {
        // A full pass costs O(active channels), so it runs when demand changed, when a lease
        // attempt is due and once every RECONCILE_EVERY: not after every command (a subscribe
        // burst sends one snapshot request per subscriber).
        let (mut next_pass, mut last_pass) = (Instant::now(), Instant::now());
        let every = match self.cluster {
            Some(_) => RECONCILE_EVERY,
            None => RECONCILE_EVERY_SINGLE_NODE,
        };
        loop {
            let now = Instant::now();
            if now >= next_pass {
                self.reconcile(&shutdown);
                (last_pass, next_pass) = (now, now + every);
            }
            // Cluster mode: wake for the next lease attempt on time (a takeover right after the
            // holder's lease runs out), not at the next periodic pass.
            let wake = self
                .next_attempt_after(last_pass)
                .map_or(next_pass, |t| t.min(next_pass));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.demand.changed() => next_pass = Instant::now(),
                _ = tokio::time::sleep_until(wake) => next_pass = Instant::now(),
                Some(command) = self.commands.recv() => match command {
                    Command::Snapshot { channel, request } => {
                        self.route_snapshot(channel, request, &shutdown)
                    }
                    Command::Forwarded(f) => self.forwarded(f, &shutdown),
                    Command::Acquired { channel, attempt } => {
                        self.acquired(channel, attempt, &shutdown)
                    }
                    Command::Publish { channel, request, forwarded } => {
                        self.route_publish(channel, request, forwarded, &shutdown)
                    }
                },
            }
        }
        // Hand-overs from now on are refused (503), so their senders try the next poller.
        self.commands.close();
        for slot in self.slots.values() {
            if let Slot::Polling(p) = slot {
                p.token.cancel();
            }
        }
        self.tracker.close();
        self.tracker.wait().await;
        while let Ok(command) = self.commands.try_recv() {
            leasing::give_back(command).await;
        }
        tracing::info!("all pollers stopped");
        if let Some(cluster) = &self.cluster {
            cluster.leave().await;
        }
    }

    /// Sends a subscriber's snapshot request to the channel's poller: here, or (cluster mode)
    /// on the replica holding its lease.
    fn route_snapshot(
        &mut self,
        channel: ChannelId,
        request: SnapshotRequest,
        shutdown: &CancellationToken,
    ) {
        // The subscribe's demand hint may not have started the poller yet (a full pass only
        // then: bursts of subscribes to a running channel are many). In cluster mode the
        // request waits for the channel's poller wherever it starts.
        let polled = matches!(self.slots.get(&channel), Some(Slot::Polling(_)));
        if !polled && self.cluster.is_none() {
            self.serve_if_active(&channel, shutdown);
        }
        if let Some(Slot::Polling(p)) = self.slots.get(&channel) {
            p.send(&channel, request);
        } else if self.cluster.is_some() {
            self.wait_for_poller(channel, vec![request]);
        } else {
            tracing::debug!(channel = %channel, "snapshot requested for a channel with no poller")
        }
    }
}
