//! One channel's poll loop: fetch, detect what is new or changed, publish in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::channel::ChannelId;
use crate::fetcher::{parse_fetch_response, FetchOutcome, FetchRequest, FetcherEntry};
use crate::grip::PublishItem;
use crate::keys::KeyStore;
use crate::protocol::ServerMessage;
use crate::publisher::Publisher;

/// What a poller needs from the rest of the service.
#[derive(Clone)]
pub struct PollerContext {
    pub keys: Arc<dyn KeyStore>,
    pub publisher: Arc<dyn Publisher>,
}

/// In-memory view of the channel between polls.
struct ChannelState {
    /// item id → content hash.
    known: HashMap<String, [u8; 32]>,
    /// Opaque fetcher state round-tripped between polls.
    fetcher_state: Option<Value>,
    /// Unique per poller run, so GRIP ids never collide with an earlier run's ids inside
    /// Pushpin's id cache.
    epoch: String,
    seq: u64,
    last_grip_id: Option<String>,
}

/// Polls `channel` every `poll_interval` (first poll at once) until `shutdown`.
pub async fn run(
    channel: ChannelId,
    entry: Arc<FetcherEntry>,
    ctx: PollerContext,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!("poller", channel = %channel);
    async move {
        tracing::info!(
            interval_s = entry.metadata.poll_interval.as_secs_f64(),
            "poller started"
        );
        let mut state = ChannelState {
            known: HashMap::new(),
            fetcher_state: None,
            epoch: epoch(),
            seq: 0,
            last_grip_id: None,
        };
        let mut ticks = tokio::time::interval(entry.metadata.poll_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = poll_once(&channel, &entry, &ctx, &mut state) => {}
            }
        }
        tracing::info!("poller stopped");
    }
    .instrument(span)
    .await
}

async fn poll_once(
    channel: &ChannelId,
    entry: &FetcherEntry,
    ctx: &PollerContext,
    state: &mut ChannelState,
) {
    let keys = match ctx.keys.keys_for(channel.name()).await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "cannot read keys; poll skipped");
            return;
        }
    };
    let started = tokio::time::Instant::now();
    let request = FetchRequest {
        channel: channel.name(),
        params: channel.params(),
        keys: &keys,
        state: state.fetcher_state.as_ref(),
    };
    let outcome = match entry
        .fetcher
        .fetch(request)
        .await
        .and_then(|raw| parse_fetch_response(entry.fetcher.label(), raw))
    {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "poll failed; retrying next interval");
            return;
        }
    };
    tracing::debug!(
        items = outcome.items.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "fetched"
    );
    let changes = classify(&entry.metadata.id_field, &outcome, &state.known);
    if !changes.missing_id.is_empty() || changes.duplicates > 0 || outcome.skipped_non_objects > 0 {
        tracing::warn!(
            id_field = %entry.metadata.id_field,
            missing_id = changes.missing_id.len(),
            duplicate_ids = changes.duplicates,
            not_objects = outcome.skipped_non_objects,
            "some fetched entries were not usable items"
        );
    }
    let mut items = Vec::with_capacity(changes.changed.len());
    let mut seq = state.seq;
    let mut prev = state.last_grip_id.clone();
    for change in &changes.changed {
        seq += 1;
        let message = change.message(channel, seq);
        let id = format!("{}:{seq}", state.epoch);
        items.push(PublishItem::ws_text(
            channel.to_string(),
            message.to_json(),
            Some(id.clone()),
            prev.take(),
        ));
        prev = Some(id);
    }
    if !items.is_empty() {
        if let Err(e) = ctx.publisher.publish(&items).await {
            // Nothing is marked as known, so the same changes go out again next poll under the
            // same GRIP ids (a Pushpin that already got them drops the repeats).
            tracing::error!(error = %e, "publish failed; changes will be retried next poll");
            return;
        }
        tracing::info!(published = items.len(), seq, "published changes");
    }
    for change in changes.changed {
        state.known.insert(change.id, change.hash);
    }
    state.seq = seq;
    state.last_grip_id = prev.or(state.last_grip_id.take());
    state.fetcher_state = outcome.state;
}

struct Change {
    id: String,
    hash: [u8; 32],
    is_new: bool,
    item: Map<String, Value>,
}

impl Change {
    fn message(&self, channel: &ChannelId, seq: u64) -> ServerMessage {
        let (channel_name, params, item) = (
            channel.name().to_string(),
            channel.params().clone(),
            self.item.clone(),
        );
        if self.is_new {
            ServerMessage::New {
                channel: channel_name,
                params,
                seq,
                item,
            }
        } else {
            ServerMessage::Updated {
                channel: channel_name,
                params,
                seq,
                item,
            }
        }
    }
}

struct Classified {
    changed: Vec<Change>,
    missing_id: Vec<usize>,
    duplicates: usize,
}

/// Splits a fetch into new and updated items. Items without a usable id are reported by index;
/// when an id repeats inside one result the first occurrence wins.
fn classify(
    id_field: &str,
    outcome: &FetchOutcome,
    known: &HashMap<String, [u8; 32]>,
) -> Classified {
    let mut seen = std::collections::HashSet::new();
    let mut out = Classified {
        changed: Vec::new(),
        missing_id: Vec::new(),
        duplicates: 0,
    };
    for (index, item) in outcome.items.iter().enumerate() {
        let id = match item.get(id_field) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                out.missing_id.push(index);
                continue;
            }
        };
        if !seen.insert(id.clone()) {
            out.duplicates += 1;
            continue;
        }
        let hash: [u8; 32] =
            Sha256::digest(serde_json::to_vec(item).expect("items serialize")).into();
        match known.get(&id) {
            Some(h) if *h == hash => {}
            previous => out.changed.push(Change {
                is_new: previous.is_none(),
                id,
                hash,
                item: item.clone(),
            }),
        }
    }
    out
}

fn epoch() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    format!("{nanos:x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome(items: Value) -> FetchOutcome {
        parse_fetch_response("t", json!({"status_code": 200, "result": items})).unwrap()
    }

    #[test]
    fn classifies_new_updated_unchanged() {
        let first = classify(
            "id",
            &outcome(json!([{"id": 1, "v": 1}, {"id": "b", "v": 1}])),
            &HashMap::new(),
        );
        assert_eq!(first.changed.len(), 2);
        assert!(first.changed.iter().all(|c| c.is_new));
        let known: HashMap<_, _> = first.changed.into_iter().map(|c| (c.id, c.hash)).collect();
        let second = classify(
            "id",
            &outcome(json!([{"id": 1, "v": 2}, {"id": "b", "v": 1}, {"id": 3}])),
            &known,
        );
        let summary: Vec<_> = second
            .changed
            .iter()
            .map(|c| (c.id.as_str(), c.is_new))
            .collect();
        assert_eq!(summary, vec![("1", false), ("3", true)]);
    }

    #[test]
    fn reports_missing_and_duplicate_ids() {
        let c = classify(
            "id",
            &outcome(json!([{"x": 1}, {"id": 1, "v": 1}, {"id": 1, "v": 2}, {"id": ""}])),
            &HashMap::new(),
        );
        assert_eq!(c.missing_id, vec![0, 3]);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.changed.len(), 1);
        assert_eq!(c.changed[0].item["v"], json!(1));
    }
}
