//! What a poller sends besides events: snapshots, resumes and statuses, and the GRIP items
//! that carry them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::requests::RequestReceiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::protocol::{FailureCode, Health, ServerMessage};
use crate::pushpin::grip::{PublishItem, Transports};

use super::plan::event_item;
use super::shell::ChannelPoller;
use super::{SnapshotRequest, SNAPSHOT_DELAY};

/// Most missed events replayed to one WebSocket connection; beyond it the subscriber gets a
/// snapshot (`reset`). Pushpin 1.36 drops WebSocket messages a connection's buffer cannot take
/// at once (SSE streams get every event): a replay of about one burst
/// (`pushpin.ws_burst_bytes`) goes out whole, a longer one could leave a gap the client
/// cannot see.
pub const WS_REPLAY_MAX: usize = 32;

/// Longest the first snapshot waits for a burst of subscribes to settle.
const FIRST_SNAPSHOT_MAX_WAIT: Duration = Duration::from_secs(2);

impl ChannelPoller {
    fn snapshot_message(&self, reset: bool) -> ServerMessage {
        let state = &self.state;
        ServerMessage::Snapshot {
            channel: self.channel.name().to_string(),
            params: self.channel.params(),
            seq: state.seq(),
            items: state
                .stored
                .items
                .values()
                .map(|i| i.data.clone())
                .collect(),
            reset,
        }
    }

    /// The channel's health as a message: `degraded` with the error while failing, else `ok`.
    fn status_message(&self) -> ServerMessage {
        let state = &self.state;
        ServerMessage::Status {
            channel: self.channel.name().to_string(),
            params: self.channel.params(),
            seq: state.seq(),
            status: if state.degraded.is_some() {
                Health::Degraded
            } else {
                Health::Ok
            },
            code: state.degraded,
            error: state.degraded.map(FailureCode::message),
            retry_in: state
                .degraded
                .as_ref()
                .map(|_| state.retry_in.as_secs_f64()),
        }
    }

    /// Tells every subscriber the channel's health (no GRIP id: a status is not an event).
    pub(super) async fn publish_status(&self) {
        let item = PublishItem::message(
            self.channel.as_str(),
            Transports::Both,
            self.status_message().to_json(),
            // No SSE id: a status is not an event, and an id would move a reconnect's resume
            // point past events the stream may not have received yet.
            None,
        );
        if let Err(e) = self.ctx.publisher.publish(&[item]).await {
            tracing::error!(error = %e, "cannot publish the channel status");
        }
    }

    /// Cluster mode: a new owner re-publishes its predecessor's last commit, which that
    /// replica may have persisted but not published (it died or was paused in between).
    /// Pushpin drops the events that did go out: their GRIP ids (the seq) are still in its id
    /// cache, as long as `id_cache_ttl` is longer than the lease TTL (docs/scaling.md).
    pub(super) async fn republish_last_commit(&self) {
        let (from, seq) = (self.state.stored.meta.committed_from, self.state.seq());
        if seq <= 1 || from >= seq {
            return;
        }
        let events = match self.ctx.store.events_after(&self.channel, from).await {
            Ok(Some(events)) => events,
            Ok(None) => return, // No longer in the log: subscribers resume by snapshot.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the last commit to re-publish it");
                return;
            }
        };
        let items: Vec<PublishItem> = events
            .into_iter()
            .map(|e| event_item(&self.channel, e.seq, e.message))
            .collect();
        match self.ctx.publisher.publish(&items).await {
            Ok(()) => tracing::info!(from = from + 1, to = seq, "re-published the last commit"),
            Err(e) => tracing::warn!(error = %e, "cannot re-publish the last commit"),
        }
    }

    /// Broadcasts the channel's first snapshot. It waits until every subscriber that has
    /// asked so far had `SNAPSHOT_DELAY` for Pushpin to apply its GRIP subscription, so each
    /// of them gets the snapshot exactly once, from the broadcast; later subscribers get
    /// theirs privately. Returns false when shut down while waiting.
    pub(super) async fn broadcast_first_snapshot(
        &mut self,
        requests: &mut RequestReceiver,
        shutdown: &CancellationToken,
    ) -> bool {
        let not_before = self.state.loaded_at + SNAPSHOT_DELAY;
        let Some(held) = settle(requests, not_before, shutdown).await else {
            return false;
        };
        let item = event_item(&self.channel, 1, self.snapshot_message(false).to_json());
        self.state.snapshot_due = false;
        self.state.first_snapshot_at = Some(Instant::now());
        match self
            .ctx
            .publisher
            .publish(std::slice::from_ref(&item))
            .await
        {
            Ok(()) => tracing::info!(seq = 1, "published the first snapshot"),
            Err(e) => {
                tracing::error!(error = %e, "publish failed; will retry before the next poll");
                self.state.unpublished.push(item);
            }
        }
        for request in held {
            self.answer(request).await; // Covered by the broadcast unless late.
        }
        true
    }

    /// Sends a new subscriber the snapshot, or the events after its `since`.
    pub(super) async fn answer(&self, request: SnapshotRequest) {
        if self.state.degraded.is_some() {
            // A new subscriber learns at once that the upstream is failing.
            let status = PublishItem::message(
                request.connection_channel.to_string(),
                request.transport,
                self.status_message().to_json(),
                None,
            );
            if let Err(e) = self.ctx.publisher.publish(&[status]).await {
                tracing::error!(error = %e, "cannot send a subscriber the channel status");
            }
        }
        if self.state.seq() == 0 {
            return; // Not polled yet: the first poll's snapshot is broadcast to everyone.
        }
        if self
            .state
            .first_snapshot_at
            .is_some_and(|t| t >= request.requested_at + SNAPSHOT_DELAY)
        {
            return; // It subscribed in time for the broadcast snapshot.
        }
        let items = match request.since {
            Some(since) if since == self.state.seq() => return self.keep_snapshot(),
            Some(since) => self.resume(&request, since).await,
            None => vec![self.snapshot_for(&request, false)],
        };
        if items.is_empty() {
            return; // Everything it missed reached it live.
        }
        if let Err(e) = self.ctx.publisher.publish(&items).await {
            tracing::error!(error = %e, "cannot send a subscriber its snapshot");
        }
    }

    /// The events after `since` for one subscriber, or a fresh snapshot when the log no
    /// longer holds them all, or when a WebSocket would get more of them than Pushpin delivers
    /// in one burst to one connection ([`WS_REPLAY_MAX`]).
    async fn resume(&self, request: &SnapshotRequest, since: u64) -> Vec<PublishItem> {
        let events = self.missed(request, since).await;
        let too_many = request.transport == Transports::WebSocket
            && events.as_ref().is_some_and(|e| e.len() > WS_REPLAY_MAX);
        match events {
            Some(events) if !too_many => events,
            _ => vec![self.snapshot_for(request, true)],
        }
    }

    /// The events after `since` the subscriber did not get live; `None` when the change log
    /// no longer holds them all (or cannot be read).
    async fn missed(&self, request: &SnapshotRequest, since: u64) -> Option<Vec<PublishItem>> {
        if self.in_memory_from(since) {
            // An event broadcast after the subscription was surely applied (`SNAPSHOT_DELAY`
            // after the subscribe) reached the subscriber live and is not sent again; one not
            // broadcast yet (the rest of a paced burst, a publish Pushpin refused) reaches it
            // live after this answer.
            let live_from = request.requested_at + SNAPSHOT_DELAY;
            return Some(
                self.state
                    .recent
                    .iter()
                    .filter(|r| {
                        r.event.seq > since && r.published_at.is_some_and(|t| t < live_from)
                    })
                    .map(|r| to_connection(request, r.event.message.clone(), r.event.seq))
                    .collect(),
            );
        }
        match self.ctx.store.events_after(&self.channel, since).await {
            Ok(Some(events)) => Some(
                events
                    .into_iter()
                    .map(|e| to_connection(request, e.message, e.seq))
                    .collect(),
            ),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the change log; sending a snapshot");
                None
            }
        }
    }

    /// Whether memory holds every event after `since`, within the log's reach (so a resume
    /// works the same on every replica).
    fn in_memory_from(&self, since: u64) -> bool {
        let state = &self.state;
        let floor = crate::store::trimmed_floor(
            state.stored.meta.log_floor,
            state.seq(),
            self.ctx
                .retentions
                .of(crate::history::ChannelKind::of(&self.entry))
                .max_events,
        );
        since < state.seq()
            && since >= floor
            && state
                .recent
                .front()
                .is_some_and(|r| r.event.seq <= since + 1)
            && state
                .recent
                .back()
                .is_some_and(|r| r.event.seq == state.seq())
    }

    /// Offers the snapshot to the snapshot cache after answering a subscriber that was up to
    /// date (nothing sent): later ones at this seq, and fresh ones, are then served from there.
    fn keep_snapshot(&self) {
        let seq = self.state.seq();
        let offered = &self.state.offered_seq;
        if self.state.degraded.is_some() || offered.swap(seq, Ordering::Relaxed) == seq {
            return; // Tried at this seq already (kept, or too large to be).
        }
        let message = self.snapshot_message(false).to_json();
        let snapshots = &self.ctx.snapshots;
        snapshots.offer(&self.channel, seq, &message, &self.requeue);
    }

    /// A subscriber's snapshot; a plain one is also kept for later fresh subscribers to get
    /// inline (`snapshot_cache`).
    fn snapshot_for(&self, request: &SnapshotRequest, reset: bool) -> PublishItem {
        let message = self.snapshot_message(reset).to_json();
        // Not while degraded: a new subscriber must hear of it from the poller.
        if !reset && self.state.degraded.is_none() {
            let seq = self.state.seq();
            self.ctx
                .snapshots
                .offer(&self.channel, seq, &message, &self.requeue);
        }
        to_connection(request, message, self.state.seq())
    }
}

/// A message for one subscriber's private channel.
fn to_connection(request: &SnapshotRequest, message: String, seq: u64) -> PublishItem {
    PublishItem::message(
        request.connection_channel.to_string(),
        request.transport,
        message,
        Some(seq),
    )
}

/// Holds the requests that arrive until the last of them has had `SNAPSHOT_DELAY`, and at least
/// until `not_before` (at most `FIRST_SNAPSHOT_MAX_WAIT`). `None` when shut down while waiting.
///
/// `not_before` covers the subscribe that started the poller: its admission makes the channel
/// active before its request is queued, and a broadcast sent in between would reach it twice
/// (then privately as well, being less than `SNAPSHOT_DELAY` older).
async fn settle(
    requests: &mut RequestReceiver,
    not_before: Instant,
    shutdown: &CancellationToken,
) -> Option<Vec<SnapshotRequest>> {
    let give_up = Instant::now() + FIRST_SNAPSHOT_MAX_WAIT;
    let mut held = Vec::new();
    loop {
        while let Some(request) = requests.try_recv() {
            held.push(request);
        }
        let settled = held
            .iter()
            .map(|r| r.requested_at + SNAPSHOT_DELAY)
            .fold(not_before, Instant::max)
            .min(give_up);
        if settled <= Instant::now() {
            return Some(held);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep_until(settled) => {}
        }
    }
}
