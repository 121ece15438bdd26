//! Push channels in the scheduler, under paused time: a publish starts the channel's writer
//! (no subscriber needed), batches commit in order through it, the writer lingers after the
//! last publish and a later publish starts it again where the store left the channel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{Scheduler, SchedulerHandle};
use crate::channel::ChannelId;
use crate::config::PushSettings;
use crate::demand::Demand;
use crate::fetcher::{FetcherEntry, Metadata, Registry, SharedRegistry};
use crate::keys::FileKeyStore;
use crate::poller::PollerContext;
use crate::push::{PushBatch, PushChannel, PushError, PushOp};
use crate::pushpin::grip::PublishItem;
use crate::pushpin::publisher::{PublishError, Publisher};
use crate::store::{ItemStore, MemoryStore};

/// Every published item: its GRIP channel and its message.
#[derive(Default)]
struct Sent(Mutex<Vec<(String, Value)>>);

#[async_trait]
impl Publisher for Sent {
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError> {
        let mut sent = self.0.lock().unwrap();
        for item in items {
            let ws = item
                .formats
                .ws_message
                .as_ref()
                .expect("a WebSocket message");
            let message = serde_json::from_str(&ws.content).unwrap();
            sent.push((item.channel.clone(), message));
        }
        Ok(())
    }
}

impl Sent {
    fn types(&self) -> Vec<(String, u64)> {
        let sent = self.0.lock().unwrap();
        sent.iter()
            .map(|(_, m)| {
                (
                    m["type"].as_str().unwrap().to_string(),
                    m["seq"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

struct Node {
    handle: SchedulerHandle,
    sent: Arc<Sent>,
    store: Arc<MemoryStore>,
    status: Arc<crate::status::StatusBoard>,
    stop: CancellationToken,
}

fn node() -> Node {
    let push = PushChannel::parse(
        "p.toml",
        "kind = \"push\"\nname = \"p\"\nid_field = \"id\"\n",
    )
    .unwrap();
    let push_meta = Metadata::from_value(&json!({"name": "p", "id_field": "id"})).unwrap();
    let entries = vec![FetcherEntry {
        metadata: push_meta,
        fetcher: Arc::new(push),
    }];
    let registry = Arc::new(SharedRegistry::new(Registry::from_entries(entries)));
    let sent = Arc::new(Sent::default());
    let store = Arc::new(MemoryStore::new(100));
    let status: Arc<crate::status::StatusBoard> = Default::default();
    let ctx = PollerContext {
        keys: Arc::new(FileKeyStore::new("/nonexistent/keys.json")),
        publisher: sent.clone(),
        store: store.clone(),
        max_backoff: Duration::from_secs(60),
        budgets: Default::default(),
        last_polls: Default::default(),
        status: status.clone(),
        retentions: crate::history::Retentions::count_only(store.log_capacity()),
        snapshots: Default::default(),
    };
    let demand = Arc::new(Demand::new(Duration::from_secs(60)));
    let (scheduler, handle) = Scheduler::new(registry, demand, ctx, None);
    let scheduler = scheduler.with_push_settings(PushSettings {
        linger: Duration::from_secs(5),
        ..PushSettings::default()
    });
    let stop = CancellationToken::new();
    tokio::spawn(scheduler.run(stop.clone()));
    Node {
        handle,
        sent,
        store,
        status,
        stop,
    }
}

fn upserts(items: &[Value]) -> PushBatch {
    PushBatch {
        ops: items
            .iter()
            .map(|v| PushOp::Upsert(v.as_object().unwrap().clone()))
            .collect(),
        ..PushBatch::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_publish_starts_the_writer_which_commits_in_order_then_lingers_and_stops() {
    let n = node();
    let p = ChannelId::parse("p").unwrap();
    let r = n
        .handle
        .publish(
            p.clone(),
            upserts(&[json!({"id": "a", "v": 1}), json!({"id": "b"})]),
            false,
        )
        .await
        .unwrap();
    assert_eq!((r.seq, r.new), (3, 2), "seq 1 opens the channel");
    let r = n
        .handle
        .publish(p.clone(), upserts(&[json!({"id": "a", "v": 2})]), false)
        .await
        .unwrap();
    assert_eq!((r.seq, r.updated), (4, 1));
    assert_eq!(
        n.sent.types(),
        vec![
            ("snapshot".into(), 1),
            ("new".into(), 2),
            ("new".into(), 3),
            ("updated".into(), 4)
        ]
    );
    let (meta, items) = n.store.load(&p).await.unwrap();
    assert_eq!((meta.seq, items.len()), (4, 2));
    assert!(n.status.get(&p).unwrap().active);
    // Nobody subscribes: the writer stops after the linger (5 s from the last publish, at the
    // next 5-second demand pass)...
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(!n.status.get(&p).unwrap().active, "writer stopped");
    // ...and a later publish starts it again from the store.
    let r = n
        .handle
        .publish(p.clone(), upserts(&[json!({"id": "c"})]), false)
        .await
        .unwrap();
    assert_eq!((r.seq, r.new), (5, 1));
    n.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn batches_for_what_is_not_a_push_channel_are_refused() {
    let n = node();
    let unknown = ChannelId::parse("nope").unwrap();
    let refused = n
        .handle
        .publish(unknown, upserts(&[json!({"id": 1})]), false)
        .await;
    assert_eq!(refused, Err(PushError::NotPush("nope".into())));
    n.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn concurrent_publishes_each_get_their_own_consecutive_seq() {
    let n = node();
    let p = ChannelId::parse("p").unwrap();
    let publishes = (0..20).map(|i| {
        let handle = n.handle.clone();
        let p = p.clone();
        async move { handle.publish(p, upserts(&[json!({"id": i})]), false).await }
    });
    let receipts = futures_util::future::join_all(publishes).await;
    let mut seqs: Vec<u64> = receipts.into_iter().map(|r| r.unwrap().seq).collect();
    seqs.sort();
    assert_eq!(seqs, (2..=21).collect::<Vec<_>>());
    let sent: Vec<u64> = n.sent.types().into_iter().map(|(_, seq)| seq).collect();
    assert_eq!(sent, (1..=21).collect::<Vec<_>>(), "published in seq order");
    n.stop.cancel();
}
