//! A push channel's writer: the poller's counterpart for channels producers publish to. The
//! same [`ChannelPoller`] (store cache, recent events, lease, snapshot answers), driven by
//! batches instead of a timer: each batch is planned (`push::plan`), persisted, then
//! published, and its receipt goes back to whoever sent it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::requests::RequestReceiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::channel::ChannelId;
use crate::cluster::LeaseGuard;
use crate::fetcher::FetcherEntry;
use crate::push::plan::{self as push_plan, BatchInput};
use crate::push::{PushBatch, PushError, PushReceipt, PushSpec};
use crate::status::PollOutcome;

use super::shell::ChannelPoller;
use super::PollerContext;

/// A batch for a push channel's writer and where its answer goes.
#[derive(Debug)]
pub struct PublishRequest {
    pub batch: PushBatch,
    pub reply: oneshot::Sender<Result<PushReceipt, PushError>>,
}

/// What a push channel's writer needs besides a poller's.
pub struct PushWiring {
    pub spec: Arc<PushSpec>,
    pub batches: mpsc::Receiver<PublishRequest>,
    /// Idempotency keys remembered per channel.
    pub remembered_keys: usize,
}

/// How often an idle writer retries what Pushpin refused and marks the channel active.
const IDLE_TICK: Duration = Duration::from_secs(5);

/// Runs `channel`'s writer until `shutdown`: opens the channel (an empty snapshot at seq 1)
/// if it never was, then commits batches and answers snapshot requests in arrival order. In
/// cluster mode it acts under `lease`, like a poller.
pub fn run_push(
    channel: ChannelId,
    entry: Arc<FetcherEntry>,
    ctx: impl Into<Arc<PollerContext>>,
    requests: RequestReceiver,
    wiring: PushWiring,
    shutdown: CancellationToken,
    lease: Option<Arc<LeaseGuard>>,
) -> impl std::future::Future<Output = ()> {
    let span = tracing::info_span!("writer", channel = %channel);
    let ctx = ctx.into();
    async move {
        tracing::info!(mode = ?wiring.spec.mode, "push channel writer started");
        let requeue = requests.requeue();
        let load = ChannelPoller::load(channel, entry, ctx, lease, requeue, &shutdown);
        let Some(poller) = load.await else {
            return;
        };
        poller.run_push(requests, wiring, shutdown).await;
        tracing::info!("push channel writer stopped");
    }
    .instrument(span)
}

impl ChannelPoller {
    async fn run_push(
        mut self,
        mut requests: RequestReceiver,
        mut wiring: PushWiring,
        shutdown: CancellationToken,
    ) {
        // Always, not only under a lease: the writer may have stopped (a crash) between
        // persisting a batch and publishing it, with subscribers connected all along. Pushpin
        // drops what did go out (the GRIP id is the seq); a writer only restarts without
        // subscribers after its linger, when nobody is there to receive a repeat.
        self.republish_last_commit().await;
        let run = self.ctx.status.started(
            &self.channel,
            self.state.poll_interval,
            self.state.seq(),
            self.state.stored.items.len(),
        );
        let mut tick = tokio::time::interval(IDLE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.state.seq() == 0 && !self.open(&mut requests, &shutdown).await {
                // Not opened (the store refused): batches are refused until it works.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    Some(request) = wiring.batches.recv() => {
                        let _ = request.reply.send(Err(PushError::Unavailable));
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(request) = requests.recv() => self.answer_in_turn(request).await,
                Some(request) = wiring.batches.recv() => {
                    let group = gather(request, &mut wiring.batches, self.state.stored.items.len());
                    self.commit_group(group, &wiring, &mut requests).await;
                }
                _ = tick.tick() => {
                    self.touch_if_due().await;
                    self.flush_unpublished().await;
                }
            }
        }
        // Batches still queued were not committed: their senders hear so.
        wiring.batches.close();
        while let Ok(request) = wiring.batches.try_recv() {
            let _ = request.reply.send(Err(PushError::Unavailable));
        }
        self.ctx.status.stopped(&self.channel, run);
    }

    /// Commits the empty snapshot that opens the channel and broadcasts it; false when the
    /// store refused (or shut down).
    async fn open(&mut self, requests: &mut RequestReceiver, shutdown: &CancellationToken) -> bool {
        if !self.may_act() {
            return false;
        }
        let fence = self.lease.as_deref().map(LeaseGuard::epoch);
        let commit = push_plan::opening(&self.state.stored, &self.channel, fence);
        if !self.persist(&commit).await {
            return false;
        }
        self.state.committed(commit);
        self.broadcast_first_snapshot(requests, shutdown).await
    }

    /// Batches queued together: planned in order (each on the channel as the ones before it
    /// left it), persisted in one commit, answered, then published. A batch refused by its
    /// plan is refused alone; a failed commit fails every planned batch.
    async fn commit_group(
        &mut self,
        group: Vec<PublishRequest>,
        wiring: &PushWiring,
        requests: &mut RequestReceiver,
    ) {
        if !self.may_act() {
            // The lease is gone: the senders retry (and reach the next holder).
            let refused = group.iter().map(|_| Err(PushError::Unavailable)).collect();
            return reply(group, refused);
        }
        let started = (SystemTime::now(), Instant::now());
        let input = BatchInput {
            channel: &self.channel,
            spec: &wiring.spec,
            max_item_bytes: self.ctx.store.max_item_bytes(),
            remembered_keys: wiring.remembered_keys,
            now_ms: unix_ms(),
            fence: self.lease.as_deref().map(LeaseGuard::epoch),
        };
        let batches: Vec<&PushBatch> = group.iter().map(|r| &r.batch).collect();
        let planned = push_plan::plan_group(&self.state.stored, &batches, &input);
        let mut results = planned.results;
        let Some(commit) = planned.commit else {
            self.record(PollOutcome::Unchanged, started, Instant::now());
            return reply(group, results);
        };
        if !self.persist(&commit).await {
            self.record(PollOutcome::Deferred, started, Instant::now());
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(PushError::Unavailable);
            }
            return reply(group, results);
        }
        self.state.committed(commit);
        self.state.touched_at = Some(Instant::now());
        self.count_changes(&results);
        // Committed: the producers hear so now, not after a paced publish of a big batch.
        reply(group, results);
        let changed = !planned.publish.is_empty();
        if changed && !self.may_act() {
            self.hold_for_renewal(planned.publish);
        } else if changed {
            // Events wait behind any Pushpin refused, so they go out in seq order.
            let mut publish = std::mem::take(&mut self.state.unpublished);
            publish.extend(planned.publish);
            self.publish_in_turn(publish, requests).await;
        }
        let outcome = match changed {
            true => PollOutcome::Changed,
            false => PollOutcome::Unchanged,
        };
        self.record(outcome, started, Instant::now());
    }

    fn count_changes(&self, results: &[Result<PushReceipt, PushError>]) {
        let metrics = crate::metrics::get();
        let receipts = results.iter().filter_map(|r| r.as_ref().ok());
        let (new, updated, removed) = receipts.fold((0, 0, 0), |(n, u, r), receipt| {
            (n + receipt.new, u + receipt.updated, r + receipt.removed)
        });
        for (kind, n) in [("new", new), ("updated", updated), ("removed", removed)] {
            if n > 0 {
                metrics
                    .changes
                    .with_label_values(&[self.channel.name(), kind])
                    .inc_by(n as u64);
            }
        }
    }

    /// Retries events Pushpin refused earlier, or held while the lease had lapsed.
    async fn flush_unpublished(&mut self) {
        if self.state.unpublished.is_empty() || !self.may_act() {
            return;
        }
        let publish = std::mem::take(&mut self.state.unpublished);
        self.publish_events(publish).await;
    }
}

/// Answers each batch of `group` with its result.
fn reply(group: Vec<PublishRequest>, results: Vec<Result<PushReceipt, PushError>>) {
    for (request, result) in group.into_iter().zip(results) {
        let _ = request.reply.send(result);
    }
}

/// Batches committed together at most.
const MAX_GROUP: usize = 64;
/// Above this many items a channel commits one batch at a time (grouping plans on a copy).
const GROUP_MAX_ITEMS: usize = 10_000;

/// `first` and the batches queued behind it, up to a group's bound.
fn gather(
    first: PublishRequest,
    batches: &mut mpsc::Receiver<PublishRequest>,
    items: usize,
) -> Vec<PublishRequest> {
    let mut group = vec![first];
    while items <= GROUP_MAX_ITEMS && group.len() < MAX_GROUP {
        match batches.try_recv() {
            Ok(request) => group.push(request),
            Err(_) => break,
        }
    }
    group
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
