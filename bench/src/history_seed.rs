//! Seeds the history scenario's store: `channels` channels of the push channel
//! `bench-history` (`?n=0`…), each with `events` item events over the last day, written
//! straight into a redb file through the library's `RedbStore`, one large commit per
//! channel, as a push channel's writer would have logged them.

use std::collections::BTreeMap;
use std::path::Path;

use restream::channel::ChannelId;
use restream::protocol::ServerMessage;
use restream::store::{
    ChannelMeta, Commit, ItemStore, LogRetention, LoggedEvent, RedbStore, StoredItem,
};
use serde_json::{json, Map, Value};

use crate::stack::HISTORY_CHANNEL;

/// Distinct items per channel: the first event of each is `new`, the rest `updated`.
const ITEMS_PER_CHANNEL: u64 = 50;
/// The seeded history ends this long before the run starts, and spans a day.
const END_BEFORE_MS: u64 = 60_000;
const SPAN_MS: u64 = 24 * 3600 * 1000;

/// What was seeded: the channels' canonical ids and each event's time, to check pages with.
pub struct Seeded {
    pub channels: Vec<ChannelId>,
    /// Time (unix ms) of event `seq` (1-based) of channel `c`: [`Seeded::time_ms`].
    start_ms: u64,
    step_ms: u64,
    pub events: u64,
}

impl Seeded {
    /// Channel `c`'s event `seq`: channels interleave, each 7 ms after the one before.
    pub fn time_ms(&self, c: usize, seq: u64) -> u64 {
        self.start_ms + (seq - 1) * self.step_ms + c as u64 * 7
    }

    /// The time of the middle of the seeded history.
    pub fn middle_ms(&self) -> u64 {
        self.start_ms + self.events / 2 * self.step_ms
    }
}

/// The canonical id of seeded channel `c`.
pub fn channel_id(c: usize) -> ChannelId {
    ChannelId::parse(&format!("{HISTORY_CHANNEL}?n={c}")).expect("a valid channel id")
}

fn item(c: usize, k: u64, version: u64, time_ms: u64) -> Map<String, Value> {
    let value = json!({
        "id": format!("sensor-{c}-{k}"),
        "title": format!("Sensor {k} of station {c}"),
        "status": if version.is_multiple_of(7) { "alert" } else { "ok" },
        "value": (version * 37 + k) % 1000,
        "unit": "µg/m³",
        "location": {"lat": 59.91 + c as f64 / 1000.0, "lon": 10.75 + k as f64 / 1000.0},
        "observed_at": restream::history::rfc3339_ms(time_ms),
    });
    match value {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// Writes the events of every channel into the store file at `path` (created).
pub async fn seed(path: &Path, channels: usize, events: u64) -> anyhow::Result<Seeded> {
    anyhow::ensure!(events >= 1 && channels >= 1, "nothing to seed");
    let store = RedbStore::open(path, events)?;
    let end_ms = restream::store::unix_now_ms() - END_BEFORE_MS;
    let step_ms = (SPAN_MS / events).max(1);
    let seeded = Seeded {
        channels: (0..channels).map(channel_id).collect(),
        start_ms: end_ms.saturating_sub(events * step_ms),
        step_ms,
        events,
    };
    let retention = LogRetention {
        max_events: events,
        max_age: None,
    };
    for (c, id) in seeded.channels.iter().enumerate() {
        let params: BTreeMap<String, String> = id.params();
        let mut commit = Commit::new(id.clone());
        let mut items: BTreeMap<u64, StoredItem> = BTreeMap::new();
        for seq in 1..=events {
            let time_ms = seeded.time_ms(c, seq);
            let k = (seq - 1) % ITEMS_PER_CHANNEL;
            let version = (seq - 1) / ITEMS_PER_CHANNEL;
            let data = item(c, k, version, time_ms);
            let message = match version {
                0 => ServerMessage::New {
                    channel: HISTORY_CHANNEL.into(),
                    params: params.clone(),
                    seq,
                    item: data.clone(),
                },
                _ => ServerMessage::Updated {
                    channel: HISTORY_CHANNEL.into(),
                    params: params.clone(),
                    seq,
                    item: data.clone(),
                    patch: json!([
                        {"op": "replace", "path": "/value", "value": data["value"]},
                        {"op": "replace", "path": "/observed_at", "value": data["observed_at"]},
                    ])
                    .into(),
                },
            };
            commit
                .events
                .push(LoggedEvent::new(seq, message.to_json(), time_ms));
            let secs = time_ms / 1000;
            items
                .entry(k)
                .and_modify(|i| {
                    i.seq = seq;
                    i.last_changed = secs;
                    i.data = data.clone();
                })
                .or_insert_with(|| StoredItem {
                    id: data["id"].as_str().unwrap_or_default().to_string(),
                    hash: format!("{:064x}", seq),
                    data,
                    seq,
                    first_seen: secs,
                    last_changed: secs,
                });
        }
        commit.upserts = items.into_values().collect();
        commit.meta = ChannelMeta {
            seq: events,
            committed_from: 0,
            last_event_ms: seeded.time_ms(c, events),
            ..ChannelMeta::default()
        };
        commit.retention = Some(retention);
        store.commit(commit).await?;
    }
    Ok(seeded)
}
