//! The [`ChannelPoller`] and its loop: when to poll, the channel's keys and rate-limit budget,
//! snapshot requests meanwhile, and shutdown. One poll's work is in `poll`.

use std::sync::Arc;
use std::time::SystemTime;

use super::requests::{RequestReceiver, Requeue};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::budget::{key_set_id, Budget};
use crate::channel::ChannelId;
use crate::cluster::LeaseGuard;
use crate::fetcher::{FetcherEntry, Keys};
use crate::status::PollOutcome;

use super::failure::PollError;
use super::state::{self, State};
use super::{PollerContext, SnapshotRequest, SNAPSHOT_DELAY};

/// One channel's poller: the channel, how to fetch it, what it knows of it, and the lease it
/// acts under in cluster mode.
pub struct ChannelPoller {
    pub(super) channel: ChannelId,
    pub(super) entry: Arc<FetcherEntry>,
    /// Shared by every poller (one copy, not one per channel).
    pub(super) ctx: Arc<PollerContext>,
    pub(super) lease: Option<Arc<LeaseGuard>>,
    pub(super) state: State,
    /// Its own request queue, for the snapshot cache to hand back subscribers it served.
    pub(super) requeue: Requeue,
}

/// Polls `channel` every `poll_interval` (first poll at once) until `shutdown`. In cluster
/// mode it acts under `lease`: its commits carry the lease's epoch, and it neither commits nor
/// publishes once the lease is no longer valid.
pub fn run(
    channel: ChannelId,
    entry: Arc<FetcherEntry>,
    ctx: impl Into<Arc<PollerContext>>,
    requests: RequestReceiver,
    shutdown: CancellationToken,
    lease: Option<Arc<LeaseGuard>>,
) -> impl std::future::Future<Output = ()> {
    let span = tracing::info_span!("poller", channel = %channel);
    let ctx = ctx.into();
    async move {
        let interval = entry.metadata.poll_interval;
        tracing::info!(interval_s = interval.as_secs_f64(), "poller started");
        let load = ChannelPoller::load(channel, entry, ctx, lease, requests.requeue(), &shutdown);
        let Some(poller) = Box::pin(load).await else {
            return;
        };
        poller.run(requests, shutdown).await;
        tracing::info!("poller stopped");
    }
    .instrument(span)
}

impl ChannelPoller {
    /// The poller (or writer) of `channel`, its state loaded from the store (retried until it
    /// works); `None` when shut down first.
    pub(super) async fn load(
        channel: ChannelId,
        entry: Arc<FetcherEntry>,
        ctx: Arc<PollerContext>,
        lease: Option<Arc<LeaseGuard>>,
        requeue: Requeue,
        shutdown: &CancellationToken,
    ) -> Option<ChannelPoller> {
        let interval = entry.metadata.poll_interval;
        let state = state::load(&channel, ctx.store.as_ref(), interval, shutdown).await?;
        Some(ChannelPoller {
            channel,
            entry,
            ctx,
            lease,
            state,
            requeue,
        })
    }

    /// Cluster mode: whether this replica may still act for the channel (single node: always).
    pub(super) fn may_act(&self) -> bool {
        self.lease.as_deref().is_none_or(LeaseGuard::is_valid)
    }

    /// Polls until `shutdown`, answering snapshot requests in between.
    async fn run(mut self, mut requests: RequestReceiver, shutdown: CancellationToken) {
        if self.lease.is_some() {
            Box::pin(self.republish_last_commit()).await;
        }
        let state = &self.state;
        let run = self.ctx.status.started(
            &self.channel,
            state.poll_interval,
            state.seq(),
            state.stored.items.len(),
        );
        // The first poll is immediate (unless the channel was polled less than an interval
        // ago); then every interval, or later while backing off.
        let last = self
            .ctx
            .last_polls
            .lock()
            .expect("last polls lock")
            .get(&self.channel)
            .copied();
        let mut next = last.map_or(Instant::now(), |t| {
            (t + state.poll_interval).max(Instant::now())
        });
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // The work of an attempt or an answer is boxed: a running poller's task holds
                // only this loop between polls (thousands of them idle at any time), not the
                // largest state of everything it awaits.
                _ = tokio::time::sleep_until(next) => {
                    match Box::pin(self.attempt(&mut requests, &shutdown)).await {
                        Some(at) => next = at,
                        None => break,
                    }
                }
                Some(request) = requests.recv() => Box::pin(self.answer_in_turn(request)).await,
            }
        }
        self.ctx.status.stopped(&self.channel, run);
        self.ctx.snapshots.forget(&self.channel);
    }

    /// Answers a request once Pushpin has surely applied its subscription.
    pub(super) async fn answer_in_turn(&self, request: SnapshotRequest) {
        tokio::time::sleep_until(request.requested_at + SNAPSHOT_DELAY).await;
        self.answer(request).await;
    }

    /// One attempt: keys, budget, the poll and, after a first poll, its snapshot. Returns when
    /// to try next, or `None` when shut down.
    async fn attempt(
        &mut self,
        requests: &mut RequestReceiver,
        shutdown: &CancellationToken,
    ) -> Option<Instant> {
        // Whatever the attempt's fate (a key store or upstream failing for days), an active
        // channel stays stored.
        self.touch_if_due().await;
        let keys = match self.keys().await {
            Ok(keys) => keys,
            Err(e) => {
                let started = (SystemTime::now(), Instant::now());
                let next = Instant::now() + self.fail(&e, &Keys::new()).await;
                self.record(PollOutcome::Failed, started, next);
                return Some(next);
            }
        };
        // Every attempt counts against the key set's budget.
        let budget = self.ctx.budgets.get(
            &key_set_id(self.channel.name(), &keys),
            &self.entry.metadata.rate_limit,
        );
        let permit = self.wait_for_budget(&budget, requests, shutdown).await?;
        let started = Instant::now();
        let started_wall = SystemTime::now();
        self.ctx
            .last_polls
            .lock()
            .expect("last polls lock")
            .insert(self.channel.clone(), started);
        let polled = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = self.poll_once(&keys, &budget, permit, requests) => r,
        };
        if self.state.snapshot_due && !self.broadcast_first_snapshot(requests, shutdown).await {
            return None;
        }
        let next = match polled.retry_in {
            Some(delay) => Instant::now() + delay,
            None => (started + self.state.poll_interval).max(Instant::now()),
        };
        self.record(polled.outcome, (started_wall, started), next);
        Some(next)
    }

    /// Keeps an active channel from expiring: marks it active in the store at least every
    /// quarter of the retention (a commit does too). A failure is retried next attempt.
    pub(super) async fn touch_if_due(&mut self) {
        let Some(retention) = self.ctx.store.retention() else {
            return;
        };
        let recent = self
            .state
            .touched_at
            .is_some_and(|t| t.elapsed() < retention / 4);
        if recent || !self.may_act() {
            return;
        }
        match self
            .ctx
            .store
            .touch(&self.channel, crate::store::unix_now())
            .await
        {
            Ok(()) => self.state.touched_at = Some(Instant::now()),
            Err(e) => tracing::warn!(error = %e, "cannot mark the channel active in the store"),
        }
    }

    /// The channel's API keys. A fetcher that declares no keys does not depend on the key
    /// store.
    async fn keys(&self) -> Result<Keys, PollError> {
        match self.ctx.keys.keys_for(self.channel.name()).await {
            Ok(keys) => Ok(keys),
            Err(e) if self.entry.metadata.keys.is_empty() => {
                tracing::debug!(error = %e, "key store unavailable; fetcher declares no keys");
                Ok(Keys::new())
            }
            Err(e) => Err(PollError::Keys(e)),
        }
    }

    /// Waits for room in the budget; new subscribers still get their snapshots meanwhile.
    /// `None` when shut down.
    async fn wait_for_budget(
        &self,
        budget: &Budget,
        requests: &mut RequestReceiver,
        shutdown: &CancellationToken,
    ) -> Option<Option<Instant>> {
        let acquire = budget.acquire(&self.ctx.store);
        tokio::pin!(acquire);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                p = &mut acquire => return Some(p),
                Some(request) = requests.recv() => self.answer_in_turn(request).await,
            }
        }
    }
}
