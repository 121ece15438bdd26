//! One channel's poll loop: fetch, detect changes against the store, persist, then publish in
//! `seq` order. It also answers snapshot and resume requests for new subscribers, so that
//! everything a channel sends goes out in one order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::budget::{key_set_id, Budget, Budgets};
use crate::changes::{self, ChangeKind};
use crate::channel::{ChannelId, GripChannel};
use crate::cluster::LeaseGuard;
use crate::fetcher::{parse_fetch_response, FetchError, FetchRequest, FetcherEntry, Keys};
use crate::keys::KeyStore;
use crate::protocol::ServerMessage;
use crate::pushpin::grip::PublishItem;
use crate::pushpin::publisher::Publisher;
use crate::status::{LastPoll, PollOutcome, StatusBoard};
use crate::store::{ChannelMeta, Commit, ItemStore, LoggedEvent, StoreError, StoredItem};

mod messages;

use messages::{
    answer, broadcast_first_snapshot, channel_item, publish_status, republish_last_commit,
};

/// What a poller needs from the rest of the service.
#[derive(Clone)]
pub struct PollerContext {
    pub keys: Arc<dyn KeyStore>,
    pub publisher: Arc<dyn Publisher>,
    pub store: Arc<dyn ItemStore>,
    /// Longest wait between attempts while an upstream keeps failing.
    pub max_backoff: Duration,
    /// Upstream rate limits, shared by key set across channels.
    pub budgets: Arc<Budgets>,
    /// When each channel was last polled, so a channel reactivated within its interval is not
    /// fetched early (new subscribers get the stored snapshot meanwhile).
    pub last_polls: Arc<std::sync::Mutex<HashMap<String, Instant>>>,
    /// What each poller last did, for the status API.
    pub status: Arc<StatusBoard>,
}

/// Cluster mode: whether this replica may still act for the channel (single node: always).
fn may_act(lease: Option<&LeaseGuard>) -> bool {
    lease.is_none_or(|l| l.is_valid())
}

/// Delay after the `failures`-th failure in a row: the poll interval doubled per failure, with
/// ±20 % jitter so channels that failed together do not retry together, capped at `cap`.
pub fn backoff(interval: Duration, failures: u32, cap: Duration) -> Duration {
    let exponential = interval.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let jitter = 0.8 + 0.4 * rand::random::<f64>();
    exponential.min(cap).mul_f64(jitter).min(cap)
}

/// A subscriber that needs the channel's state (or the events it missed).
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    /// The private GRIP channel that reaches only that subscriber.
    pub connection_channel: GripChannel,
    /// Resume point from the client's `since`.
    pub since: Option<u64>,
    /// How that connection receives messages: `WebSocket` or `Sse`.
    pub transport: crate::pushpin::grip::Transports,
    /// When the subscribe was handled; the answer waits a moment so Pushpin has applied the
    /// GRIP subscription before anything is published after the snapshot.
    pub requested_at: Instant,
}

/// A logged event and when its broadcast was handed to Pushpin (if by this poller).
pub(super) struct Recent {
    pub(super) event: LoggedEvent,
    pub(super) published_at: Option<Instant>,
}

/// Events a poller keeps in memory for resumes.
pub(super) const RECENT_EVENTS: usize = 256;

/// Delay between a subscribe and the snapshot publish (Pushpin applies control messages
/// within about a millisecond on loopback).
pub const SNAPSHOT_DELAY: Duration = Duration::from_millis(100);

/// The channel as this poller knows it: a cache of the store.
pub(super) struct State {
    pub(super) meta: ChannelMeta,
    pub(super) items: BTreeMap<String, StoredItem>,
    /// Events persisted but not yet accepted by Pushpin, retried before the next poll.
    unpublished: Vec<PublishItem>,
    /// The latest logged events (at most `RECENT_EVENTS`, consecutive, ending at `meta.seq`),
    /// so a reconnect storm's resumes are answered without reading the store.
    pub(super) recent: std::collections::VecDeque<Recent>,
    /// When the channel's first snapshot was broadcast, if by this poller.
    pub(super) first_snapshot_at: Option<Instant>,
    /// The first poll is persisted and its snapshot not yet broadcast.
    snapshot_due: bool,
    /// The last fetch error while the upstream is failing (subscribers were told once).
    pub(super) degraded: Option<String>,
    /// Failed polls in a row.
    failures: u32,
    /// Delay before the next attempt while degraded.
    pub(super) retry_in: Duration,
    poll_interval: Duration,
}

/// Polls `channel` every `poll_interval` (first poll at once) until `shutdown`. In cluster
/// mode it acts under `lease`: its commits carry the lease's epoch, and it neither commits nor
/// publishes once the lease is no longer valid.
pub async fn run(
    channel: ChannelId,
    entry: Arc<FetcherEntry>,
    ctx: PollerContext,
    mut requests: mpsc::Receiver<SnapshotRequest>,
    shutdown: CancellationToken,
    lease: Option<Arc<LeaseGuard>>,
) {
    let span = tracing::info_span!("poller", channel = %channel);
    async move {
        tracing::info!(
            interval_s = entry.metadata.poll_interval.as_secs_f64(),
            "poller started"
        );
        let Some(mut state) = load(&channel, &ctx, entry.metadata.poll_interval, &shutdown).await
        else {
            return;
        };
        if lease.is_some() {
            republish_last_commit(&channel, &ctx, &state).await;
        }
        let id = channel.to_string();
        let run = ctx.status.started(&id, state.poll_interval, state.meta.seq, state.items.len());
        // The first poll is immediate (unless the channel was polled less than an interval ago);
        // then every interval, or later while backing off.
        let last = ctx.last_polls.lock().expect("last polls lock").get(&channel.to_string()).copied();
        let mut next = last.map_or(Instant::now(), |t| (t + state.poll_interval).max(Instant::now()));
        'run: loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next) => {
                    // A fetcher that declares no keys does not depend on the key store.
                    let keys = match ctx.keys.keys_for(channel.name()).await {
                        Ok(k) => k,
                        Err(e) if entry.metadata.keys.is_empty() => {
                            tracing::debug!(error = %e, "key store unavailable; fetcher declares no keys");
                            Default::default()
                        }
                        Err(e) => {
                            // Key store errors never hold key values.
                            let summary = format!("API keys unavailable: {e}");
                            let started = (SystemTime::now(), Instant::now());
                            next = Instant::now() + fail(&channel, &ctx, &mut state, summary, None).await;
                            record(&channel, &ctx, &state, PollOutcome::Failed, started, next);
                            continue;
                        }
                    };
                    // Every attempt counts against the key set's budget. While waiting for
                    // room, new subscribers still get their snapshots.
                    let budget = ctx
                        .budgets
                        .get(&key_set_id(channel.name(), &keys), &entry.metadata.rate_limit);
                    let permit = {
                        let acquire = budget.acquire(&ctx.store);
                        tokio::pin!(acquire);
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => break 'run,
                                p = &mut acquire => break p,
                                Some(request) = requests.recv() => {
                                    tokio::time::sleep_until(request.requested_at + SNAPSHOT_DELAY).await;
                                    answer(&channel, &ctx, &state, request).await;
                                }
                            }
                        }
                    };
                    let started = Instant::now();
                    let started_wall = SystemTime::now();
                    ctx.last_polls.lock().expect("last polls lock").insert(channel.to_string(), started);
                    let attempt = Attempt { keys: &keys, budget: &budget, permit, lease: lease.as_deref() };
                    let Polled { outcome, retry_in } = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        r = poll_once(&channel, &entry, &ctx, &mut state, attempt) => r,
                    };
                    if state.snapshot_due
                        && !broadcast_first_snapshot(&channel, &ctx, &mut state, &mut requests, &shutdown).await
                    {
                        break;
                    }
                    next = match retry_in {
                        Some(delay) => Instant::now() + delay,
                        None => (started + state.poll_interval).max(Instant::now()),
                    };
                    record(&channel, &ctx, &state, outcome, (started_wall, started), next);
                }
                Some(request) = requests.recv() => {
                    tokio::time::sleep_until(request.requested_at + SNAPSHOT_DELAY).await;
                    answer(&channel, &ctx, &state, request).await;
                }
            }
        }
        ctx.status.stopped(&id, run);
        tracing::info!("poller stopped");
    }
    .instrument(span)
    .await
}

/// Loads the channel from the store, retrying until it works or we are shut down.
async fn load(
    channel: &ChannelId,
    ctx: &PollerContext,
    poll_interval: Duration,
    shutdown: &CancellationToken,
) -> Option<State> {
    let mut delay = Duration::from_millis(200);
    loop {
        match ctx.store.load(&channel.to_string()).await {
            Ok((meta, items)) => {
                return Some(State {
                    meta,
                    items: items.into_iter().map(|i| (i.id.clone(), i)).collect(),
                    unpublished: Vec::new(),
                    recent: Default::default(),
                    first_snapshot_at: None,
                    snapshot_due: false,
                    degraded: None,
                    failures: 0,
                    retry_in: poll_interval,
                    poll_interval,
                })
            }
            Err(e) => {
                tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot load channel state")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Records a failed attempt (`summary` must hold no secret): backs off, and tells subscribers
/// on the transition to degraded. Returns the delay before the next attempt: exactly what the
/// upstream asked for (`retry_after`), else exponential backoff with jitter.
async fn fail(
    channel: &ChannelId,
    ctx: &PollerContext,
    state: &mut State,
    summary: String,
    retry_after: Option<f64>,
) -> Duration {
    let summary: String = summary.chars().take(300).collect();
    state.failures += 1;
    state.retry_in = match retry_after {
        // Exactly as asked, up to the backoff cap (an hour-long Retry-After for a daily quota
        // is retried at the cap, politely, rather than trusted to the year 9999).
        Some(secs) => Duration::try_from_secs_f64(secs)
            .unwrap_or(ctx.max_backoff)
            .min(ctx.max_backoff),
        None => backoff(state.poll_interval, state.failures, ctx.max_backoff),
    };
    tracing::warn!(
        error = %summary,
        failures = state.failures,
        retry_in_s = state.retry_in.as_secs_f64(),
        "poll failed; backing off"
    );
    if state.degraded.replace(summary).is_none() {
        // Only the transition is announced, not every failed poll.
        publish_status(channel, ctx, state).await;
    }
    state.retry_in
}

/// What one poll has been granted: the channel's keys, a reserved slot in its budget and, in
/// cluster mode, the lease it polls under.
struct Attempt<'a> {
    keys: &'a Keys,
    budget: &'a Budget,
    permit: Option<Instant>,
    lease: Option<&'a LeaseGuard>,
}

/// What one poll did, and the delay before the next attempt when the fetch failed.
struct Polled {
    outcome: PollOutcome,
    retry_in: Option<Duration>,
}

impl Polled {
    fn done(outcome: PollOutcome) -> Polled {
        Polled {
            outcome,
            retry_in: None,
        }
    }
}

/// Puts a finished attempt on the status board and in the metrics.
fn record(
    channel: &ChannelId,
    ctx: &PollerContext,
    state: &State,
    outcome: PollOutcome,
    (started_wall, started): (SystemTime, Instant),
    next: Instant,
) {
    crate::metrics::get()
        .polls
        .with_label_values(&[channel.name(), outcome.as_str()])
        .inc();
    ctx.status.update(&channel.to_string(), |s| {
        s.last_poll = Some(LastPoll {
            at: started_wall,
            outcome,
            duration: started.elapsed(),
        });
        s.next_poll = Some(SystemTime::now() + next.saturating_duration_since(Instant::now()));
        s.seq = state.meta.seq;
        s.item_count = state.items.len();
        s.degraded = state.degraded.clone();
        s.retry_in = state.degraded.as_ref().map(|_| state.retry_in);
    });
}

/// One poll.
async fn poll_once(
    channel: &ChannelId,
    entry: &FetcherEntry,
    ctx: &PollerContext,
    state: &mut State,
    attempt: Attempt<'_>,
) -> Polled {
    let Attempt {
        keys,
        budget,
        permit,
        lease,
    } = attempt;
    if !state.unpublished.is_empty() && may_act(lease) {
        match ctx.publisher.publish(&state.unpublished).await {
            Ok(()) => state.unpublished.clear(),
            Err(e) => {
                tracing::error!(error = %e, pending = state.unpublished.len(), "publish retry failed; poll skipped");
                return Polled::done(PollOutcome::Deferred);
            }
        }
    }
    let started = Instant::now();
    let request = FetchRequest {
        channel: channel.name(),
        params: channel.params(),
        keys,
        state: state.meta.fetcher_state.as_ref(),
    };
    let fetched = entry.fetcher.fetch(request).await;
    crate::metrics::get()
        .upstream_latency
        .with_label_values(&[channel.name()])
        .observe(started.elapsed().as_secs_f64());
    budget.finish(permit, &ctx.store).await;
    let outcome = match fetched.and_then(|raw| parse_fetch_response(entry.fetcher.label(), raw)) {
        Ok(o) => o,
        Err(e) => {
            let retry_after = match &e {
                FetchError::Upstream { retry_after, .. }
                | FetchError::Throttled { retry_after, .. } => *retry_after,
                _ => None,
            };
            // Fetchers and upstreams may echo keys back in their errors.
            let summary = crate::fetcher::redact(&e.to_string(), keys);
            return Polled {
                outcome: PollOutcome::Failed,
                retry_in: Some(fail(channel, ctx, state, summary, retry_after).await),
            };
        }
    };
    state.failures = 0;
    if state.degraded.take().is_some() {
        tracing::info!("upstream recovered");
        publish_status(channel, ctx, state).await;
    }
    if outcome.not_modified {
        tracing::debug!("upstream not modified");
        return Polled::done(PollOutcome::NotModified); // Nothing written, nothing published.
    }
    let id_field = &entry.metadata.id_field;
    let items = within_store_limit(
        outcome.items,
        id_field,
        &state.items,
        ctx.store.max_item_bytes(),
    );
    let diff = changes::diff(id_field, &items, &state.items, outcome.complete);
    tracing::debug!(
        items = items.len(),
        changes = diff.changes.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "fetched"
    );
    if !diff.missing_id.is_empty() || diff.duplicates > 0 || outcome.skipped_non_objects > 0 {
        tracing::warn!(
            id_field = %id_field,
            missing_id = diff.missing_id.len(),
            first_missing_index = diff.missing_id.first().copied(),
            duplicate_ids = diff.duplicates,
            not_objects = outcome.skipped_non_objects,
            "some fetched entries were not usable items"
        );
    }
    let now = now_secs();
    let stored = |id: &str,
                  hash: &str,
                  data: &Map<String, Value>,
                  seq: u64,
                  items: &BTreeMap<String, StoredItem>| StoredItem {
        id: id.to_string(),
        hash: hash.to_string(),
        data: data.clone(),
        seq,
        first_seen: items.get(id).map(|i| i.first_seen).unwrap_or(now),
        last_changed: now,
    };
    let first_poll = state.meta.seq == 0;
    let mut commit = Commit {
        channel: channel.to_string(),
        expected_seq: state.meta.seq,
        meta: ChannelMeta {
            fetcher_state: outcome.state.clone(),
            ..state.meta.clone()
        },
        fence: lease.map(LeaseGuard::epoch),
        ..Commit::default()
    };
    let mut publish = Vec::new();
    if first_poll {
        // The first poll is one snapshot, not N `new` events. It is not logged: a resume
        // from before it gets a fresh snapshot.
        let seq = 1;
        commit.upserts = diff
            .current
            .iter()
            .map(|(id, hash, data)| stored(id, hash, data, seq, &state.items))
            .collect();
        commit.meta.seq = seq;
        commit.meta.log_floor = seq;
    } else {
        let mut seq = state.meta.seq;
        for change in &diff.changes {
            seq += 1;
            let (name, params) = (channel.name().to_string(), channel.params().clone());
            let message = match &change.kind {
                ChangeKind::New => ServerMessage::New {
                    channel: name,
                    params,
                    seq,
                    item: change.item.clone(),
                },
                ChangeKind::Updated(patch) => ServerMessage::Updated {
                    channel: name,
                    params,
                    seq,
                    item: change.item.clone(),
                    patch: patch.clone(),
                },
                ChangeKind::Removed => ServerMessage::Removed {
                    channel: name,
                    params,
                    seq,
                    item: change.item.clone(),
                },
            }
            .to_json();
            match change.kind {
                ChangeKind::Removed => commit.removals.push(change.id.clone()),
                _ => commit.upserts.push(stored(
                    &change.id,
                    &change.hash,
                    &change.item,
                    seq,
                    &state.items,
                )),
            }
            publish.push(channel_item(channel, seq, message.clone()));
            commit.events.push(LoggedEvent { seq, message });
        }
        commit.meta.seq = seq;
        if !commit.events.is_empty() {
            commit.meta.committed_from = state.meta.seq;
        }
    }
    if commit.is_empty(&state.meta) {
        return Polled::done(PollOutcome::Unchanged); // Nothing written, nothing published.
    }
    // The store is the authority on the lease: a commit under an old epoch is refused.
    if let Err(e) = ctx.store.commit(commit.clone()).await {
        if let (StoreError::Fenced { .. }, Some(lease)) = (&e, lease) {
            lease.lose("the store refused its epoch");
            return Polled::done(PollOutcome::Deferred);
        }
        let landed =
            matches!(e, StoreError::Conflict { .. }) && commit_landed(channel, ctx, &commit).await;
        if !landed {
            tracing::error!(error = %e, "cannot persist changes; nothing published, retrying next poll");
            if matches!(e, StoreError::Conflict { .. }) {
                if let Ok((meta, items)) = ctx.store.load(&channel.to_string()).await {
                    state.meta = meta;
                    state.items = items.into_iter().map(|i| (i.id.clone(), i)).collect();
                }
            }
            return Polled::done(PollOutcome::Deferred);
        }
        // A retried request found its own first attempt applied (a timeout after success).
        tracing::warn!(
            seq = commit.meta.seq,
            "commit reported a conflict with itself; it had landed"
        );
    }
    // Persisted: now the cache and then the subscribers.
    for id in &commit.removals {
        state.items.remove(id);
    }
    for item in commit.upserts {
        state.items.insert(item.id.clone(), item);
    }
    state.meta = commit.meta;
    if first_poll {
        state.recent.clear();
    } else {
        if state
            .recent
            .back()
            .is_some_and(|r| r.event.seq != commit.expected_seq)
        {
            state.recent.clear(); // Not consecutive (a commit we did not see): start over.
        }
        state
            .recent
            .extend(commit.events.into_iter().map(|event| Recent {
                event,
                published_at: None,
            }));
        while state.recent.len() > RECENT_EVENTS {
            state.recent.pop_front();
        }
    }
    if first_poll {
        // Broadcast by the run loop once recent subscribers can receive it.
        state.snapshot_due = true;
        return Polled::done(PollOutcome::Changed);
    }
    if publish.is_empty() {
        return Polled::done(PollOutcome::Unchanged); // Only the fetcher's state changed.
    }
    for change in &diff.changes {
        let kind = match change.kind {
            ChangeKind::New => "new",
            ChangeKind::Updated(_) => "updated",
            ChangeKind::Removed => "removed",
        };
        crate::metrics::get()
            .changes
            .with_label_values(&[channel.name(), kind])
            .inc();
    }
    if !may_act(lease) {
        // Persisted under the lease but too late to publish: the next owner's subscribers
        // fill the gap by `since` from the change log.
        tracing::warn!(
            seq = state.meta.seq,
            "lease ran out before publishing; not published"
        );
        return Polled::done(PollOutcome::Changed);
    }
    let handed_over = Instant::now();
    match ctx.publisher.publish(&publish).await {
        Ok(()) => {
            for r in state.recent.iter_mut().rev().take(publish.len()) {
                r.published_at = Some(handed_over);
            }
            tracing::info!(
                published = publish.len(),
                seq = state.meta.seq,
                "published changes"
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "publish failed; will retry before the next poll");
            state.unpublished = publish;
        }
    }
    Polled::done(PollOutcome::Changed)
}

/// Whether a commit reported as conflicting is in fact in the store: the request was retried
/// after its first attempt had applied (a timeout after success), so the "newer" state found
/// is this commit's own, events and all.
async fn commit_landed(channel: &ChannelId, ctx: &PollerContext, commit: &Commit) -> bool {
    let id = channel.to_string();
    let Ok((meta, _)) = ctx.store.load(&id).await else {
        return false;
    };
    if meta.seq != commit.meta.seq || meta.fetcher_state != commit.meta.fetcher_state {
        return false;
    }
    if commit.events.is_empty() {
        return meta.committed_from == commit.meta.committed_from;
    }
    matches!(
        ctx.store.events_after(&id, commit.expected_seq).await,
        Ok(Some(events)) if events == commit.events
    )
}

/// Items the store cannot keep (larger than `limit` bytes of JSON) are left out with a
/// warning; one it already holds keeps its stored version, so it is neither updated nor removed.
fn within_store_limit(
    items: Vec<Map<String, Value>>,
    id_field: &str,
    known: &BTreeMap<String, StoredItem>,
    limit: usize,
) -> Vec<Map<String, Value>> {
    if limit == usize::MAX {
        return items;
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let bytes = serde_json::to_vec(&item).map_or(0, |v| v.len());
        if bytes <= limit {
            out.push(item);
            continue;
        }
        let id = changes::item_id(&item, id_field);
        tracing::warn!(item = ?id, bytes, limit, "item larger than the store allows; skipped");
        if let Some(stored) = id.and_then(|id| known.get(&id)) {
            out.push(stored.data.clone());
        }
    }
    out
}
