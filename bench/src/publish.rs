//! Scenario 7: producers publishing to a push channel (`bench-push`, items mode, embedded
//! store) that `n` WebSocket clients subscribe to.
//!
//! Latency: each round publishes a batch of 1 and a batch of 100 new items through the public
//! publish API (`POST /channels/bench-push/items` through Pushpin, a producer key), each item
//! stamped just before the request is sent, and times every item's `new` event at every
//! subscriber; then publishes the same number of messages of the same size, in one request,
//! straight to the same Pushpin's HTTP publish API on the channel's GRIP channel (the
//! `fanout` scenario's direct path), timed the same way. Rounds alternate which path goes
//! first. `ratio_p50`/`_p99` = restream / direct.
//!
//! Throughput: afterwards, with the subscribers still connected (their messages read and
//! dropped unparsed), producers post batches back to back, each waiting for its receipt,
//! for `seconds` per setting: 1 producer and `producers` concurrent producers (one channel),
//! batches of 1 and of 100. Reported: items committed per second and the receipt latency.
//! The same settings run first on a push channel nobody subscribes to (`throughput_idle`):
//! the publish path without Pushpin's fan-out.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::measure::{now_us, percentile, summary_ms};
use crate::stack::{self, Behind, Options, Stack, IDLE_PUSH_CHANNEL, PRODUCER_KEY, PUSH_CHANNEL};
use restream_testkit::clients::ws::{connect_many, Ws, BATCH};

/// Batch sizes measured.
const BATCHES: [usize; 2] = [1, 100];
/// Text in each published item, so an item is about the size of a small real one.
const TEXT_BYTES: usize = 160;
/// Pushpin's per-connection buffer here: room for a batch of 100 events at once.
const CLIENT_BUFFER_SIZE: usize = 131_072;
/// The message a reader sends when its connection ends.
const CLOSED: &str = "_closed";

type Inbox = mpsc::UnboundedReceiver<(usize, u64, Value)>;

pub struct Config {
    pub subscribers: usize,
    pub rounds: usize,
    /// Seconds per throughput setting.
    pub seconds: f64,
    /// Concurrent producers of the concurrent throughput settings.
    pub producers: usize,
}

/// Reads `ws` until it closes: while `forward` is set, every text message goes to `tx`
/// parsed and stamped; otherwise it is dropped unparsed (the throughput phase).
fn spawn_reader(
    i: usize,
    mut ws: Ws,
    tx: mpsc::UnboundedSender<(usize, u64, Value)>,
    forward: Arc<AtomicBool>,
) {
    tokio::spawn(async move {
        let why = loop {
            match ws.next().await {
                None => break "closed".to_string(),
                Some(Err(e)) => break e.to_string(),
                Some(Ok(m)) if m.is_close() => break "closed".to_string(),
                Some(Ok(m)) if m.is_text() && forward.load(Ordering::Relaxed) => {
                    let received = now_us();
                    let Ok(value) = serde_json::from_str::<Value>(m.to_text().unwrap_or("")) else {
                        continue;
                    };
                    if tx.send((i, received, value)).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
            }
        };
        let _ = tx.send((i, now_us(), json!({"type": CLOSED, "why": why})));
    });
}

/// Latencies (ms) of the `per_client` messages per client that `pick` maps to
/// `(index, stamp_us)`, until every one of `n` clients had all of them.
async fn collect(
    inbox: &mut Inbox,
    n: usize,
    per_client: usize,
    what: &str,
    pick: impl Fn(&Value) -> Option<(usize, u64)>,
) -> anyhow::Result<Vec<f64>> {
    let mut seen = vec![vec![false; per_client]; n];
    let mut out = Vec::with_capacity(n * per_client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while out.len() < n * per_client {
        let Ok(Some((client, received_us, message))) =
            tokio::time::timeout_at(deadline, inbox.recv()).await
        else {
            anyhow::bail!(
                "{what}: {} of {} deliveries arrived",
                out.len(),
                n * per_client
            );
        };
        anyhow::ensure!(
            message["type"] != CLOSED,
            "{what}: subscriber {client} was disconnected ({})",
            message["why"]
        );
        if let Some((index, stamp)) = pick(&message) {
            if index < per_client && !seen[client][index] {
                seen[client][index] = true;
                out.push(received_us.saturating_sub(stamp) as f64 / 1000.0);
            }
        }
    }
    Ok(out)
}

/// Opens `n` clients and subscribes each to the push channel, a batch at a time (Pushpin
/// 1.36 resets connections once about 100 WOH requests are queued).
async fn subscribe_all(
    stack: &Stack,
    n: usize,
    tx: &mpsc::UnboundedSender<(usize, u64, Value)>,
    forward: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let clients = connect_many(&stack.ws_url, n).await?;
    let mut clients = clients.into_iter().enumerate().peekable();
    while clients.peek().is_some() {
        let batch: Vec<_> = clients.by_ref().take(BATCH).collect();
        let subscribed = futures_util::future::join_all(batch.into_iter().map(|(i, mut ws)| {
            let tx = tx.clone();
            async move {
                let subscribe = json!({"action": "subscribe", "channel": PUSH_CHANNEL});
                crate::fanout::subscribe_one(i, &mut ws, &subscribe, &tx).await?;
                anyhow::Ok((i, ws))
            }
        }))
        .await;
        for client in subscribed {
            let (i, ws) = client?;
            spawn_reader(i, ws, tx.clone(), forward.clone());
        }
    }
    Ok(())
}

/// Posts `items` to the publish API and checks the receipt counts them all as new.
async fn publish(client: &reqwest::Client, url: &str, items: &[Value]) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .bearer_auth(PRODUCER_KEY)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(items)?)
        .send()
        .await?;
    let status = response.status();
    let receipt: Value = response.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(
        status.is_success() && receipt["new"] == items.len(),
        "publish of {} items answered {status}: {receipt}",
        items.len()
    );
    Ok(())
}

fn item(id: String, fields: Value) -> Value {
    let mut item = json!({"id": id, "text": "x".repeat(TEXT_BYTES)});
    if let (Some(item), Value::Object(fields)) = (item.as_object_mut(), fields) {
        item.extend(fields);
    }
    item
}

/// `b` messages of `size` bytes in one request straight to Pushpin's HTTP publish API, on the
/// push channel's GRIP channel, in both formats restream publishes (WebSocket and SSE).
async fn publish_direct(
    client: &reqwest::Client,
    stack: &Stack,
    round: usize,
    b: usize,
    size: usize,
) -> anyhow::Result<()> {
    let stamp = now_us();
    let items: Vec<Value> = (0..b)
        .map(|i| {
            let mut m = json!({"type": "direct", "round": round, "b": b, "i": i,
                               "stamp_us": stamp, "pad": ""});
            let pad = size.saturating_sub(m.to_string().len());
            m["pad"] = json!("x".repeat(pad));
            let content = m.to_string();
            json!({"channel": PUSH_CHANNEL, "formats": {
                "ws-message": {"content": content},
                "http-stream": {"content": format!("event: direct\ndata: {content}\n\n")},
            }})
        })
        .collect();
    client
        .post(&stack.publish_url)
        .json(&json!({ "items": items }))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// One throughput setting: `producers` loops posting batches of `b` for `seconds`.
async fn throughput(
    url: &str,
    producers: usize,
    b: usize,
    seconds: f64,
    tag: &str,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let runs = (0..producers).map(|p| {
        let url = url.to_string();
        let tag = format!("{tag}-p{p}");
        async move {
            let client = reqwest::Client::new();
            let (mut items, mut acks) = (0usize, Vec::new());
            let mut k = 0;
            while Instant::now() < deadline {
                let batch: Vec<Value> = (0..b)
                    .map(|i| item(format!("{tag}-{k}-{i}"), json!({})))
                    .collect();
                let sent = Instant::now();
                publish(&client, &url, &batch).await?;
                acks.push(sent.elapsed().as_secs_f64() * 1000.0);
                items += b;
                k += 1;
            }
            anyhow::Ok((items, acks))
        }
    });
    let mut items = 0;
    let mut acks = Vec::new();
    for result in futures_util::future::join_all(runs).await {
        let (n, a) = result?;
        items += n;
        acks.extend(a);
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(json!({
        "producers": producers,
        "batch": b,
        "items_per_sec": (items as f64 / secs).round(),
        "batches": acks.len(),
        "receipt_ms": summary_ms(&acks),
    }))
}

pub async fn run(config: Config) -> anyhow::Result<Value> {
    let n = config.subscribers;
    let stack = stack::start(Options {
        behind: Behind::Restream,
        interval: 60.0,
        // Batches of 100 to 100 subscribers are 10,000 deliveries: keep Pushpin's rate
        // limiter out of both paths' latency.
        message_rate: 1_000_000,
        // A batch of 100 events is ~35 KB to each WebSocket at once: at Pushpin's 8192 most of
        // it is dropped (by Pushpin, for the direct publish too).
        client_buffer_size: Some(CLIENT_BUFFER_SIZE),
        auth: false,
        push: true,
        history: None,
        upstream_keep_alive: false,
    })
    .await?;
    let url = format!("{}/channels/{PUSH_CHANNEL}/items", stack.http_url);
    let idle_url = format!("{}/channels/{IDLE_PUSH_CHANNEL}/items", stack.http_url);
    let settings = |producers: usize| [(1, 1), (1, 100), (producers, 1), (producers, 100)];
    let mut idle_rates = Vec::new();
    for (producers, b) in settings(config.producers) {
        let tag = format!("i{producers}x{b}");
        idle_rates.push(throughput(&idle_url, producers, b, config.seconds, &tag).await?);
    }
    let (tx, mut inbox) = mpsc::unbounded_channel();
    let forward = Arc::new(AtomicBool::new(true));
    let subscribing = Instant::now();
    subscribe_all(&stack, n, &tx, &forward).await?;
    let subscribe_secs = subscribing.elapsed().as_secs_f64();
    collect(&mut inbox, n, 1, "the first snapshot", |m| {
        (m["type"] == "snapshot").then_some((0, 0))
    })
    .await?;

    // Warm both paths' connections and the channel's writer.
    let producer = reqwest::Client::new();
    publish(&producer, &url, &[item("warm-up".into(), json!({}))]).await?;
    collect(&mut inbox, n, 1, "the warm-up publish", |m| {
        (m["type"] == "new").then_some((0, 0))
    })
    .await?;
    let direct_client = reqwest::Client::new();
    direct_client
        .post(&stack.publish_url)
        .json(&json!({"items": [{"channel": "warm-up", "formats": {"ws-message": {"content": "{}"}}}]}))
        .send()
        .await?;

    let mut restream: HashMap<usize, Vec<f64>> = HashMap::new();
    let mut direct: HashMap<usize, Vec<f64>> = HashMap::new();
    // The size of restream's event per batch size; round 0 measures restream first.
    let sizes: HashMap<usize, Cell<usize>> = BATCHES.iter().map(|b| (*b, Cell::new(0))).collect();
    for round in 0..config.rounds {
        for b in BATCHES {
            for path in [round % 2, 1 - round % 2] {
                if path == 0 {
                    let stamp = now_us();
                    let batch: Vec<Value> = (0..b)
                        .map(|i| {
                            let id = format!("r{round}-b{b}-{i}");
                            item(
                                id,
                                json!({"round": round, "b": b, "i": i, "stamp_us": stamp}),
                            )
                        })
                        .collect();
                    publish(&producer, &url, &batch).await?;
                    let size = &sizes[&b];
                    let got = collect(&mut inbox, n, b, "a publish", |m| {
                        let it = &m["item"];
                        let ours = m["type"] == "new" && it["round"] == round && it["b"] == b;
                        if ours {
                            size.set(m.to_string().len());
                        }
                        ours.then(|| Some((it["i"].as_u64()? as usize, it["stamp_us"].as_u64()?)))
                            .flatten()
                    })
                    .await?;
                    restream.entry(b).or_default().extend(got);
                } else {
                    publish_direct(&direct_client, &stack, round, b, sizes[&b].get()).await?;
                    let got = collect(&mut inbox, n, b, "a direct publish", |m| {
                        let ours = m["type"] == "direct" && m["round"] == round && m["b"] == b;
                        ours.then(|| Some((m["i"].as_u64()? as usize, m["stamp_us"].as_u64()?)))
                            .flatten()
                    })
                    .await?;
                    direct.entry(b).or_default().extend(got);
                }
            }
        }
    }
    let mut latency = serde_json::Map::new();
    for b in BATCHES {
        let (r, d) = (&restream[&b], &direct[&b]);
        let ratio = |p: f64| {
            let dp = percentile(d, p);
            if dp > 0.0 {
                ((percentile(r, p) / dp) * 100.0).round() / 100.0
            } else {
                0.0
            }
        };
        latency.insert(
            format!("batch_{b}"),
            json!({
                "restream_ms": summary_ms(r),
                "direct_publish_ms": summary_ms(d),
                "event_bytes": sizes[&b].get(),
                "ratio_p50": ratio(50.0),
                "ratio_p99": ratio(99.0),
            }),
        );
    }

    // Throughput: the subscribers stay connected; their messages are dropped unread.
    forward.store(false, Ordering::Relaxed);
    let mut rates = Vec::new();
    for (producers, b) in settings(config.producers) {
        let tag = format!("t{producers}x{b}");
        rates.push(throughput(&url, producers, b, config.seconds, &tag).await?);
    }
    Ok(json!({
        "scenario": "publish",
        "subscribers": n,
        "rounds": config.rounds,
        "subscribe_secs": (subscribe_secs * 100.0).round() / 100.0,
        "client_buffer_size": CLIENT_BUFFER_SIZE,
        "latency": latency,
        "throughput": rates,
        "throughput_idle": idle_rates,
        "machine": crate::measure::machine(),
    }))
}
