//! Scenario 5: what the item store writes per poll of one channel of `items` USGS-like items
//! when the poll's result is unchanged, 1 % changed or 100 % changed: the embedded store
//! (redb, in a temp dir) and DynamoDB (moto), against the original restream, which wrote every
//! item on every poll.
//!
//! Polls go through the real poll loop, `restream::poller::run`: a scripted in-memory fetcher
//! hands it each result when the benchmark says so, a publisher counts what it publishes, and
//! the store is wrapped only to count the records of each commit it accepts. A poll is timed
//! from handing over its fetch result until the poller asks for the next one (interval ≈ 0),
//! so it covers parsing, change detection, the store commit and the publish.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_trait::async_trait;
use restream::channel::ChannelId;
use restream::fetcher::{
    parse_fetch_response, FetchError, FetchOutcome, FetchRequest, Fetcher, FetcherEntry, Keys,
    Metadata,
};
use restream::keys::{KeyStore, KeyStoreError};
use restream::poller::{self, PollerContext};
use restream::pushpin::grip::PublishItem;
use restream::pushpin::publisher::{PublishError, Publisher};
use restream::status::{PollOutcome, StatusBoard};
use restream::store::{
    ChannelMeta, Commit, DynamoItemStore, ItemStore, LoggedEvent, RedbStore, StoreError,
    StoredItem, DEFAULT_LOG_CAPACITY,
};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use restream_testkit::dynamo::{RequestLog, WRITE_OPERATIONS};
use restream_testkit::emulators;

use crate::classify::{fetched, quakes, Case};

/// Polls measured per case.
const POLLS_PER_CASE: usize = 5;
/// Longest a single poll may take before the run is abandoned.
const POLL_TIMEOUT: Duration = Duration::from_secs(600);
const CHANNEL: &str = "store-cost";

pub async fn run(items: usize, dynamodb: bool) -> anyhow::Result<Value> {
    anyhow::ensure!(items > 0, "store-cost: --items must be at least 1");
    let dir = tempfile::tempdir().context("cannot create a temp dir for the embedded store")?;
    let redb: Arc<dyn ItemStore> = Arc::new(
        RedbStore::open(&dir.path().join("items.redb"), DEFAULT_LOG_CAPACITY)
            .context("cannot open the embedded store")?,
    );
    let embedded = measure(redb, items, None).await.context("embedded store")?;
    let mut out = json!({
        "scenario": "store_cost",
        "items": items,
        "polls_per_case": POLLS_PER_CASE,
        "original_writes_per_poll": items,
        "path": "restream::poller::run (the real poll loop) with a scripted in-memory fetcher, \
                 a counting publisher and the store wrapped to count committed records",
        "log_capacity": DEFAULT_LOG_CAPACITY,
        "embedded": embedded,
        "unit": "writes_per_poll = ItemStore::writes() delta = store commits (RedbStore: one \
                 redb write transaction; DynamoItemStore: one TransactWriteItems, or a staged \
                 multi-request commit when over 100 actions / ~3.8 MB); item_records_per_poll = \
                 item records put or deleted, comparable with original_writes_per_poll (the \
                 original restream put every item every poll); records_per_poll adds change-log \
                 events and the channel meta record; dynamodb write_requests_per_poll = \
                 PutItem/UpdateItem/DeleteItem/BatchWriteItem/TransactWriteItems requests sent, \
                 dynamodb_records_written_per_poll = records those requests wrote or deleted \
                 (staging and log trimming included); ms_per_poll = wall time from handing the \
                 fetch result to the poller until it asks for the next one",
    });
    if dynamodb {
        out["dynamodb"] = dynamodb_case(items)
            .await
            .context("DynamoDB store (moto)")?;
    }
    Ok(out)
}

/// Runs the three cases against `store`; with `requests`, also the DynamoDB requests seen.
async fn measure(
    store: Arc<dyn ItemStore>,
    items: usize,
    requests: Option<&RequestLog>,
) -> anyhow::Result<Value> {
    let counted = Arc::new(Counted::new(store));
    let mut driver = Driver::start(counted.clone()).await?;
    let mut current = quakes(items, 0);
    // The first poll stores the whole channel (one snapshot); not measured.
    let (_, outcome) = driver.poll(&current).await?;
    anyhow::ensure!(
        outcome == PollOutcome::Changed,
        "the first poll (the channel's snapshot) ended {outcome:?}"
    );
    let mut out = Map::new();
    let mut version = 0;
    'cases: for case in Case::ALL {
        let mut totals = Totals::default();
        for poll in 0..POLLS_PER_CASE {
            version += 1;
            let next = fetched(&current, case, version);
            let before = Snapshot::take(&counted, &driver, requests);
            let (elapsed, outcome) = driver.poll(&next).await?;
            let after = Snapshot::take(&counted, &driver, requests);
            let expected = if case == Case::Unchanged {
                PollOutcome::Unchanged
            } else {
                PollOutcome::Changed
            };
            if outcome != expected {
                // Reported in the output rather than failing the run: the other cases stand,
                // and the channel would stay stuck on this commit (the poller retries it).
                let refused = counted.last_error.lock().expect("last error").take();
                let error = format!(
                    "poll {}: expected {expected:?}, the poller recorded {outcome:?}{}",
                    poll + 1,
                    refused.map_or(String::new(), |e| format!(
                        " (the store refused the commit: {})",
                        short(&e)
                    ))
                );
                let mut report = if totals.polls > 0 {
                    totals.report(requests.is_some())
                } else {
                    json!({})
                };
                report["polls_completed"] = json!(totals.polls);
                report["error"] = json!(error);
                out.insert(case.name().into(), report);
                break 'cases;
            }
            totals.add(&before, &after, elapsed);
            current = next;
        }
        out.insert(case.name().into(), totals.report(requests.is_some()));
    }
    driver.stop().await;
    Ok(Value::Object(out))
}

/// A store error without the SDK's debug dump of the raw response.
fn short(error: &str) -> String {
    let head = error.split(" (ServiceError").next().unwrap_or(error);
    head.chars().take(400).collect()
}

/// Counter values before or after one poll.
#[derive(Default, Clone)]
struct Snapshot {
    commits: u64,
    upserts: u64,
    removals: u64,
    events: u64,
    metas: u64,
    published: u64,
    requests: HashMap<String, u64>,
    dynamo_records: u64,
}

impl Snapshot {
    fn take(store: &Counted, driver: &Driver, requests: Option<&RequestLog>) -> Snapshot {
        let (requests, dynamo_records) = requests
            .map(|r| (r.by_operation(), r.records_written()))
            .unwrap_or_default();
        Snapshot {
            commits: store.inner.writes(),
            upserts: store.upserts.load(Ordering::Relaxed),
            removals: store.removals.load(Ordering::Relaxed),
            events: store.events.load(Ordering::Relaxed),
            metas: store.commits.load(Ordering::Relaxed),
            published: driver.published.0.load(Ordering::Relaxed),
            requests,
            dynamo_records,
        }
    }
}

#[derive(Default)]
struct Totals {
    polls: u64,
    delta: Snapshot,
    time: Duration,
    max_time: Duration,
}

impl Totals {
    fn add(&mut self, before: &Snapshot, after: &Snapshot, elapsed: Duration) {
        self.polls += 1;
        self.time += elapsed;
        self.max_time = self.max_time.max(elapsed);
        let d = &mut self.delta;
        d.commits += after.commits - before.commits;
        d.upserts += after.upserts - before.upserts;
        d.removals += after.removals - before.removals;
        d.events += after.events - before.events;
        d.metas += after.metas - before.metas;
        d.published += after.published - before.published;
        d.dynamo_records += after.dynamo_records - before.dynamo_records;
        for (op, n) in &after.requests {
            let was = before.requests.get(op).copied().unwrap_or(0);
            if n > &was {
                *d.requests.entry(op.clone()).or_default() += n - was;
            }
        }
    }

    fn report(&self, dynamodb: bool) -> Value {
        let per = |n: u64| n as f64 / self.polls as f64;
        let d = &self.delta;
        let mut v = json!({
            "writes_per_poll": per(d.commits),
            "item_records_per_poll": per(d.upserts + d.removals),
            "records_per_poll": per(d.upserts + d.removals + d.events + d.metas),
            "published_per_poll": per(d.published),
            "ms_per_poll": round3(self.time.as_secs_f64() * 1e3 / self.polls as f64),
            "ms_max": round3(self.max_time.as_secs_f64() * 1e3),
        });
        if dynamodb {
            let writes: u64 = d
                .requests
                .iter()
                .filter(|(op, _)| WRITE_OPERATIONS.contains(&op.as_str()))
                .map(|(_, n)| n)
                .sum();
            v["write_requests_per_poll"] = json!(per(writes));
            v["dynamodb_records_written_per_poll"] = json!(per(d.dynamo_records));
            let by_op: Map<String, Value> = d
                .requests
                .iter()
                .map(|(op, n)| (op.clone(), json!(per(*n))))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect();
            v["requests_per_poll_by_operation"] = Value::Object(by_op);
        }
        v
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The store, counting the records of each commit it accepted.
struct Counted {
    inner: Arc<dyn ItemStore>,
    upserts: AtomicU64,
    removals: AtomicU64,
    events: AtomicU64,
    /// Accepted commits (each writes the channel's meta record once).
    commits: AtomicU64,
    /// Why the last refused commit was refused.
    last_error: Mutex<Option<String>>,
}

impl Counted {
    fn new(inner: Arc<dyn ItemStore>) -> Counted {
        Counted {
            inner,
            upserts: AtomicU64::new(0),
            removals: AtomicU64::new(0),
            events: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }
}

#[async_trait]
impl ItemStore for Counted {
    async fn load(
        &self,
        channel: &ChannelId,
    ) -> Result<(ChannelMeta, Vec<StoredItem>), StoreError> {
        self.inner.load(channel).await
    }
    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        let (upserts, removals, events) = (
            commit.upserts.len() as u64,
            commit.removals.len() as u64,
            commit.events.len() as u64,
        );
        if let Err(e) = self.inner.commit(commit).await {
            *self.last_error.lock().expect("last error") = Some(e.to_string());
            return Err(e);
        }
        self.upserts.fetch_add(upserts, Ordering::Relaxed);
        self.removals.fetch_add(removals, Ordering::Relaxed);
        self.events.fetch_add(events, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn events_after(
        &self,
        channel: &ChannelId,
        after: u64,
    ) -> Result<Option<Vec<LoggedEvent>>, StoreError> {
        self.inner.events_after(channel, after).await
    }
    fn writes(&self) -> u64 {
        self.inner.writes()
    }
    fn log_capacity(&self) -> u64 {
        self.inner.log_capacity()
    }
    fn max_item_bytes(&self) -> usize {
        self.inner.max_item_bytes()
    }
    async fn load_budget(&self, budget: &str) -> Result<Vec<u64>, StoreError> {
        self.inner.load_budget(budget).await
    }
    async fn save_budget(&self, budget: &str, calls: Vec<u64>) -> Result<(), StoreError> {
        self.inner.save_budget(budget, calls).await
    }
}

/// A fetcher that answers each fetch with the next result the benchmark hands it, and says
/// when the poller asks (which is when the previous poll has finished).
struct Feed {
    results: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
    asked: mpsc::UnboundedSender<()>,
}

#[async_trait]
impl Fetcher for Feed {
    fn label(&self) -> &str {
        "bench-feed"
    }
    async fn metadata(&self) -> Result<Value, FetchError> {
        Ok(Value::Null)
    }
    async fn fetch(&self, _: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        let _ = self.asked.send(());
        match self.results.lock().await.recv().await {
            Some(v) => parse_fetch_response("bench-feed", v),
            // The benchmark is over: wait for the shutdown.
            None => std::future::pending().await,
        }
    }
}

/// Counts published messages.
#[derive(Default)]
struct Published(AtomicU64);

#[async_trait]
impl Publisher for Published {
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError> {
        self.0.fetch_add(items.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

struct NoKeys;

#[async_trait]
impl KeyStore for NoKeys {
    async fn keys_for(&self, _: &str) -> Result<Keys, KeyStoreError> {
        Ok(Keys::default())
    }
}

/// One channel's poller, polled on demand.
struct Driver {
    results: mpsc::UnboundedSender<Value>,
    asked: mpsc::UnboundedReceiver<()>,
    status: Arc<StatusBoard>,
    published: Arc<Published>,
    /// Kept open, as the service keeps each poller's subscriber queue.
    _requests: mpsc::Sender<poller::SnapshotRequest>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Driver {
    async fn start(store: Arc<dyn ItemStore>) -> anyhow::Result<Driver> {
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let (asked_tx, asked_rx) = mpsc::unbounded_channel();
        let entry = Arc::new(FetcherEntry {
            // Polled back to back: the benchmark paces the polls.
            metadata: Metadata::from_value(&json!({
                "name": CHANNEL, "id_field": crate::classify::ID_FIELD, "poll_interval": 1e-6,
            }))
            .context("fetcher metadata")?,
            fetcher: Arc::new(Feed {
                results: tokio::sync::Mutex::new(results_rx),
                asked: asked_tx,
            }),
        });
        let published = Arc::new(Published::default());
        let status = Arc::new(StatusBoard::default());
        let ctx = PollerContext {
            keys: Arc::new(NoKeys),
            publisher: published.clone(),
            store,
            max_backoff: Duration::from_secs(60),
            budgets: Default::default(),
            last_polls: Default::default(),
            status: status.clone(),
        };
        let channel = ChannelId::from_request(CHANNEL, None, &BTreeMap::new())
            .map_err(|e| anyhow::anyhow!("channel id: {e:?}"))?;
        let (requests_tx, requests_rx) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let task = tokio::spawn(poller::run(
            channel,
            entry,
            ctx,
            requests_rx,
            stop.clone(),
            None,
        ));
        let mut driver = Driver {
            results: results_tx,
            asked: asked_rx,
            status,
            published,
            _requests: requests_tx,
            stop,
            task,
        };
        // The poller has loaded the channel and asks for its first result.
        driver
            .wait_for_fetch()
            .await
            .context("the poller never fetched")?;
        Ok(driver)
    }

    async fn wait_for_fetch(&mut self) -> anyhow::Result<()> {
        match tokio::time::timeout(POLL_TIMEOUT, self.asked.recv()).await {
            Ok(Some(())) => Ok(()),
            Ok(None) => bail!("the poller stopped"),
            Err(_) => bail!("no poll finished within {} s", POLL_TIMEOUT.as_secs()),
        }
    }

    /// One poll whose fetch returns `items`: its duration and outcome.
    async fn poll(
        &mut self,
        items: &[Map<String, Value>],
    ) -> anyhow::Result<(Duration, PollOutcome)> {
        let result = json!({
            "status_code": 200,
            "result": items.iter().cloned().map(Value::Object).collect::<Vec<_>>(),
            "complete": true,
        });
        let started = Instant::now();
        self.results
            .send(result)
            .map_err(|_| anyhow::anyhow!("the poller stopped"))?;
        self.wait_for_fetch().await?;
        let elapsed = started.elapsed();
        let outcome = self
            .status
            .get(&ChannelId::parse(CHANNEL).expect("a valid channel id"))
            .and_then(|s| s.last_poll)
            .map(|p| p.outcome)
            .context("the poller recorded no poll")?;
        Ok((elapsed, outcome))
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The DynamoDB store on a moto started for the run (and stopped, by PID, whatever happens).
async fn dynamodb_case(items: usize) -> anyhow::Result<Value> {
    let moto = emulators::try_start_moto()?;
    let sdk = emulators::sdk_config(&emulators::aws_settings(&moto.url)).await;
    let requests = RequestLog::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(requests.clone())
            .build(),
    );
    let store = DynamoItemStore::connect(
        client,
        "restream-bench-items",
        DEFAULT_LOG_CAPACITY,
        Duration::from_secs(24 * 3600),
        true,
    )
    .await
    .context("cannot create the table")?;
    let mut report = measure(Arc::new(store), items, Some(&requests)).await?;
    report["emulator"] = json!("moto (scripts/moto_server.py, one request at a time)");
    drop(moto);
    Ok(report)
}
