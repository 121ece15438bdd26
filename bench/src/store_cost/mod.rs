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
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use restream::status::PollOutcome;
use restream::store::{DynamoItemStore, ItemStore, RedbStore, DEFAULT_LOG_CAPACITY};
use serde_json::{json, Map, Value};

use restream_testkit::dynamo::{RequestLog, WRITE_OPERATIONS};
use restream_testkit::emulators;

use crate::classify::{fetched, quakes, Case};

pub mod budget;
mod driver;
pub mod lease;
use driver::{Counted, Driver};

/// Polls measured per case.
const POLLS_PER_CASE: usize = 5;
/// Longest a single poll may take before the run is abandoned.
pub(super) const POLL_TIMEOUT: Duration = Duration::from_secs(600);
pub(super) const CHANNEL: &str = "store-cost";

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

/// The DynamoDB store on a moto started for the run (and stopped, by PID, whatever happens).
async fn dynamodb_case(items: usize) -> anyhow::Result<Value> {
    let (moto, client, requests) = counted_dynamodb().await?;
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

/// A moto started for the run (stopped by PID when dropped) and a DynamoDB client on it whose
/// requests are counted in the returned log.
pub(crate) async fn counted_dynamodb(
) -> anyhow::Result<(emulators::Server, aws_sdk_dynamodb::Client, RequestLog)> {
    let moto = emulators::try_start_moto()?;
    let sdk = emulators::sdk_config(&emulators::aws_settings(&moto.url)).await;
    let requests = RequestLog::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(requests.clone())
            .build(),
    );
    Ok((moto, client, requests))
}
