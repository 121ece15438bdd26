//! The poller against a real `MemoryStore`/`RedbStore`, a scripted fetcher and a recording
//! publisher, with paused time: classification, zero writes on unchanged polls, persistence
//! across a restart, and resume.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod emulators;

use async_trait::async_trait;
use restream::channel::{ChannelId, GripChannel};
use restream::fetcher::{
    parse_fetch_response, FetchError, FetchOutcome, FetchRequest, Fetcher, FetcherEntry, Metadata,
};
use restream::keys::FileKeyStore;
use restream::poller::requests::{self, RequestSender};
use restream::poller::{self, PollerContext, SnapshotRequest};
use restream::pushpin::grip::PublishItem;
use restream::pushpin::publisher::{PublishError, Publisher};
use restream::snapshot_cache::SnapshotCache;
use restream::store::{ItemStore, MemoryStore, RedbStore};
use restream_testkit::dynamo::RequestLog as DynamoWrites;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Answers each fetch with the next scripted response (the last one repeats).
struct Scripted {
    responses: Mutex<Vec<Value>>,
    calls: Mutex<usize>,
    /// When each fetch happened (paused tokio time).
    times: Arc<Mutex<Vec<tokio::time::Instant>>>,
}

#[async_trait]
impl Fetcher for Scripted {
    fn label(&self) -> &str {
        "scripted"
    }
    async fn metadata(&self) -> Result<Value, FetchError> {
        unreachable!()
    }
    async fn fetch(&self, _: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        self.times.lock().unwrap().push(tokio::time::Instant::now());
        let mut calls = self.calls.lock().unwrap();
        let r = self.responses.lock().unwrap();
        let v = r[(*calls).min(r.len() - 1)].clone();
        *calls += 1;
        parse_fetch_response("scripted", v)
    }
}

/// Every published item, with when it was published (paused tokio time).
#[derive(Default)]
struct Recorder(Mutex<Vec<(tokio::time::Instant, PublishItem)>>);

#[async_trait]
impl Publisher for Recorder {
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError> {
        let now = tokio::time::Instant::now();
        let mut log = self.0.lock().unwrap();
        log.extend(items.iter().map(|i| (now, i.clone())));
        Ok(())
    }
}

fn ok(items: Value) -> Value {
    json!({"status_code": 200, "result": items, "complete": true})
}

struct Run {
    published: Arc<Recorder>,
    snapshots: Arc<SnapshotCache>,
    times: Arc<Mutex<Vec<tokio::time::Instant>>>,
    requests: RequestSender,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(store: Arc<dyn ItemStore>, responses: Vec<Value>) -> Run {
    start_every(store, responses, 10.0)
}

fn start_every(store: Arc<dyn ItemStore>, responses: Vec<Value>, interval: f64) -> Run {
    let times = Arc::new(Mutex::new(Vec::new()));
    let entry = Arc::new(FetcherEntry {
        metadata: Metadata::from_value(
            &json!({"name": "t", "id_field": "id", "poll_interval": interval}),
        )
        .unwrap(),
        fetcher: Arc::new(Scripted {
            responses: Mutex::new(responses),
            calls: Mutex::new(0),
            times: times.clone(),
        }),
    });
    let published = Arc::new(Recorder::default());
    let snapshots = Arc::new(SnapshotCache::new(1 << 20));
    let retentions = restream::history::Retentions::count_only(store.log_capacity());
    let ctx = PollerContext {
        keys: Arc::new(FileKeyStore::new("/nonexistent/keys.json")),
        publisher: published.clone(),
        store,
        max_backoff: Duration::from_secs(60),
        budgets: Default::default(),
        last_polls: Default::default(),
        status: Default::default(),
        retentions,
        snapshots: snapshots.clone(),
    };
    let (tx, rx) = requests::channel(8);
    let stop = CancellationToken::new();
    let channel = ChannelId::from_request("t", None, &BTreeMap::new()).unwrap();
    let task = tokio::spawn(poller::run(channel, entry, ctx, rx, stop.clone(), None));
    Run {
        published,
        snapshots,
        times,
        requests: tx,
        stop,
        task,
    }
}

impl Recorder {
    /// Every published message, with the channel it went to.
    fn messages(&self) -> Vec<(String, Value)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, i)| {
                (
                    i.channel.clone(),
                    serde_json::from_str(&i.formats.ws_message.as_ref().unwrap().content).unwrap(),
                )
            })
            .collect()
    }
}

impl Run {
    fn messages(&self) -> Vec<(String, Value)> {
        self.published.messages()
    }

    async fn finish(mut self) -> Vec<(String, Value)> {
        self.stop.cancel();
        (&mut self.task).await.unwrap();
        self.messages()
    }
}

/// Lets the poller run `n` intervals of simulated time.
async fn polls(n: u32) {
    for _ in 0..n {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn classifies_persists_and_skips_unchanged_polls() {
    let store = Arc::new(MemoryStore::new(100));
    let run = start(
        store.clone(),
        vec![
            ok(json!([{"id": "a", "v": 1}, {"id": "b", "v": 1}])),
            ok(json!([{"id": "b", "v": 2}, {"id": "c", "v": 1}])),
            ok(json!([{"id": "b", "v": 2}, {"id": "c", "v": 1}])),
            // A conditional request answered 304: unchanged as well.
            json!({"status_code": 304, "result": [], "state": {"etag": "e1"}}),
        ],
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(store.writes(), 1, "first poll: one write");
    polls(1).await;
    assert_eq!(store.writes(), 2, "changes: one write");
    polls(3).await;
    assert_eq!(
        store.writes(),
        2,
        "unchanged and not-modified polls write nothing"
    );
    let messages = run.finish().await;
    let summary: Vec<_> = messages
        .iter()
        .map(|(ch, m)| {
            (
                ch.as_str(),
                m["type"].as_str().unwrap(),
                m["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("t", "snapshot", 1),
            ("t", "updated", 2),
            ("t", "new", 3),
            ("t", "removed", 4)
        ],
        "unchanged polls publish nothing"
    );
    assert_eq!(
        messages[0].1["items"],
        json!([{"id": "a", "v": 1}, {"id": "b", "v": 1}])
    );
    assert_eq!(
        messages[1].1["patch"],
        json!([{"op": "replace", "path": "/v", "value": 2}])
    );
    assert_eq!(
        messages[3].1["item"],
        json!({"id": "a", "v": 1}),
        "removed carries the last version"
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_continues_the_sequence_without_spurious_news() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.redb");
    {
        let store: Arc<dyn ItemStore> = Arc::new(RedbStore::open(&path, 100).unwrap());
        let run = start(
            store,
            vec![
                ok(json!([{"id": "a"}])),
                ok(json!([{"id": "a"}, {"id": "b"}])),
            ],
        );
        polls(1).await;
        run.finish().await;
    }
    let store: Arc<dyn ItemStore> = Arc::new(RedbStore::open(&path, 100).unwrap());
    let run = start(
        store,
        vec![
            ok(json!([{"id": "a"}, {"id": "b"}])),
            ok(json!([{"id": "a"}, {"id": "b"}, {"id": "c"}])),
        ],
    );
    polls(1).await;
    let messages = run.finish().await;
    let summary: Vec<_> = messages
        .iter()
        .map(|(_, m)| {
            (
                m["type"].as_str().unwrap().to_string(),
                m["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![("new".to_string(), 3)],
        "known items stay known; seq continues"
    );
    assert_eq!(messages[0].1["item"]["id"], "c");
}

/// A WebSocket subscriber's request, made now, `since` its resume point.
fn ask(connection: &str, since: Option<u64>) -> SnapshotRequest {
    SnapshotRequest {
        connection_channel: GripChannel::connection(connection),
        since,
        requested_at: tokio::time::Instant::now(),
        transport: restream::pushpin::grip::Transports::WebSocket,
    }
}

#[tokio::test(start_paused = true)]
async fn subscribers_get_snapshots_and_resumes_on_their_private_channel() {
    let store = Arc::new(MemoryStore::new(2));
    let run = start(
        store,
        vec![
            ok(json!([{"id": "a"}])),
            ok(json!([{"id": "a"}, {"id": "b"}])),
            ok(json!([{"id": "a"}, {"id": "b"}, {"id": "c"}])),
            ok(json!([{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}])),
        ],
    );
    polls(3).await; // seq: 1 snapshot, 2 new b, 3 new c, 4 new d (log keeps 3..4)
    let ask = |since| ask("x", since);
    for since in [None, Some(2), Some(4), Some(1), Some(99)] {
        run.requests
            .try_send(ask(since))
            .map_err(|_| "queue full")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let private: Vec<_> = run
        .finish()
        .await
        .into_iter()
        .filter(|(ch, _)| ch == "_conn:x")
        .map(|(_, m)| m)
        .collect();
    let summary: Vec<_> = private
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap(),
                m["seq"].as_u64().unwrap(),
                m["reset"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("snapshot", 4, false), // plain subscribe
            ("new", 3, false),      // since 2: replay 3 and 4
            ("new", 4, false),
            // since 4: up to date, nothing
            ("snapshot", 4, true), // since 1: trimmed from the log
            ("snapshot", 4, true), // since 99: from the future
        ]
    );
    assert_eq!(private[0]["items"].as_array().unwrap().len(), 4);
}

/// A poller of `t` whose third fetch gets `third`, two polls in (seq 1, unchanged) and its
/// snapshot kept once it answered a fresh subscriber, `first`.
async fn with_kept_snapshot(third: Value) -> (Run, ChannelId) {
    let unchanged = || ok(json!([{"id": "a"}]));
    let run = start(
        Arc::new(MemoryStore::new(100)),
        vec![unchanged(), unchanged(), third],
    );
    let channel = ChannelId::from_request("t", None, &BTreeMap::new()).unwrap();
    polls(1).await;
    assert_eq!(run.snapshots.current(&channel), None, "nobody asked yet");
    run.requests.try_send(ask("first", None)).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        run.snapshots.current(&channel).is_some(),
        "kept once answered"
    );
    (run, channel)
}

/// What the WOH handler does for a fresh subscribe when the channel's snapshot is kept: send
/// it inline (the cache watches the subscriber; the poller hears of it only if it commits
/// before the subscription is surely applied, as a resume after the kept seq).
#[tokio::test(start_paused = true)]
async fn a_kept_snapshot_is_current_until_a_commit_and_its_subscriber_misses_nothing() {
    let (run, channel) = with_kept_snapshot(ok(json!([{"id": "a"}, {"id": "b"}]))).await;
    let kept = run.snapshots.current(&channel).unwrap();
    let published = run.messages();
    let (_, answered) = published
        .iter()
        .find(|(ch, _)| ch == "_conn:first")
        .unwrap();
    assert_eq!(kept.seq, 1);
    assert_eq!(
        serde_json::from_str::<Value>(&kept.message).unwrap(),
        *answered
    );

    // Served inline at seq 1: one well before the third poll (surely subscribed when that
    // poll commits seq 2), one just before it (handed back to the poller at the commit, which
    // then publishes seq 2 only once that subscription is surely applied); and one the cache
    // could not watch, whose resume request reaches the poller after seq 2 went out.
    let serve = |connection| {
        let served = run
            .snapshots
            .serve(&channel, None, connection, tokio::time::Instant::now());
        let served = served.expect("kept");
        assert!(served.watched);
        assert_eq!(served.snapshot, kept);
    };
    tokio::time::sleep(Duration::from_millis(9_449)).await;
    serve("settled");
    tokio::time::sleep(Duration::from_millis(300)).await;
    serve("inline");
    let inline_at = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let unwatched = ask("unwatched", Some(kept.seq));
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        run.snapshots.current(&channel),
        None,
        "forgotten at the commit"
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    run.requests.try_send(unwatched).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.requests.try_send(ask("later", None)).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(run.snapshots.current(&channel).unwrap().seq, 2);
    let seq_2_published_at = run
        .published
        .0
        .lock()
        .unwrap()
        .iter()
        .find(|(_, item)| item.channel == "t" && item.id.as_deref() == Some("2"))
        .map(|(at, _)| *at)
        .expect("seq 2 published");
    assert!(
        seq_2_published_at >= inline_at + restream::poller::SNAPSHOT_DELAY,
        "published {:?} after the inline subscribe",
        seq_2_published_at - inline_at
    );
    let messages = run.finish().await;
    let to = |connection: &str| -> Vec<(String, u64)> {
        messages
            .iter()
            .filter(|(ch, _)| *ch == format!("_conn:{connection}"))
            .map(|(_, m)| {
                (
                    m["type"].as_str().unwrap().into(),
                    m["seq"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        to("unwatched"),
        vec![("new".into(), 2)],
        "the event after its snapshot"
    );
    assert_eq!(to("inline"), vec![], "seq 2 reached it live");
    assert_eq!(to("settled"), vec![], "seq 2 reached it live");
    assert_eq!(to("later"), vec![("snapshot".into(), 2)]);
}

/// A subscriber resuming at the current seq is sent nothing, and the snapshot is kept from
/// then on: later subscribers at that seq, and fresh ones, are served from the cache.
#[tokio::test(start_paused = true)]
async fn an_up_to_date_resume_keeps_the_snapshot_for_later_subscribers() {
    let run = start(
        Arc::new(MemoryStore::new(100)),
        vec![ok(json!([{"id": "a"}]))],
    );
    let channel = ChannelId::from_request("t", None, &BTreeMap::new()).unwrap();
    polls(1).await;
    assert_eq!(run.snapshots.current(&channel), None, "nobody asked yet");
    run.requests.try_send(ask("resuming", Some(1))).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kept = run.snapshots.current(&channel).expect("kept");
    assert_eq!(kept.seq, 1);
    let now = tokio::time::Instant::now();
    let again = run
        .snapshots
        .serve(&channel, Some(1), "again", now)
        .unwrap();
    assert!(again.watched, "up to date, from the cache");
    let fresh = run.snapshots.serve(&channel, None, "fresh", now).unwrap();
    let fresh: Value = serde_json::from_str(&fresh.snapshot.message).unwrap();
    assert_eq!(
        (fresh["type"].as_str(), fresh["seq"].as_u64()),
        (Some("snapshot"), Some(1))
    );
    let messages = run.finish().await;
    let private: Vec<_> = messages
        .iter()
        .filter(|(ch, _)| ch.starts_with("_conn:"))
        .collect();
    assert!(
        private.is_empty(),
        "nothing published to any of them: {private:?}"
    );
}

/// A subscriber served the kept snapshot just before its channel turns degraded is told so,
/// like one the poller answered; the cache keeps nothing while the channel is degraded.
#[tokio::test(start_paused = true)]
async fn a_subscriber_served_the_kept_snapshot_hears_that_the_channel_turned_degraded() {
    let (run, channel) = with_kept_snapshot(err(500, None)).await;
    tokio::time::sleep(Duration::from_millis(9_749)).await;
    let now = tokio::time::Instant::now();
    let served = run.snapshots.serve(&channel, None, "inline", now).unwrap();
    assert!(served.watched);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        run.snapshots.current(&channel),
        None,
        "forgotten when degraded"
    );
    run.requests.try_send(ask("later", None)).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        run.snapshots.current(&channel),
        None,
        "not kept while degraded"
    );
    let messages = run.finish().await;
    let statuses_to = |connection: &str| {
        let private: Vec<_> = messages
            .iter()
            .filter(|(ch, _)| *ch == format!("_conn:{connection}"))
            .cloned()
            .collect();
        statuses(&private)
    };
    assert_eq!(statuses_to("inline").len(), 1, "{messages:?}");
    assert_eq!(statuses_to("inline")[0].0, "degraded");
    assert_eq!(statuses_to("later")[0].0, "degraded");
}

impl Run {
    /// Seconds between consecutive fetches.
    fn gaps(&self) -> Vec<f64> {
        let t = self.times.lock().unwrap();
        t.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect()
    }
}

fn err(status: u16, retry_after: Option<u64>) -> Value {
    let mut v = json!({"status_code": status, "result": "upstream trouble"});
    if let Some(s) = retry_after {
        v["retry_after"] = json!(s);
    }
    v
}

fn statuses(messages: &[(String, Value)]) -> Vec<(String, Option<f64>)> {
    messages
        .iter()
        .filter(|(_, m)| m["type"] == "status")
        .map(|(_, m)| {
            (
                m["status"].as_str().unwrap().to_string(),
                m["retry_in"].as_f64(),
            )
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_exactly() {
    let run = start_every(
        Arc::new(MemoryStore::new(10)),
        vec![err(429, Some(7)), ok(json!([{"id": 1}]))],
        1.0,
    );
    tokio::time::sleep(Duration::from_secs(12)).await;
    let gaps = run.gaps();
    assert_eq!(
        gaps[0], 7.0,
        "not called again before Retry-After: {gaps:?}"
    );
    assert!(
        gaps[1..].iter().all(|g| *g == 1.0),
        "back to the normal interval: {gaps:?}"
    );
    let messages = run.finish().await;
    assert_eq!(
        statuses(&messages),
        vec![
            ("degraded".to_string(), Some(7.0)),
            ("ok".to_string(), None)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_exponentially_with_jitter_and_recover() {
    let responses = vec![
        err(500, None),
        err(500, None),
        err(503, None),
        err(500, None),
        ok(json!([{"id": 1}])),
    ];
    let run = start_every(Arc::new(MemoryStore::new(10)), responses, 2.0);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let gaps = run.gaps();
    // After failures 1..4: 2, 4, 8, 16 s, each ±20 %; then the 2 s interval again.
    for (i, base) in [2.0, 4.0, 8.0, 16.0].iter().enumerate() {
        assert!(
            (gaps[i] - base).abs() <= base * 0.2 + 1e-9,
            "gap {i} = {} for base {base}: {gaps:?}",
            gaps[i]
        );
    }
    assert!(
        gaps[4..].iter().all(|g| *g == 2.0),
        "recovered to the interval: {gaps:?}"
    );
    let messages = run.finish().await;
    let kinds: Vec<_> = statuses(&messages).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        kinds,
        vec!["degraded", "ok"],
        "exactly one degraded and one ok around the outage"
    );
}

#[test]
fn backoff_is_capped_and_jittered() {
    let cap = Duration::from_secs(60);
    for failures in 1..40 {
        let d = poller::backoff(Duration::from_secs(10), failures, cap);
        assert!(d <= cap, "{failures}: {d:?}");
        assert!(d >= Duration::from_secs(8), "{failures}: {d:?}");
    }
    let samples: std::collections::HashSet<_> = (0..20)
        .map(|_| poller::backoff(Duration::from_secs(10), 2, cap))
        .collect();
    assert!(samples.len() > 1, "jitter spreads retries");
}

/// Records which channel (param `p`) fetched when.
struct Counting {
    calls: Arc<Mutex<Vec<(String, tokio::time::Instant)>>>,
}

#[async_trait]
impl Fetcher for Counting {
    fn label(&self) -> &str {
        "counting"
    }
    async fn metadata(&self) -> Result<Value, FetchError> {
        unreachable!()
    }
    async fn fetch(&self, r: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        let p = r.params.get("p").cloned().unwrap_or_default();
        self.calls
            .lock()
            .unwrap()
            .push((p, tokio::time::Instant::now()));
        parse_fetch_response("counting", ok(json!([{"id": 1}])))
    }
}

fn shared_context(store: Arc<dyn ItemStore>) -> PollerContext {
    // The store's own capacity: what these tests trim by.
    let retentions = restream::history::Retentions::count_only(store.log_capacity());
    PollerContext {
        keys: Arc::new(FileKeyStore::new("/nonexistent/keys.json")),
        publisher: Arc::new(Recorder::default()),
        store,
        max_backoff: Duration::from_secs(60),
        budgets: Default::default(),
        last_polls: Default::default(),
        status: Default::default(),
        retentions,
        snapshots: Default::default(),
    }
}

fn counting_entry(
    calls: &Arc<Mutex<Vec<(String, tokio::time::Instant)>>>,
    interval: f64,
) -> Arc<FetcherEntry> {
    Arc::new(FetcherEntry {
        metadata: Metadata::from_value(&json!({
            "name": "t", "id_field": "id", "poll_interval": interval,
            "rate_limit": {"per_minute": 5},
            "params": {"p": {"required": true}}
        }))
        .unwrap(),
        fetcher: Arc::new(Counting {
            calls: calls.clone(),
        }),
    })
}

/// A running poller for channel `t?p=<p>`, with the sender of its snapshot requests (kept
/// so the poller's request queue stays open).
fn spawn_channel(
    ctx: &PollerContext,
    entry: &Arc<FetcherEntry>,
    p: &str,
    stop: &CancellationToken,
) -> (tokio::task::JoinHandle<()>, RequestSender) {
    let channel =
        ChannelId::from_request_with("t", Some(&json!({ "p": p })), &entry.metadata.params)
            .unwrap();
    let (tx, rx) = requests::channel(1);
    (
        tokio::spawn(poller::run(
            channel,
            entry.clone(),
            ctx.clone(),
            rx,
            stop.child_token(),
            None,
        )),
        tx,
    )
}

#[tokio::test(start_paused = true)]
async fn ten_channels_share_one_budget_fairly() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let entry = counting_entry(&calls, 1.0);
    let ctx = shared_context(Arc::new(MemoryStore::new(10)));
    let stop = CancellationToken::new();
    let tasks: Vec<_> = (0..10)
        .map(|i| spawn_channel(&ctx, &entry, &format!("c{i}"), &stop))
        .collect();
    tokio::time::sleep(Duration::from_secs(300)).await;
    stop.cancel();
    for (t, _requests) in tasks {
        t.await.unwrap();
    }
    let calls = calls.lock().unwrap().clone();
    // Never more than 5 calls in any 60 s window, whatever the 1 s poll interval asks for.
    for (i, (_, t)) in calls.iter().enumerate() {
        let in_window = calls[i..]
            .iter()
            .filter(|(_, u)| *u - *t < Duration::from_secs(60))
            .count();
        assert!(
            in_window <= 5,
            "{in_window} calls in the minute from call {i}"
        );
    }
    assert!(
        calls.len() >= 25,
        "the budget is used, not wasted: {} calls",
        calls.len()
    );
    let polled: std::collections::HashSet<_> = calls.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(polled.len(), 10, "every channel gets polled: {polled:?}");
}

#[tokio::test(start_paused = true)]
async fn budget_usage_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.redb");
    let windows = [(Duration::from_secs(60), 5)];
    {
        let store: Arc<dyn ItemStore> = Arc::new(RedbStore::open(&path, 10).unwrap());
        let budgets = restream::budget::Budgets::default();
        for _ in 0..5 {
            let budget = budgets.get("keys:test", &windows);
            let permit = budget.acquire(&store).await;
            budget.finish(permit);
        }
        // What the service does at shutdown (and every `fetchers.budget_save_secs`).
        budgets.save_changed(&store).await;
    }
    let store: Arc<dyn ItemStore> = Arc::new(RedbStore::open(&path, 10).unwrap());
    let budgets = restream::budget::Budgets::default();
    let before = tokio::time::Instant::now();
    budgets.get("keys:test", &windows).acquire(&store).await;
    let waited = before.elapsed();
    assert!(
        waited >= Duration::from_secs(59),
        "the restarted budget remembers 5 calls: waited {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reactivated_channel_is_not_fetched_early() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let entry = counting_entry(&calls, 30.0);
    let ctx = shared_context(Arc::new(MemoryStore::new(10)));
    let first = CancellationToken::new();
    let (task, _requests) = spawn_channel(&ctx, &entry, "x", &first);
    tokio::time::sleep(Duration::from_secs(5)).await;
    first.cancel();
    task.await.unwrap();
    // The last subscriber left; a new one comes 5 s later: no fetch before the interval.
    let again = CancellationToken::new();
    let (task, _requests) = spawn_channel(&ctx, &entry, "x", &again);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(calls.lock().unwrap().len(), 1, "reused the stored items");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        calls.lock().unwrap().len(),
        2,
        "polled again once the interval passed"
    );
    again.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn snapshots_are_answered_while_waiting_for_the_budget() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let entry = Arc::new(FetcherEntry {
        metadata: Metadata::from_value(&json!({
            "name": "t", "id_field": "id", "poll_interval": 1,
            "rate_limit": {"per_minute": 1}, "params": {"p": {"required": true}}
        }))
        .unwrap(),
        fetcher: Arc::new(Counting {
            calls: calls.clone(),
        }),
    });
    let recorder = Arc::new(Recorder::default());
    let ctx = PollerContext {
        publisher: recorder.clone(),
        ..shared_context(Arc::new(MemoryStore::new(10)))
    };
    let stop = CancellationToken::new();
    let (task, requests) = spawn_channel(&ctx, &entry, "x", &stop);
    tokio::time::sleep(Duration::from_secs(5)).await; // first poll done, now waiting ~55 s
    requests
        .try_send(SnapshotRequest {
            connection_channel: GripChannel::connection("late"),
            since: None,
            requested_at: tokio::time::Instant::now(),
            transport: restream::pushpin::grip::Transports::WebSocket,
        })
        .map_err(|_| "queue full")
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let private: Vec<_> = recorder
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, i)| i.channel == "_conn:late")
        .cloned()
        .collect();
    assert_eq!(
        private.len(),
        1,
        "the late subscriber got its snapshot during the budget wait"
    );
    assert_eq!(
        calls.lock().unwrap().len(),
        1,
        "and the budget still held the next fetch back"
    );
    stop.cancel();
    task.await.unwrap();
}

/// Answers every fetch after `latency`, with one item.
struct Slow {
    latency: Duration,
}

#[async_trait]
impl Fetcher for Slow {
    fn label(&self) -> &str {
        "slow"
    }
    async fn metadata(&self) -> Result<Value, FetchError> {
        unreachable!()
    }
    async fn fetch(&self, _: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        tokio::time::sleep(self.latency).await;
        parse_fetch_response("slow", ok(json!([{"id": "a"}])))
    }
}

#[tokio::test(start_paused = true)]
async fn an_early_subscriber_gets_the_first_snapshot_exactly_once() {
    // The subscribe comes while the first fetch runs, and the fetch ends long before Pushpin
    // can be relied on to have applied that subscription: the broadcast must wait for it
    // rather than be doubled by a private snapshot.
    let stop = CancellationToken::new();
    let (task, requests, recorder) = slow_channel(Duration::from_millis(10), &stop);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let asked = tokio::time::Instant::now();
    requests.try_send(ask("early", None)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        snapshots_after(&recorder, asked),
        vec![(poller::SNAPSHOT_DELAY, "t?p=x".to_string())],
        "one broadcast, once the subscribe has settled; no private copy"
    );
    stop.cancel();
    task.await.unwrap();
}

/// The poller of `t?p=x`, whose every fetch takes `latency`, and what it publishes.
fn slow_channel(
    latency: Duration,
    stop: &CancellationToken,
) -> (tokio::task::JoinHandle<()>, RequestSender, Arc<Recorder>) {
    let entry = Arc::new(FetcherEntry {
        metadata: Metadata::from_value(&json!({
            "name": "t", "id_field": "id", "poll_interval": 10,
            "params": {"p": {"required": true}}
        }))
        .unwrap(),
        fetcher: Arc::new(Slow { latency }),
    });
    let recorder = Arc::new(Recorder::default());
    let ctx = PollerContext {
        publisher: recorder.clone(),
        ..shared_context(Arc::new(MemoryStore::new(10)))
    };
    let (task, requests) = spawn_channel(&ctx, &entry, "x", stop);
    (task, requests, recorder)
}

/// Every snapshot `recorder` got: how long after `asked`, and to which channel.
fn snapshots_after(recorder: &Recorder, asked: tokio::time::Instant) -> Vec<(Duration, String)> {
    let log = recorder.0.lock().unwrap();
    let is_snapshot = |i: &PublishItem| {
        let message = i.formats.ws_message.as_ref().unwrap();
        message.content.contains("\"snapshot\"")
    };
    log.iter()
        .filter(|(_, i)| is_snapshot(i))
        .map(|(t, i)| (*t - asked, i.channel.clone()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_subscribe_that_starts_a_poller_gets_the_first_snapshot_once_however_late_it_queues() {
    // The subscribe's admission makes the channel active, so its poller may start, fetch and
    // be ready to broadcast before the subscribe's request is queued: the broadcast still
    // waits for that request's subscription, and it gets no private copy on top.
    let stop = CancellationToken::new();
    let asked = tokio::time::Instant::now();
    let (task, requests, recorder) = slow_channel(Duration::from_millis(1), &stop);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let made_before_the_poller_started = SnapshotRequest {
        requested_at: asked,
        ..ask("starter", None)
    };
    requests.try_send(made_before_the_poller_started).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        snapshots_after(&recorder, asked),
        vec![(poller::SNAPSHOT_DELAY, "t?p=x".to_string())],
        "one broadcast, a SNAPSHOT_DELAY after the poller started; no private copy"
    );
    stop.cancel();
    task.await.unwrap();
}

/// A key store that fails its first `failures` reads, then has no keys.
struct FlakyKeys(Mutex<u32>);

#[async_trait]
impl restream::keys::KeyStore for FlakyKeys {
    async fn keys_for(
        &self,
        _: &str,
    ) -> Result<restream::fetcher::Keys, restream::keys::KeyStoreError> {
        let mut left = self.0.lock().unwrap();
        if *left == 0 {
            return Ok(Default::default());
        }
        *left -= 1;
        Err(restream::keys::KeyStoreError::Invalid {
            path: "keys.json".into(),
            problem: "not JSON".into(),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn unreadable_keys_degrade_the_channel_once_and_recover() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let counting = counting_entry(&calls, 1.0);
    let mut metadata = counting.metadata.clone();
    metadata.keys = vec!["token".into()];
    let entry = Arc::new(FetcherEntry {
        metadata,
        fetcher: counting.fetcher.clone(),
    });
    let recorder = Arc::new(Recorder::default());
    let ctx = PollerContext {
        keys: Arc::new(FlakyKeys(Mutex::new(3))),
        publisher: recorder.clone(),
        ..shared_context(Arc::new(MemoryStore::new(10)))
    };
    let stop = CancellationToken::new();
    let (task, _requests) = spawn_channel(&ctx, &entry, "x", &stop);
    tokio::time::sleep(Duration::from_secs(30)).await;
    stop.cancel();
    task.await.unwrap();
    let undeclared = Arc::new(Mutex::new(Vec::new()));
    let keyless = counting_entry(&undeclared, 1.0);
    let ctx = PollerContext {
        keys: Arc::new(FlakyKeys(Mutex::new(1000))),
        ..shared_context(Arc::new(MemoryStore::new(10)))
    };
    let stop_keyless = CancellationToken::new();
    let (task, _requests) = spawn_channel(&ctx, &keyless, "x", &stop_keyless);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_keyless.cancel();
    task.await.unwrap();
    assert!(
        !undeclared.lock().unwrap().is_empty(),
        "a fetcher declaring no keys polls while the key store is down"
    );
    let messages = recorder.messages();
    let statuses = statuses(&messages);
    assert_eq!(
        statuses.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        vec!["degraded", "ok"],
        "one degraded while the keys cannot be read, one ok after"
    );
    let degraded = messages
        .iter()
        .find(|(_, m)| m["status"] == "degraded")
        .unwrap();
    assert_eq!(degraded.1["code"], "keys_unavailable", "{}", degraded.1);
    assert!(
        !degraded.1.to_string().contains("keys.json"),
        "the key store's details stay in the logs: {}",
        degraded.1
    );
    assert!(
        !calls.lock().unwrap().is_empty(),
        "polling resumed once the keys could be read"
    );
}

/// Real time: the AWS SDK's timers must not be fast-forwarded.
#[tokio::test]
async fn an_unchanged_poll_sends_no_dynamodb_write_request() {
    let moto = emulators::start_moto();
    let settings = emulators::aws_settings(&moto.url);
    let sdk = emulators::sdk_config(&settings).await;
    let writes = DynamoWrites::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(writes.clone())
            .build(),
    );
    let store = restream::store::DynamoItemStore::connect(
        client,
        &emulators::unique("items"),
        100,
        Duration::from_secs(3600),
        true,
    )
    .await
    .unwrap();
    let store: Arc<dyn ItemStore> = Arc::new(store);
    let items = json!([{"id": "a", "v": 1}, {"id": "b", "v": 1}]);
    let changed = json!([{"id": "a", "v": 2}, {"id": "b", "v": 1}]);
    writes.clear(); // table creation
    let run = start_every(store.clone(), vec![ok(items), ok(changed)], 0.4);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while run.times.lock().unwrap().len() < 6 {
        assert!(std::time::Instant::now() < deadline, "the poller stalled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after_changes = writes.write_operations();
    let polls_then = run.times.lock().unwrap().len();
    while run.times.lock().unwrap().len() < polls_then + 4 {
        assert!(std::time::Instant::now() < deadline, "the poller stalled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let messages = run.finish().await;
    assert_eq!(
        after_changes,
        vec!["TransactWriteItems", "TransactWriteItems"],
        "one transaction per changed poll (snapshot, update)"
    );
    assert_eq!(
        writes.write_operations().len(),
        2,
        "{} unchanged polls sent no write request",
        polls_then + 2
    );
    let kinds: Vec<_> = messages.iter().map(|(_, m)| m["type"].clone()).collect();
    assert_eq!(kinds, vec![json!("snapshot"), json!("updated")]);
}

/// Real time, as above. An item id longer than a DynamoDB sort key allows used to fail every
/// commit of its channel; now that entry alone is rejected and the channel keeps publishing.
#[tokio::test]
async fn an_over_long_item_id_never_leaves_a_dynamodb_channel_stuck() {
    let moto = emulators::start_moto();
    let settings = emulators::aws_settings(&moto.url);
    let sdk = emulators::sdk_config(&settings).await;
    let store = restream::store::DynamoItemStore::connect(
        restream::aws::dynamodb(&sdk, &settings),
        &emulators::unique("items"),
        100,
        Duration::from_secs(3600),
        true,
    )
    .await
    .unwrap();
    let store: Arc<dyn ItemStore> = Arc::new(store);
    let long = "k".repeat(2000);
    let first = json!([{"id": "a", "v": 1}, {"id": long, "v": 1}]);
    let second = json!([{"id": "a", "v": 2}, {"id": long, "v": 2}, {"id": "b", "v": 1}]);
    let run = start_every(store.clone(), vec![ok(first), ok(second)], 0.4);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while run.messages().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the channel got stuck: {:?}",
            run.messages()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let messages = run.finish().await;
    let kinds: Vec<_> = messages.iter().map(|(_, m)| m["type"].clone()).collect();
    assert_eq!(
        kinds,
        vec![json!("snapshot"), json!("updated"), json!("new")]
    );
    assert_eq!(messages[0].1["items"], json!([{"id": "a", "v": 1}]));
    assert_eq!(messages[2].1["item"], json!({"id": "b", "v": 1}));
    let channel = ChannelId::from_request("t", None, &BTreeMap::new()).unwrap();
    let (meta, items) = store.load(&channel).await.unwrap();
    assert_eq!(meta.seq, 3);
    let mut ids: Vec<_> = items.into_iter().map(|i| i.id).collect();
    ids.sort();
    assert_eq!(ids, vec!["a", "b"]);
    let rejected = restream::metrics::get()
        .items_rejected
        .with_label_values(&["too_long"])
        .get();
    assert!(rejected >= 2, "one rejection per poll, counted: {rejected}");
}

/// A memory store that records when the poller marks its channel active (retention), and
/// accepts fenced commits as a store whose lease is still held would.
struct Touches {
    inner: MemoryStore,
    at: Mutex<Vec<tokio::time::Instant>>,
}

impl Touches {
    fn new(inner: MemoryStore) -> Touches {
        Touches {
            inner,
            at: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl ItemStore for Touches {
    async fn load(
        &self,
        channel: &ChannelId,
    ) -> Result<
        (
            restream::store::ChannelMeta,
            Vec<restream::store::StoredItem>,
        ),
        restream::store::StoreError,
    > {
        self.inner.load(channel).await
    }
    async fn commit(
        &self,
        commit: restream::store::Commit,
    ) -> Result<(), restream::store::StoreError> {
        let unfenced = restream::store::Commit {
            fence: None,
            ..commit
        };
        self.inner.commit(unfenced).await
    }
    async fn events_after(
        &self,
        channel: &ChannelId,
        after: u64,
    ) -> Result<Option<Vec<restream::store::LoggedEvent>>, restream::store::StoreError> {
        self.inner.events_after(channel, after).await
    }
    fn writes(&self) -> u64 {
        self.inner.writes()
    }
    fn log_capacity(&self) -> u64 {
        self.inner.log_capacity()
    }
    async fn load_budget(
        &self,
        budget: &str,
    ) -> Result<Option<String>, restream::store::StoreError> {
        self.inner.load_budget(budget).await
    }
    async fn save_budget(
        &self,
        budget: &str,
        usage: String,
    ) -> Result<(), restream::store::StoreError> {
        self.inner.save_budget(budget, usage).await
    }
    fn retention(&self) -> Option<Duration> {
        self.inner.retention()
    }
    async fn touch(
        &self,
        channel: &ChannelId,
        now: u64,
    ) -> Result<(), restream::store::StoreError> {
        self.at.lock().unwrap().push(tokio::time::Instant::now());
        self.inner.touch(channel, now).await
    }
}

/// An active poller of an unchanged channel marks it active at least every quarter of the
/// retention (and not much more often), so retention never removes it; without retention
/// it never does.
#[tokio::test(start_paused = true)]
async fn an_active_poller_keeps_its_channel_from_expiring() {
    let retention = Duration::from_secs(400);
    let store = Arc::new(Touches::new(
        MemoryStore::new(100).with_retention(Some(retention)),
    ));
    let run = start(store.clone(), vec![ok(json!([{"id": "a"}]))]);
    tokio::time::sleep(Duration::from_secs(1000)).await;
    run.finish().await;
    let at = store.at.lock().unwrap().clone();
    assert!(
        (10..=11).contains(&at.len()),
        "{} touches in 1000 s",
        at.len()
    );
    for gap in at.windows(2).map(|w| w[1] - w[0]) {
        assert!(
            gap >= retention / 4 && gap <= retention / 4 + Duration::from_secs(10),
            "{gap:?}"
        );
    }
    assert_eq!(
        store
            .inner
            .sweep(restream::store::unix_now(), 10)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .load(&ChannelId::parse("t").unwrap())
            .await
            .unwrap()
            .1
            .len(),
        1
    );

    let plain = Arc::new(Touches::new(MemoryStore::new(100)));
    let run = start(plain.clone(), vec![ok(json!([{"id": "a"}]))]);
    tokio::time::sleep(Duration::from_secs(100)).await;
    run.finish().await;
    assert!(
        plain.at.lock().unwrap().is_empty(),
        "no retention: no touches"
    );
}

/// The first fetch answers one item at once; later ones two items, after `latency`.
struct GrowsSlowly {
    calls: Mutex<u32>,
    latency: Duration,
}

#[async_trait]
impl Fetcher for GrowsSlowly {
    fn label(&self) -> &str {
        "grows-slowly"
    }
    async fn metadata(&self) -> Result<Value, FetchError> {
        unreachable!()
    }
    async fn fetch(&self, _: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        let first = std::mem::replace(&mut *self.calls.lock().unwrap(), 1) == 0;
        if first {
            return parse_fetch_response("grows", ok(json!([{"id": "a"}])));
        }
        tokio::time::sleep(self.latency).await;
        parse_fetch_response("grows", ok(json!([{"id": "a"}, {"id": "b"}])))
    }
}

#[tokio::test(start_paused = true)]
async fn events_committed_as_the_lease_lapses_go_out_once_it_is_renewed() {
    // The lease is valid when the second poll starts and lapses while it fetches (a heartbeat
    // late under load); the commit lands (the store still knows this replica as the holder),
    // but publishing must wait. Renewed in the same session, the poller publishes the event
    // before its next poll rather than leave subscribers without it until the next change.
    let entry = Arc::new(FetcherEntry {
        metadata: Metadata::from_value(
            &json!({"name": "t", "id_field": "id", "poll_interval": 10}),
        )
        .unwrap(),
        fetcher: Arc::new(GrowsSlowly {
            calls: Mutex::new(0),
            latency: Duration::from_secs(2),
        }),
    });
    let recorder = Arc::new(Recorder::default());
    let store = Arc::new(Touches::new(MemoryStore::new(10)));
    let ctx = PollerContext {
        publisher: recorder.clone(),
        ..shared_context(store.clone())
    };
    let channel = ChannelId::parse("t").unwrap();
    let start = tokio::time::Instant::now();
    let held = |valid_for: u64| restream::cluster::Held {
        channel: channel.clone(),
        epoch: 1,
        session: 0,
        valid_until: start + Duration::from_secs(valid_for),
    };
    let stop = CancellationToken::new();
    let lease = Arc::new(restream::cluster::LeaseGuard::new(held(11), stop.clone()));
    let (_tx, rx) = requests::channel(1);
    let task = tokio::spawn(poller::run(
        channel.clone(),
        entry,
        ctx,
        rx,
        stop.clone(),
        Some(lease.clone()),
    ));
    let published = || {
        let log = recorder.0.lock().unwrap();
        let contents = log.iter().map(|(t, i)| {
            let message = &i.formats.ws_message.as_ref().unwrap().content;
            (*t - start, serde_json::from_str::<Value>(message).unwrap())
        });
        contents
            .map(|(t, m)| {
                (
                    t.as_secs(),
                    m["type"].as_str().unwrap().to_string(),
                    m["seq"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    // The second poll's fetch ends at 12 s, a second after the lease lapsed: nothing goes out.
    tokio::time::sleep(Duration::from_secs(13)).await;
    assert_eq!(published(), vec![(0, "snapshot".into(), json!(1))]);
    let (meta, _) = store.load(&channel).await.unwrap();
    assert_eq!(meta.seq, 2, "the commit itself landed");
    // Renewed at 13 s: seq 2 goes out before the third poll (at 20 s), then nothing new.
    lease.renewed(held(100));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        published(),
        vec![
            (0, "snapshot".into(), json!(1)),
            (20, "new".into(), json!(2))
        ]
    );
    stop.cancel();
    task.await.unwrap();
}
