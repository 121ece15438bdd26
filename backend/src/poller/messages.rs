//! What a poller sends besides events: snapshots, resumes and statuses, and the GRIP items
//! that carry them.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::channel::ChannelId;
use crate::protocol::{Health, ServerMessage};
use crate::pushpin::grip::{PublishItem, Transports};

use super::{PollerContext, SnapshotRequest, State, SNAPSHOT_DELAY};

/// Longest the first snapshot waits for a burst of subscribes to settle.
const FIRST_SNAPSHOT_MAX_WAIT: Duration = Duration::from_secs(2);

pub(super) fn snapshot_message(channel: &ChannelId, state: &State, reset: bool) -> ServerMessage {
    ServerMessage::Snapshot {
        channel: channel.name().to_string(),
        params: channel.params().clone(),
        seq: state.meta.seq,
        items: state.items.values().map(|i| i.data.clone()).collect(),
        reset,
    }
}

/// The channel's health as a message: `degraded` with the error while failing, else `ok`.
fn status_message(channel: &ChannelId, state: &State) -> ServerMessage {
    ServerMessage::Status {
        channel: channel.name().to_string(),
        params: channel.params().clone(),
        seq: state.meta.seq,
        status: if state.degraded.is_some() {
            Health::Degraded
        } else {
            Health::Ok
        },
        error: state.degraded.clone(),
        retry_in: state
            .degraded
            .as_ref()
            .map(|_| state.retry_in.as_secs_f64()),
    }
}

/// Tells every subscriber the channel's health (no GRIP id: a status is not an event).
pub(super) async fn publish_status(channel: &ChannelId, ctx: &PollerContext, state: &State) {
    let item = PublishItem::message(
        channel.to_string(),
        Transports::Both,
        status_message(channel, state).to_json(),
        // No SSE id: a status is not an event, and an id would move a reconnect's resume point
        // past events the stream may not have received yet.
        None,
    );
    if let Err(e) = ctx.publisher.publish(&[item]).await {
        tracing::error!(error = %e, "cannot publish the channel status");
    }
}

/// The GRIP item for event `seq` of `channel`, for WebSocket and SSE subscribers; ids follow
/// the seq so Pushpin keeps order.
pub(super) fn channel_item(channel: &ChannelId, seq: u64, message: String) -> PublishItem {
    PublishItem::message(channel.to_string(), Transports::Both, message, Some(seq)).ordered(seq)
}

/// Cluster mode: a new owner re-publishes its predecessor's last commit, which that replica
/// may have persisted but not published (it died or was paused in between). Pushpin drops the
/// events that did go out: their GRIP ids (the seq) are still in its id cache, as long as
/// `id_cache_ttl` is longer than the lease TTL (docs/scaling.md).
pub(super) async fn republish_last_commit(channel: &ChannelId, ctx: &PollerContext, state: &State) {
    let from = state.meta.committed_from;
    if state.meta.seq <= 1 || from >= state.meta.seq {
        return;
    }
    let events = match ctx.store.events_after(&channel.to_string(), from).await {
        Ok(Some(events)) => events,
        Ok(None) => return, // No longer in the log: subscribers resume by snapshot.
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the last commit to re-publish it");
            return;
        }
    };
    let items: Vec<PublishItem> = events
        .into_iter()
        .map(|e| channel_item(channel, e.seq, e.message))
        .collect();
    match ctx.publisher.publish(&items).await {
        Ok(()) => tracing::info!(
            from = from + 1,
            to = state.meta.seq,
            "re-published the last commit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot re-publish the last commit"),
    }
}

/// Broadcasts the channel's first snapshot. It waits until every subscriber that has asked so
/// far had `SNAPSHOT_DELAY` for Pushpin to apply its GRIP subscription, so each of them gets
/// the snapshot exactly once, from the broadcast; later subscribers get theirs privately.
/// Returns false when shut down while waiting.
pub(super) async fn broadcast_first_snapshot(
    channel: &ChannelId,
    ctx: &PollerContext,
    state: &mut State,
    requests: &mut mpsc::Receiver<SnapshotRequest>,
    shutdown: &CancellationToken,
) -> bool {
    let give_up = Instant::now() + FIRST_SNAPSHOT_MAX_WAIT;
    let mut held = Vec::new();
    loop {
        while let Ok(request) = requests.try_recv() {
            held.push(request);
        }
        let settled = held
            .iter()
            .map(|r| r.requested_at + SNAPSHOT_DELAY)
            .max()
            .map_or(Instant::now(), |t| t.min(give_up));
        if settled <= Instant::now() {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep_until(settled) => {}
        }
    }
    let item = channel_item(
        channel,
        1,
        snapshot_message(channel, state, false).to_json(),
    );
    state.snapshot_due = false;
    state.first_snapshot_at = Some(Instant::now());
    match ctx.publisher.publish(std::slice::from_ref(&item)).await {
        Ok(()) => tracing::info!(seq = 1, "published the first snapshot"),
        Err(e) => {
            tracing::error!(error = %e, "publish failed; will retry before the next poll");
            state.unpublished.push(item);
        }
    }
    for request in held {
        answer(channel, ctx, state, request).await; // Covered by the broadcast unless late.
    }
    true
}

/// Sends a new subscriber the snapshot, or the events after its `since`.
pub(super) async fn answer(
    channel: &ChannelId,
    ctx: &PollerContext,
    state: &State,
    request: SnapshotRequest,
) {
    if state.degraded.is_some() {
        // A new subscriber learns at once that the upstream is failing.
        let status = PublishItem::message(
            request.connection_channel.to_string(),
            request.transport,
            status_message(channel, state).to_json(),
            None,
        );
        if let Err(e) = ctx.publisher.publish(&[status]).await {
            tracing::error!(error = %e, "cannot send a subscriber the channel status");
        }
    }
    if state.meta.seq == 0 {
        return; // Not polled yet: the first poll's snapshot is broadcast to every subscriber.
    }
    if state
        .first_snapshot_at
        .is_some_and(|t| t >= request.requested_at + SNAPSHOT_DELAY)
    {
        return; // It subscribed in time for the broadcast snapshot.
    }
    let to_connection = |message: String, seq: u64| {
        PublishItem::message(
            request.connection_channel.to_string(),
            request.transport,
            message,
            Some(seq),
        )
    };
    let items = match request.since {
        Some(since) if since == state.meta.seq => return,
        // From memory when it holds everything after `since` (within the log's reach, so a
        // resume works the same on every replica). An event broadcast after the
        // subscription was surely applied (`SNAPSHOT_DELAY` after the subscribe) reached the
        // subscriber live and is not sent again.
        Some(since)
            if since < state.meta.seq
                && since
                    >= crate::store::trimmed_floor(
                        state.meta.log_floor,
                        state.meta.seq,
                        ctx.store.log_capacity(),
                    )
                && state
                    .recent
                    .front()
                    .is_some_and(|r| r.event.seq <= since + 1)
                && state
                    .recent
                    .back()
                    .is_some_and(|r| r.event.seq == state.meta.seq) =>
        {
            let live_from = request.requested_at + SNAPSHOT_DELAY;
            state
                .recent
                .iter()
                .filter(|r| r.event.seq > since && r.published_at.is_none_or(|t| t < live_from))
                .map(|r| to_connection(r.event.message.clone(), r.event.seq))
                .collect()
        }
        Some(since) => match ctx.store.events_after(&channel.to_string(), since).await {
            Ok(Some(events)) => events
                .into_iter()
                .map(|e| to_connection(e.message, e.seq))
                .collect(),
            Ok(None) => vec![to_connection(
                snapshot_message(channel, state, true).to_json(),
                state.meta.seq,
            )],
            Err(e) => {
                tracing::error!(error = %e, "cannot read the change log; sending a snapshot");
                vec![to_connection(
                    snapshot_message(channel, state, true).to_json(),
                    state.meta.seq,
                )]
            }
        },
        None => vec![to_connection(
            snapshot_message(channel, state, false).to_json(),
            state.meta.seq,
        )],
    };
    if items.is_empty() {
        return; // Everything it missed reached it live.
    }
    if let Err(e) = ctx.publisher.publish(&items).await {
        tracing::error!(error = %e, "cannot send a subscriber its snapshot");
    }
}
