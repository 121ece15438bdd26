//! One poll's I/O around the pure [`plan`](super::plan::plan): retry what Pushpin has not
//! accepted, fetch, persist the commit (with conflict and fence recovery), and only then
//! announce.

use std::time::{SystemTime, UNIX_EPOCH};

use super::requests::RequestReceiver;
use tokio::time::Instant;

use crate::budget::Budget;
use crate::cluster::LeaseGuard;
use crate::fetcher::{FetchOutcome, FetchRequest, Keys};
use crate::pushpin::grip::PublishItem;
use crate::pushpin::publisher::chunks;
use crate::status::PollOutcome;
use crate::store::{Commit, StoreError};

use super::failure::PollError;
use super::plan::{plan, Announce, PlanInput, Report};
use super::shell::ChannelPoller;

/// What one poll did, and the delay before the next attempt when the fetch failed.
pub(super) struct Polled {
    pub(super) outcome: PollOutcome,
    pub(super) retry_in: Option<std::time::Duration>,
}

impl From<PollOutcome> for Polled {
    fn from(outcome: PollOutcome) -> Polled {
        Polled {
            outcome,
            retry_in: None,
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ChannelPoller {
    /// One poll with `keys`, under a reserved slot (`permit`) of `budget`.
    /// `requests`: snapshot and resume requests that come in while this poll publishes are
    /// answered between its chunks ([`ChannelPoller::publish_in_turn`]).
    pub(super) async fn poll_once(
        &mut self,
        keys: &Keys,
        budget: &Budget,
        permit: Option<Instant>,
        requests: &mut RequestReceiver,
    ) -> Polled {
        if !self.retry_unpublished().await {
            return PollOutcome::Deferred.into();
        }
        let started = Instant::now();
        let outcome = match self.fetch(keys, budget, permit).await {
            Ok(outcome) => outcome,
            Err(e) => {
                let retry_in = self.fail(&e, keys).await;
                return Polled {
                    outcome: PollOutcome::Failed,
                    retry_in: Some(retry_in),
                };
            }
        };
        self.recovered().await;
        let input = PlanInput {
            channel: &self.channel,
            id_field: &self.entry.metadata.id_field,
            max_item_bytes: self.ctx.store.max_item_bytes(),
            now: now_secs(),
            fence: self.lease.as_deref().map(LeaseGuard::epoch),
        };
        let mut plan = plan(&self.state.stored, outcome, &input);
        self.state.stored.rehash(std::mem::take(&mut plan.rehashed));
        self.log_report(&plan.report, started);
        let Some(commit) = plan.commit else {
            return match plan.report.not_modified {
                true => PollOutcome::NotModified, // Nothing written, nothing published.
                false => PollOutcome::Unchanged,
            }
            .into();
        };
        if !self.persist(&commit).await {
            return PollOutcome::Deferred.into();
        }
        self.state.committed(commit);
        self.announce(plan.announce, &plan.report, requests)
            .await
            .into()
    }

    /// Publishes events persisted earlier that Pushpin did not accept; false if it still
    /// does not (the poll is skipped so events stay in order).
    async fn retry_unpublished(&mut self) -> bool {
        if self.state.unpublished.is_empty() || !self.may_act() {
            return true;
        }
        match self.ctx.publisher.publish(&self.state.unpublished).await {
            Ok(()) => {
                let published = std::mem::take(&mut self.state.unpublished);
                self.mark_published(&published, Instant::now());
                true
            }
            Err(e) => {
                tracing::error!(error = %e, pending = self.state.unpublished.len(), "publish retry failed; poll skipped");
                false
            }
        }
    }

    /// Calls the fetcher and releases the budget slot.
    async fn fetch(
        &self,
        keys: &Keys,
        budget: &Budget,
        permit: Option<Instant>,
    ) -> Result<FetchOutcome, PollError> {
        let started = Instant::now();
        let params = self.channel.params();
        let request = FetchRequest {
            channel: self.channel.name(),
            params: &params,
            keys,
            state: self.state.stored.meta.fetcher_state.as_ref(),
        };
        let fetched = self.entry.fetcher.fetch(request).await;
        crate::metrics::get()
            .upstream_latency
            .with_label_values(&[self.channel.name()])
            .observe(started.elapsed().as_secs_f64());
        budget.finish(permit);
        Ok(fetched?)
    }

    fn log_report(&self, report: &Report, started: Instant) {
        if report.not_modified {
            tracing::debug!("upstream not modified");
            return;
        }
        let limit = self.ctx.store.max_item_bytes();
        for (id, bytes) in &report.oversize {
            tracing::warn!(item = ?id, bytes, limit, "item larger than the store allows; skipped");
        }
        tracing::debug!(
            items = report.fetched,
            changes = report.new.len() + report.updated.len() + report.removed.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fetched"
        );
        self.log_bad_ids(report);
        if report.has_unusable() {
            tracing::warn!(
                id_field = %self.entry.metadata.id_field,
                bad_ids = report.bad_ids.len(),
                duplicate_ids = report.duplicates,
                not_objects = report.skipped_non_objects,
                "some fetched entries were not usable items"
            );
        }
    }

    /// One error line per entry whose id was rejected (the first few of a poll), and a count
    /// by reason: the entry is skipped, the rest of the poll commits.
    fn log_bad_ids(&self, report: &Report) {
        const LOGGED_PER_POLL: usize = 5;
        let rejected = &crate::metrics::get().items_rejected;
        for (n, (index, problem)) in report.bad_ids.iter().enumerate() {
            rejected.with_label_values(&[problem.reason()]).inc();
            if n < LOGGED_PER_POLL {
                tracing::error!(
                    id_field = %self.entry.metadata.id_field,
                    index,
                    reason = problem.reason(),
                    max_id_bytes = crate::changes::MAX_ITEM_ID_BYTES,
                    "fetched entry has no usable id; skipped"
                );
            }
        }
    }

    /// Writes `commit`; false when it did not land (then nothing may be published). The
    /// store is the authority on the lease: a commit under an old epoch is refused.
    pub(super) async fn persist(&mut self, commit: &Commit) -> bool {
        // Whether it lands or not, the snapshot kept for fresh subscribers may be stale now.
        self.ctx.snapshots.forget(&self.channel);
        let kind = crate::history::ChannelKind::of(&self.entry);
        let retention = self
            .ctx
            .retentions
            .for_commit(kind, &self.channel, commit.meta.seq);
        let commit = &Commit {
            retention: Some(retention),
            ..commit.clone()
        };
        let Err(e) = self.ctx.store.commit(commit.clone()).await else {
            return true;
        };
        if let (StoreError::Fenced { .. }, Some(lease)) = (&e, &self.lease) {
            lease.lose("the store refused its epoch");
            return false;
        }
        let conflict = matches!(e, StoreError::Conflict { .. });
        if conflict && self.commit_landed(commit).await {
            // A retried request found its own first attempt applied (a timeout after success).
            tracing::warn!(
                seq = commit.meta.seq,
                "commit reported a conflict with itself; it had landed"
            );
            return true;
        }
        tracing::error!(error = %e, "cannot persist changes; nothing published, retrying next poll");
        if conflict {
            if let Ok((meta, items)) = self.ctx.store.load(&self.channel).await {
                self.state.stored = super::plan::ChannelState::from_loaded(meta, items);
            }
        }
        false
    }

    /// Whether a commit reported as conflicting is in fact in the store: the request was
    /// retried after its first attempt had applied (a timeout after success), so the "newer"
    /// state found is this commit's own, events and all.
    async fn commit_landed(&self, commit: &Commit) -> bool {
        let store = &self.ctx.store;
        let Ok((meta, _)) = store.load(&self.channel).await else {
            return false;
        };
        if meta.seq != commit.meta.seq || meta.fetcher_state != commit.meta.fetcher_state {
            return false;
        }
        if commit.events.is_empty() {
            return meta.committed_from == commit.meta.committed_from;
        }
        matches!(
            store.events_after(&self.channel, commit.expected_seq).await,
            Ok(Some(events)) if events == commit.events
        )
    }

    /// Tells subscribers what the persisted commit changed.
    async fn announce(
        &mut self,
        announce: Announce,
        report: &Report,
        requests: &mut RequestReceiver,
    ) -> PollOutcome {
        let publish = match announce {
            // Broadcast by the run loop once recent subscribers can receive it.
            Announce::FirstSnapshot => {
                self.state.snapshot_due = true;
                return PollOutcome::Changed;
            }
            Announce::Nothing => return PollOutcome::Unchanged, // Only the fetcher's state.
            Announce::Events(publish) => publish,
        };
        let metrics = crate::metrics::get();
        for (kind, ids) in [
            ("new", &report.new),
            ("updated", &report.updated),
            ("removed", &report.removed),
        ] {
            if ids.is_empty() {
                continue; // No series for a kind that never happened.
            }
            let counter = metrics
                .changes
                .with_label_values(&[self.channel.name(), kind]);
            counter.inc_by(ids.len() as u64);
        }
        if !self.may_act() {
            self.hold_for_renewal(publish);
            return PollOutcome::Changed;
        }
        self.publish_in_turn(publish, requests).await;
        PollOutcome::Changed
    }

    /// Publishes events in chunks of at most the publisher's burst bytes, [`BURST_PAUSE`]
    /// apart (Pushpin drops what a WebSocket connection cannot take at once). Before each
    /// chunk, the snapshot and resume requests that came in are answered (each once its
    /// subscription is surely applied): a subscriber gets its answer before any event it then
    /// receives live, and the answer holds what was published before it.
    pub(super) async fn publish_in_turn(
        &mut self,
        publish: Vec<PublishItem>,
        requests: &mut RequestReceiver,
    ) {
        let burst = self.ctx.publisher.burst_bytes();
        let sizes: Vec<(usize, usize)> = chunks(&publish, burst)
            .iter()
            .map(|c| (c.len(), ws_bytes(c)))
            .collect();
        let mut rest = publish;
        for (len, bytes) in sizes {
            // Requests that came in are answered first (an answer is a burst of its own).
            let mut answered = false;
            while let Some(request) = requests.try_recv() {
                self.answer_in_turn(request).await;
                answered = true;
            }
            if answered {
                self.state.burst.filled(Instant::now());
            }
            // Room in Pushpin's buffers: answering requests that arrive meanwhile.
            while let Some(at) = self.state.burst.wait_until(bytes, burst, Instant::now()) {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    // Within the window already waited for: it does not extend it.
                    Some(request) = requests.recv() => self.answer_in_turn(request).await,
                }
            }
            let later = rest.split_off(len);
            if let Err(e) = self.ctx.publisher.publish(&rest).await {
                tracing::error!(error = %e, "publish failed; retried later");
                rest.extend(later);
                self.state.unpublished = rest;
                return;
            }
            let now = Instant::now();
            self.state.burst.sent(bytes, now);
            self.mark_published(&rest, now);
            rest = later;
        }
    }

    /// Keeps events persisted under the lease that lapsed before they were published (a late
    /// renewal). They go out before anything else once it is renewed; if it is lost instead,
    /// this poller stops and the next owner re-publishes the last commit.
    pub(super) fn hold_for_renewal(&mut self, publish: Vec<PublishItem>) {
        tracing::warn!(
            seq = self.state.seq(),
            "lease lapsed before publishing; held until it is renewed"
        );
        self.state.unpublished.extend(publish);
    }

    /// Notes when the events among `items` were handed to Pushpin (for resumes).
    fn mark_published(&mut self, items: &[PublishItem], at: Instant) {
        let seqs: Vec<u64> = items
            .iter()
            .filter_map(|i| i.id.as_deref().and_then(|id| id.parse().ok()))
            .collect();
        for r in self.state.recent.iter_mut().rev() {
            if seqs.contains(&r.event.seq) {
                r.published_at = Some(at);
            } else if seqs.first().is_some_and(|first| r.event.seq < *first) {
                break;
            }
        }
    }

    /// Hands events to Pushpin; kept for a retry before the next poll if it refuses them.
    pub(super) async fn publish_events(&mut self, publish: Vec<PublishItem>) {
        let handed_over = Instant::now();
        match self.ctx.publisher.publish(&publish).await {
            Ok(()) => {
                let state = &mut self.state;
                for r in state.recent.iter_mut().rev().take(publish.len()) {
                    r.published_at = Some(handed_over);
                }
                tracing::info!(
                    published = publish.len(),
                    seq = state.seq(),
                    "published changes"
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "publish failed; will retry before the next poll");
                self.state.unpublished = publish;
            }
        }
    }
}

/// WebSocket bytes of `items`.
fn ws_bytes(items: &[PublishItem]) -> usize {
    let sizes = items.iter().filter_map(|i| i.formats.ws_message.as_ref());
    sizes.map(|c| c.content.len()).sum()
}
