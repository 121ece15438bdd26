//! Items stored by an older version, whose hashes are hex SHA-256 of the item's JSON, polled by
//! this one (real `MemoryStore` and `RedbStore`, the real poller, paused time): unchanged items
//! stay silent, a changed one is one `updated` event, and nothing else is written.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use restream::channel::ChannelId;
use restream::fetcher::{
    parse_fetch_response, FetchError, FetchOutcome, FetchRequest, Fetcher, FetcherEntry, Metadata,
};
use restream::keys::FileKeyStore;
use restream::poller::{self, PollerContext};
use restream::pushpin::grip::PublishItem;
use restream::pushpin::publisher::{PublishError, Publisher};
use restream::store::{ChannelMeta, Commit, ItemStore, MemoryStore, RedbStore, StoredItem};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// Answers each fetch with the next scripted result (the last one repeats).
struct Scripted(Mutex<Vec<Value>>);

#[async_trait]
impl Fetcher for Scripted {
    fn label(&self) -> &str {
        "scripted"
    }
    async fn metadata(&self) -> Result<Value, FetchError> {
        unreachable!()
    }
    async fn fetch(&self, _: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        let mut r = self.0.lock().unwrap();
        let v = if r.len() > 1 {
            r.remove(0)
        } else {
            r[0].clone()
        };
        parse_fetch_response("scripted", v)
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Value>>);

#[async_trait]
impl Publisher for Recorder {
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError> {
        let mut log = self.0.lock().unwrap();
        for i in items {
            let ws = &i.formats.ws_message.as_ref().unwrap().content;
            log.push(serde_json::from_str(ws).unwrap());
        }
        Ok(())
    }
}

fn channel() -> ChannelId {
    ChannelId::from_request("t", None, &BTreeMap::new()).unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("object"),
    }
}

/// What an older version stored as an item's hash, computed here by hand.
fn sha256_hex(json_text: &str) -> String {
    Sha256::digest(json_text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Two items at seq 3, as an older version committed them.
async fn seed(store: &dyn ItemStore) {
    let stored = |data: Value, text: &str| {
        let data = obj(data);
        assert_eq!(serde_json::to_string(&data).unwrap(), text);
        StoredItem {
            id: data["id"].as_str().unwrap().to_string(),
            hash: sha256_hex(text),
            data,
            seq: 3,
            first_seen: 1_700_000_000,
            last_changed: 1_700_000_000,
        }
    };
    let mut commit = Commit::new(channel());
    commit.meta = ChannelMeta {
        seq: 3,
        log_floor: 3,
        committed_from: 2,
        ..ChannelMeta::default()
    };
    commit.upserts = vec![
        stored(
            json!({"id": "a", "mag": 2.5, "tags": ["x"]}),
            r#"{"id":"a","mag":2.5,"tags":["x"]}"#,
        ),
        stored(json!({"id": "b", "v": 1}), r#"{"id":"b","v":1}"#),
    ];
    store.commit(commit).await.unwrap();
}

/// Polls the seeded channel: unchanged twice (keys in another order), then `b` changes.
async fn poll_after_upgrade(store: Arc<dyn ItemStore>) -> Vec<Value> {
    let ok = |items: Value| json!({"status_code": 200, "result": items, "complete": true});
    let unchanged = json!([{"tags": ["x"], "mag": 2.5, "id": "a"}, {"v": 1, "id": "b"}]);
    let changed = json!([{"tags": ["x"], "mag": 2.5, "id": "a"}, {"v": 2, "id": "b"}]);
    let entry = Arc::new(FetcherEntry {
        metadata: Metadata::from_value(
            &json!({"name": "t", "id_field": "id", "poll_interval": 10}),
        )
        .unwrap(),
        fetcher: Arc::new(Scripted(Mutex::new(vec![
            ok(unchanged.clone()),
            ok(unchanged),
            ok(changed),
        ]))),
    });
    let published = Arc::new(Recorder::default());
    let ctx = PollerContext {
        keys: Arc::new(FileKeyStore::new("/nonexistent/keys.json")),
        publisher: published.clone(),
        retentions: restream::history::Retentions::count_only(store.log_capacity()),
        store,
        max_backoff: Duration::from_secs(60),
        budgets: Default::default(),
        last_polls: Default::default(),
        status: Default::default(),
        snapshots: Default::default(),
    };
    let (_requests, rx) = restream::poller::requests::channel(8);
    let stop = CancellationToken::new();
    let task = tokio::spawn(poller::run(channel(), entry, ctx, rx, stop.clone(), None));
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    stop.cancel();
    task.await.unwrap();
    let messages = published.0.lock().unwrap().clone();
    messages
}

async fn check(store: Arc<dyn ItemStore>, writes_before: u64) {
    let messages = poll_after_upgrade(store.clone()).await;
    let summary: Vec<_> = messages
        .iter()
        .map(|m| (m["type"].clone(), m["seq"].clone(), m["item"]["id"].clone()))
        .collect();
    assert_eq!(
        summary,
        vec![(json!("updated"), json!(4), json!("b"))],
        "unchanged items with old hashes publish nothing; the changed one is one update"
    );
    assert_eq!(
        messages[0]["patch"],
        json!([{"op": "replace", "path": "/v", "value": 2}])
    );
    assert_eq!(store.writes(), writes_before + 1, "one write: the update");
    let (meta, items) = store.load(&channel()).await.unwrap();
    assert_eq!(meta.seq, 4);
    let hashes: BTreeMap<_, _> = items.iter().map(|i| (i.id.as_str(), &i.hash)).collect();
    assert_eq!(
        hashes["a"],
        &sha256_hex(r#"{"id":"a","mag":2.5,"tags":["x"]}"#),
        "an unchanged item keeps its stored hash"
    );
    assert!(hashes["b"].starts_with("x3:"), "{}", hashes["b"]);
}

#[tokio::test(start_paused = true)]
async fn memory_store_items_hashed_by_an_older_version_compare_correctly() {
    let store = Arc::new(MemoryStore::new(100));
    seed(store.as_ref()).await;
    let writes = store.writes();
    check(store, writes).await;
}

#[tokio::test(start_paused = true)]
async fn a_redb_file_written_by_an_older_version_compares_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.redb");
    seed(&RedbStore::open(&path, 100).unwrap()).await;
    let store = Arc::new(RedbStore::open(&path, 100).unwrap());
    let writes = store.writes();
    check(store, writes).await;
}
