//! Scenario 9 (issue 24): process fetchers on warm workers beside one Python process per call,
//! in the same run. *Throughput*: fetches per second of a trivial process fetcher through the
//! real `ProcessFetcher` (default settings: 2 workers per fetcher, 8 process slots), callers
//! on many channels at once, the two modes alternating. *Held channels*: the whole stack
//! (Pushpin, the backend binary) with `channels` channels of one process fetcher that calls
//! the fake upstream, subscribed 20 per connection: each channel's first poll after its
//! subscribe, the polls per channel per interval once all are held, and a new client's
//! snapshot of one more channel of the same fetcher.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use restream::config::FetcherKind;
use restream::fetcher::{FetchRequest, Fetcher, Keys, ProcessFetcher, ProcessMode, ProcessRuntime};
use serde_json::{json, Value};

use crate::measure::summary_ms;
use crate::stack::{self, Behind, Options};
use restream_testkit::clients::ws::{connect, connect_many, next_json, send_json, Ws};

/// The fetcher both parts run: a trivial answer, or the fake upstream's `/feed/{n}.json`.
const FETCHER: &str = r#""""restream-bench: one item per call, or the fake upstream's feed."""
import json
import os
import urllib.request

INTERVAL = __INTERVAL__


def lambda_function(event, context):
    if event["call"] == "metadata":
        return {
            "name": "bench-proc",
            "description": "restream-bench process fetcher",
            "id_field": "id",
            "poll_interval": INTERVAL,
            "env": ["BENCH_BASE_URL"],
            "params": {"n": {"required": True, "description": "feed number"}},
            "rate_limit": {"per_second": 1000000},
        }
    n = event["params"]["n"]
    base = os.environ.get("BENCH_BASE_URL")
    if not base:
        return {"status_code": 200, "result": [{"id": "item-" + n}]}
    with urllib.request.urlopen("%s/feed/%s.json" % (base, n), timeout=10) as answer:
        items = json.load(answer)
    return {"status_code": 200, "result": items, "complete": True}
"#;

const NAME: &str = "bench-proc";
const PER_CONNECTION: usize = 20;
/// Connections subscribing at once (100 WOH requests: Pushpin 1.36's queue limit).
const BATCH: usize = 5;

pub struct Config {
    /// Seconds per throughput measurement (each mode measured `rounds` times).
    pub seconds: f64,
    pub rounds: usize,
    /// Channels fetched at once in the throughput part.
    pub concurrency: usize,
    /// Held channels, and their poll interval.
    pub channels: usize,
    pub interval: f64,
}

fn write_fetcher(functions: &Path, interval: f64) -> anyhow::Result<std::path::PathBuf> {
    let dir = functions.join(NAME);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("main.py"),
        FETCHER.replace("__INTERVAL__", &interval.to_string()),
    )?;
    Ok(dir)
}

pub async fn run(config: Config) -> anyhow::Result<Value> {
    let load_before = load_average();
    let functions = tempfile::tempdir()?;
    let dir = write_fetcher(functions.path(), config.interval)?;
    let mut warm = Vec::new();
    let mut oneshot = Vec::new();
    for _ in 0..config.rounds {
        warm.push(polls_per_sec(&dir, ProcessMode::Warm, &config).await?);
        oneshot.push(polls_per_sec(&dir, ProcessMode::Oneshot, &config).await?);
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (w, o) = (median(&warm), median(&oneshot));
    let held_warm = held(ProcessMode::Warm, &config).await?;
    let held_oneshot = held(ProcessMode::Oneshot, &config).await?;
    Ok(json!({
        "scenario": "workers",
        "throughput": {
            "concurrent_channels": config.concurrency,
            "seconds_each": config.seconds,
            "warm_polls_per_sec": round1(w),
            "oneshot_polls_per_sec": round1(o),
            "warm_runs": warm.iter().map(|v| round1(*v)).collect::<Vec<_>>(),
            "oneshot_runs": oneshot.iter().map(|v| round1(*v)).collect::<Vec<_>>(),
            "ratio": round1(w / o.max(f64::MIN_POSITIVE)),
        },
        "held_channels": {"warm": held_warm, "oneshot": held_oneshot},
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "machine": crate::measure::machine(),
    }))
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages: the machine is shared while we measure.
fn load_average() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!(text
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" "))
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Fetches per second by `concurrency` callers on channels `n=0..`, each fetching again as
/// soon as its last fetch answered; the first fetch (a worker's start) is not counted.
async fn polls_per_sec(dir: &Path, mode: ProcessMode, config: &Config) -> anyhow::Result<f64> {
    let runtime = ProcessRuntime {
        mode,
        ..ProcessRuntime::new("python3", Duration::from_secs(30))
    };
    let fetcher = Arc::new(ProcessFetcher::new(dir, runtime));
    fetch(&fetcher, 0).await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(config.seconds);
    let callers = (0..config.concurrency).map(|n| {
        let fetcher = fetcher.clone();
        tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                fetch(&fetcher, n).await?;
                done += 1;
            }
            anyhow::Ok(done)
        })
    });
    let mut total = 0;
    for caller in futures_util::future::join_all(callers).await {
        total += caller??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

async fn fetch(fetcher: &ProcessFetcher, n: usize) -> anyhow::Result<()> {
    let params = BTreeMap::from([("n".to_string(), n.to_string())]);
    let outcome = fetcher
        .fetch(FetchRequest {
            channel: NAME,
            params: &params,
            keys: &Keys::new(),
            state: None,
        })
        .await?;
    anyhow::ensure!(outcome.items.len() == 1, "one item expected");
    Ok(())
}

/// Subscribes `ws` to `bench-proc?n=…` for each n, noting when each subscribe was sent, and
/// waits for every `subscribed`.
async fn subscribe_all(mut ws: Ws, ns: Vec<usize>) -> anyhow::Result<(Ws, Vec<(usize, Instant)>)> {
    let mut sent = Vec::new();
    for n in &ns {
        sent.push((*n, Instant::now()));
        let m = json!({"action": "subscribe", "channel": NAME, "params": {"n": n.to_string()}});
        send_json(&mut ws, &m).await?;
    }
    let mut subscribed = 0;
    while subscribed < ns.len() {
        let m = next_json(&mut ws, Duration::from_secs(60))
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed while subscribing"))?;
        anyhow::ensure!(m["type"] != "error", "subscribe failed: {m}");
        subscribed += usize::from(m["type"] == "subscribed");
    }
    Ok((ws, sent))
}

/// The held-channels case on the whole stack with process fetchers in `mode`.
async fn held(mode: ProcessMode, config: &Config) -> anyhow::Result<Value> {
    let interval = config.interval;
    let options = Options {
        behind: Behind::Restream,
        interval: 60.0,
        message_rate: 50_000,
        auth: false,
        push: false,
        client_buffer_size: None,
        history: None,
        upstream_keep_alive: false,
    };
    let stack = stack::start_customized(options, |settings, dir| {
        write_fetcher(&dir.join("functions"), interval)?;
        settings.fetchers.kinds = vec![FetcherKind::Process, FetcherKind::Http];
        settings.fetchers.process_mode = mode;
        Ok(())
    })
    .await?;
    let channels = config.channels;
    let clients = connect_many(&stack.ws_url, channels.div_ceil(PER_CONNECTION)).await?;
    let started = Instant::now();
    let mut sent: HashMap<usize, Instant> = HashMap::new();
    let mut clients = clients.into_iter().enumerate().peekable();
    while clients.peek().is_some() {
        let batch: Vec<_> = clients.by_ref().take(BATCH).collect();
        let done = futures_util::future::join_all(batch.into_iter().map(|(i, ws)| {
            let ns = (i * PER_CONNECTION..((i + 1) * PER_CONNECTION).min(channels)).collect();
            subscribe_all(ws, ns)
        }))
        .await;
        for result in done {
            let (mut ws, times) = result?;
            sent.extend(times);
            tokio::spawn(async move {
                while let Ok(Some(_)) = next_json(&mut ws, Duration::from_secs(3600)).await {}
            });
        }
    }
    let subscribe_secs = started.elapsed().as_secs_f64();
    // Every channel's first poll, waiting at most 60 s (or 10 intervals).
    let give_up = started + Duration::from_secs_f64((10.0 * interval).max(60.0));
    let first_polls = loop {
        let firsts = first_polls(&stack.upstream.all_requests());
        if firsts.len() >= channels || Instant::now() > give_up {
            break firsts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lag_ms: Vec<f64> = sent
        .iter()
        .filter_map(|(n, at)| Some(first_polls.get(n)?.duration_since(*at).as_secs_f64() * 1e3))
        .collect();
    let all_first_polled_secs = first_polls
        .values()
        .max()
        .map(|t| t.duration_since(started).as_secs_f64());
    // Sustained: upstream calls per channel per interval over the next three intervals.
    let window_start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(3.0 * interval)).await;
    let calls: usize = stack
        .upstream
        .all_requests()
        .values()
        .flatten()
        .filter(|t| **t >= window_start)
        .count();
    let per_interval = calls as f64 / channels as f64 / 3.0;
    // A new client subscribing to one more channel of the same fetcher, three times.
    let mut snapshot_ms = Vec::new();
    for k in 0..3 {
        snapshot_ms.push(new_client_snapshot(&stack.ws_url, channels + k).await?);
    }
    Ok(json!({
        "channels": channels,
        "poll_interval_secs": interval,
        "subscribe_secs": (subscribe_secs * 100.0).round() / 100.0,
        "channels_first_polled": first_polls.len(),
        "all_first_polled_secs": all_first_polled_secs.map(|s| (s * 100.0).round() / 100.0),
        "first_poll_after_subscribe_ms": summary_ms(&lag_ms),
        "upstream_calls_per_channel_per_interval": (per_interval * 100.0).round() / 100.0,
        "new_client_snapshot_ms": snapshot_ms,
    }))
}

/// Channel n → its first upstream request.
fn first_polls(requests: &HashMap<String, Vec<Instant>>) -> HashMap<usize, Instant> {
    requests
        .iter()
        .filter_map(|(path, times)| {
            let n = path
                .strip_prefix("/feed/")?
                .strip_suffix(".json")?
                .parse()
                .ok()?;
            Some((n, *times.iter().min()?))
        })
        .collect()
}

/// Milliseconds from a new client's subscribe to its snapshot (`null` after 20 s).
async fn new_client_snapshot(ws_url: &str, n: usize) -> anyhow::Result<Option<f64>> {
    let mut ws = connect(ws_url).await?;
    let started = Instant::now();
    let m = json!({"action": "subscribe", "channel": NAME, "params": {"n": n.to_string()}});
    send_json(&mut ws, &m).await?;
    let deadline = started + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match next_json(&mut ws, left).await {
            Ok(Some(m)) if m["type"] == "snapshot" => {
                return Ok(Some(
                    (started.elapsed().as_secs_f64() * 1e5).round() / 100.0,
                ))
            }
            Ok(Some(m)) => anyhow::ensure!(m["type"] != "error", "subscribe failed: {m}"),
            _ => break,
        }
    }
    Ok(None)
}
