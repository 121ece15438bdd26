//! Budget store cost: DynamoDB write units spent persisting one upstream budget shared by N
//! channels of one fetcher, each polled once a minute under a `per_minute = N` limit (the
//! budget just allows every channel's poll, so its window always holds N calls).
//!
//! The real `restream::budget::Budgets` draws from a `DynamoItemStore` on moto. The budget
//! starts in its steady state: its record is written beforehand in the original format (a JSON
//! list of N call times spread over the last minute), so the budget paces the calls at N a
//! minute from the first one. Write units are counted from the size of each write request's
//! item (`restream_testkit::dynamo::write_units`). Budgets are saved as the service saves them
//! (every `fetchers.budget_save_secs`, default 5 s, and once when the run stops).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aws_sdk_dynamodb::types::AttributeValue;
use restream::budget::Budgets;
use restream::store::{DynamoItemStore, ItemStore, DEFAULT_LOG_CAPACITY};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use restream_testkit::dynamo::RequestLog;

use super::counted_dynamodb;

const TABLE: &str = "restream-bench-budgets";
/// Callers drawing from the budget at once (as the pollers of many channels do).
const CALLERS: usize = 16;

/// Measures each channel count for `seconds`.
pub async fn run(channels: &[usize], seconds: f64) -> anyhow::Result<Value> {
    let (moto, client, requests) = counted_dynamodb().await?;
    let store: Arc<dyn ItemStore> = Arc::new(
        DynamoItemStore::connect(
            client.clone(),
            TABLE,
            DEFAULT_LOG_CAPACITY,
            Duration::from_secs(24 * 3600),
            true,
        )
        .await
        .context("cannot create the table")?,
    );
    let mut sizes = Vec::new();
    for &n in channels {
        anyhow::ensure!(n > 0, "budget-cost: a channel count must be at least 1");
        sizes.push(measure(&client, &store, &requests, n, seconds).await?);
    }
    drop(moto);
    Ok(json!({
        "scenario": "budget_cost",
        "model": "N channels of one fetcher polled every 60 s, one shared budget per_minute = N",
        "seconds_per_size": seconds,
        "callers": CALLERS,
        "unit": "write units estimated from each write request's item size (1 per started KB); \
                 wcu_per_hour = budget write units per call measured x N x 60 calls an hour",
        "emulator": "moto (scripts/moto_server.py, one request at a time)",
        "sizes": sizes,
    }))
}

async fn measure(
    client: &aws_sdk_dynamodb::Client,
    store: &Arc<dyn ItemStore>,
    requests: &RequestLog,
    n: usize,
    seconds: f64,
) -> anyhow::Result<Value> {
    let id = format!("fetcher:bench-{n}");
    seed_original_format(client, &id, n).await?;
    let budgets = Arc::new(Budgets::default());
    let budget = budgets.get(&id, &[(Duration::from_secs(60), n as u64)]);
    let persister = persist(&budgets, store);
    requests.clear();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut callers = Vec::new();
    for _ in 0..CALLERS {
        let (budget, store) = (budget.clone(), store.clone());
        callers.push(tokio::spawn(async move {
            let mut calls = 0u64;
            while Instant::now() < until {
                let permit = budget.acquire(&store).await;
                budget.finish(permit);
                calls += 1;
            }
            calls
        }));
    }
    let mut calls = 0;
    for c in callers {
        calls += c.await.context("a caller panicked")?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    finish(persister).await;
    let (writes, units) = requests.write_units_for("budget#");
    let per_call = units as f64 / calls.max(1) as f64;
    let item = item_size(client, &id).await?;
    Ok(json!({
        "channels": n,
        "calls": calls,
        "calls_per_second": round1(calls as f64 / elapsed),
        "modelled_calls_per_second": round1(n as f64 / 60.0),
        "budget_write_requests": writes,
        "budget_write_units": units,
        "write_units_per_call": round3(per_call),
        "stored_item_bytes": item,
        "wcu_per_hour": (per_call * n as f64 * 60.0).round(),
    }))
}

/// Writes the budget's record as the original restream did: `calls`, a JSON list of the unix
/// ms of the last minute's `n` calls, evenly spread.
async fn seed_original_format(
    client: &aws_sdk_dynamodb::Client,
    id: &str,
    n: usize,
) -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let calls: Vec<u64> = (0..n as u64)
        .map(|i| now - 60_000 + (i + 1) * 60_000 / n as u64)
        .collect();
    client
        .put_item()
        .table_name(TABLE)
        .item("pk", AttributeValue::S(format!("budget#{id}")))
        .item("sk", AttributeValue::S("budget".into()))
        .item("calls", AttributeValue::S(serde_json::to_string(&calls)?))
        .send()
        .await
        .context("cannot seed the budget")?;
    Ok(())
}

/// The stored budget record's size (attribute names plus string values), in bytes.
async fn item_size(client: &aws_sdk_dynamodb::Client, id: &str) -> anyhow::Result<u64> {
    let out = client
        .get_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(format!("budget#{id}")))
        .key("sk", AttributeValue::S("budget".into()))
        .send()
        .await
        .context("cannot read the budget")?;
    Ok(out.item().map_or(0, |item| {
        item.iter()
            .map(|(k, v)| k.len() as u64 + v.as_s().map_or(8, |s| s.len() as u64))
            .sum()
    }))
}

/// Saves the budgets as the service does (`fetchers.budget_save_secs`, default 5 s).
fn persist(
    budgets: &Arc<Budgets>,
    store: &Arc<dyn ItemStore>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let every = Duration::from_secs(5);
    let task = tokio::spawn(budgets.clone().persist(store.clone(), every, stop.clone()));
    (stop, task)
}

/// Stops the saver as the service does at shutdown (one last save).
async fn finish((stop, task): (CancellationToken, tokio::task::JoinHandle<()>)) {
    stop.cancel();
    let _ = task.await;
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
