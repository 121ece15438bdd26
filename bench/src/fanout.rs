//! Scenarios 1 and 2: `n` WebSocket subscribers on one channel.
//!
//! Each round changes the upstream once and times, for every subscriber, the path from the
//! upstream serving the change (the item's `stamp_us`) to the subscriber receiving its `new`
//! event; then publishes one message straight to the same Pushpin over HTTP and times that to
//! every subscriber. The overhead ratio divides the first by the second (p50 and p99), so
//! Pushpin's own fan-out cost, common to both, cancels out. Rounds alternate which goes first.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::measure::{max_calls_within, now_us, percentile, summary_ms};
use crate::stack::{self, Behind, Options, Stack};
use restream_testkit::clients::http::{scrape, value};
use restream_testkit::clients::ws::{connect_many, next_json, send_json};

const INTERVAL: f64 = 1.0;
const CHANNEL_ID: &str = "bench?n=0";

/// The type of the message a client's reader sends when its connection ends.
const CLOSED: &str = "_closed";

type Inbox = mpsc::UnboundedReceiver<(usize, u64, Value)>;

/// Latencies (ms) of the first message per client that `pick` maps to a stamp, until every one
/// of `n` clients had one.
async fn collect(
    inbox: &mut Inbox,
    n: usize,
    what: &str,
    pick: impl Fn(&Value) -> Option<u64>,
) -> anyhow::Result<Vec<f64>> {
    let mut seen = vec![false; n];
    let mut out = Vec::with_capacity(n);
    let mut closed: Vec<(usize, String)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while out.len() < n {
        let Ok(Some((client, received_us, message))) =
            tokio::time::timeout_at(deadline, inbox.recv()).await
        else {
            let closed_unserved = closed.iter().filter(|(c, _)| !seen[*c]).count();
            let why: std::collections::BTreeSet<&String> = closed.iter().map(|(_, w)| w).collect();
            anyhow::bail!(
                "{what}: only {} of {n} subscribers received it ({} connections closed, {closed_unserved} of them before it: {why:?})",
                out.len(),
                closed.len()
            );
        };
        if message["type"] == CLOSED {
            closed.push((
                client,
                message["why"].as_str().unwrap_or_default().to_string(),
            ));
            continue;
        }
        if let Some(stamp) = pick(&message) {
            if !seen[client] {
                seen[client] = true;
                out.push(received_us.saturating_sub(stamp) as f64 / 1000.0);
            }
        }
    }
    Ok(out)
}

/// One message straight to Pushpin's HTTP publish API (a warm, kept-alive client), stamped
/// just before it is sent and padded to `size` bytes, the size of restream's event, with the
/// same two formats, so both paths hand Pushpin the same work.
async fn publish_direct(
    client: &reqwest::Client,
    stack: &Stack,
    round: usize,
    size: usize,
) -> anyhow::Result<()> {
    let mut message = json!({"type": "direct", "round": round, "stamp_us": now_us(), "pad": ""});
    let pad = size.saturating_sub(message.to_string().len());
    message["pad"] = json!("x".repeat(pad));
    let content = message.to_string();
    // Both formats, like restream's broadcasts (which also serve SSE subscribers).
    let sse = format!("event: direct\ndata: {content}\n\n");
    let body = json!({"items": [{"channel": CHANNEL_ID, "formats": {
        "ws-message": {"content": content},
        "http-stream": {"content": sse},
    }}]});
    client
        .post(&stack.publish_url)
        .json(&body)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// WOH events the backend has handled so far (`restream_woh_events_total`, every kind).
async fn woh_events(stack: &Stack) -> u64 {
    let metrics = scrape(&format!("http://{}/metrics", stack.backend.addr)).await;
    value(&metrics, "restream_woh_events_total", &[]) as u64
}

/// Sends client `i` its `subscribe` and waits for `subscribed`; messages that come first (the
/// snapshot may) go to `tx`, stamped.
pub(crate) async fn subscribe_one(
    i: usize,
    ws: &mut restream_testkit::clients::ws::Ws,
    subscribe: &Value,
    tx: &mpsc::UnboundedSender<(usize, u64, Value)>,
) -> anyhow::Result<()> {
    send_json(ws, subscribe).await?;
    loop {
        let m = next_json(ws, Duration::from_secs(30))
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed before subscribed"))?;
        anyhow::ensure!(m["type"] != "error", "subscribe failed: {m}");
        if m["type"] == "subscribed" {
            return Ok(());
        }
        let _ = tx.send((i, now_us(), m));
    }
}

/// Forwards every message `ws` receives to `tx`, stamped, then a `CLOSED` message saying why
/// the connection ended.
fn spawn_reader(
    i: usize,
    mut ws: restream_testkit::clients::ws::Ws,
    tx: mpsc::UnboundedSender<(usize, u64, Value)>,
) {
    tokio::spawn(async move {
        let end = loop {
            match next_json(&mut ws, Duration::from_secs(3600)).await {
                Ok(Some(m)) => {
                    if tx.send((i, now_us(), m)).is_err() {
                        return;
                    }
                }
                Ok(None) => break "closed".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        let _ = tx.send((i, now_us(), json!({"type": CLOSED, "why": end})));
    });
}

pub async fn run(subscribers: usize, rounds: usize) -> anyhow::Result<Value> {
    let stack = stack::start(Options {
        behind: Behind::Restream,
        interval: INTERVAL,
        message_rate: 50_000,
        auth: false,
        push: false,
        client_buffer_size: None,
        history: None,
        upstream_keep_alive: false,
    })
    .await?;
    let opened = Instant::now();
    let clients = connect_many(&stack.ws_url, subscribers).await?;
    let connect_secs = opened.elapsed().as_secs_f64();
    let (tx, mut inbox) = mpsc::unbounded_channel();
    let subscribing = Instant::now();
    let mut clients = clients.into_iter().enumerate().peekable();
    while clients.peek().is_some() {
        // At most one batch of subscribes in flight: each is a WOH request through Pushpin,
        // whose proxy resets connections once about 100 requests are queued (see
        // `clients::BATCH`). `BENCH_BURST=1` sends them all at once to show that.
        let batch: Vec<_> = if std::env::var_os("BENCH_BURST").is_some() {
            clients.by_ref().collect()
        } else {
            clients
                .by_ref()
                .take(restream_testkit::clients::ws::BATCH)
                .collect()
        };
        let subscribed = futures_util::future::join_all(batch.into_iter().map(|(i, mut ws)| {
            let tx = tx.clone();
            async move {
                let subscribe =
                    json!({"action": "subscribe", "channel": "bench", "params": {"n": "0"}});
                subscribe_one(i, &mut ws, &subscribe, &tx).await?;
                anyhow::Ok((i, ws))
            }
        }))
        .await;
        for client in subscribed {
            let (i, ws) = client?;
            spawn_reader(i, ws, tx.clone());
        }
    }
    let subscribe_secs = subscribing.elapsed().as_secs_f64();
    collect(&mut inbox, subscribers, "the first snapshot", |m| {
        (m["type"] == "snapshot").then_some(0)
    })
    .await?;

    // Warm the publish client's connection (a publish to a channel nobody holds).
    let publisher = reqwest::Client::new();
    publisher
        .post(&stack.publish_url)
        .json(&json!({"items": [{"channel": "warm-up", "formats": {"ws-message": {"content": "{}"}}}]}))
        .send()
        .await?;
    let measuring = Instant::now();
    let (mut restream, mut direct) = (Vec::new(), Vec::new());
    // Each path's round: when it started, its latencies, and the WOH events (keep-alives,
    // pongs) the backend handled meanwhile, so a slow round can be told apart.
    let mut round_details = Vec::new();
    // The size of restream's last event; round 0 measures restream first, so it is set before
    // the first direct publish.
    let event_size = std::cell::Cell::new(0);
    for round in 0..rounds {
        for path in [round % 2, 1 - round % 2] {
            let started_s = measuring.elapsed().as_secs_f64();
            let woh_before = woh_events(&stack).await;
            let latencies = if path == 0 {
                let id = format!("0-g{}", stack.upstream.bump());
                collect(&mut inbox, subscribers, "an upstream change", |m| {
                    let ours = m["type"] == "new" && m["item"]["id"] == id.as_str();
                    if ours {
                        event_size.set(m.to_string().len());
                    }
                    ours.then(|| m["item"]["stamp_us"].as_u64()).flatten()
                })
                .await?
            } else {
                publish_direct(&publisher, &stack, round, event_size.get()).await?;
                collect(&mut inbox, subscribers, "a direct publish", |m| {
                    (m["type"] == "direct" && m["round"] == round)
                        .then(|| m["stamp_us"].as_u64())
                        .flatten()
                })
                .await?
            };
            let woh = woh_events(&stack).await - woh_before;
            let ms = |p: f64| (percentile(&latencies, p) * 10.0).round() / 10.0;
            let name = ["restream", "direct"][path];
            round_details.push(json!({
                "round": round,
                "path": name,
                "started_s": (started_s * 10.0).round() / 10.0,
                "p50_ms": ms(50.0),
                "p99_ms": ms(99.0),
                "woh_events": woh,
            }));
            [&mut restream, &mut direct][path].extend(latencies);
        }
    }
    // Each round's two paths ran back to back, under about the same background load (Pushpin's
    // keep-alives come in waves): the median over rounds of restream p99 / direct p99.
    let mut paired: Vec<f64> = round_details
        .chunks(2)
        .filter_map(|pair| {
            let p99 = |path: &str| pair.iter().find(|r| r["path"] == path)?["p99_ms"].as_f64();
            Some(p99("restream")? / p99("direct")?)
        })
        .collect();
    paired.sort_by(f64::total_cmp);
    let paired_median = paired.get(paired.len() / 2).copied().unwrap_or(0.0);
    let measured = measuring.elapsed();
    let calls = stack.upstream.requests_since("/feed/0.json", measuring);
    let ratio = |p: f64| {
        let d = percentile(&direct, p);
        if d > 0.0 {
            ((percentile(&restream, p) / d) * 100.0).round() / 100.0
        } else {
            0.0
        }
    };
    Ok(json!({
        "scenario": "fanout",
        "subscribers": subscribers,
        "rounds": rounds,
        "poll_interval_secs": INTERVAL,
        "connect_secs": (connect_secs * 100.0).round() / 100.0,
        "subscribe_secs": (subscribe_secs * 100.0).round() / 100.0,
        "max_upstream_calls_per_interval": max_calls_within(&calls, crate::measure::duplicate_window(INTERVAL)),
        "upstream_calls_per_interval": ((calls.len() as f64 / (measured.as_secs_f64() / INTERVAL)) * 100.0).round() / 100.0,
        "restream_latency_ms": summary_ms(&restream),
        "direct_publish_latency_ms": summary_ms(&direct),
        "overhead_ratio_p50": ratio(50.0),
        "overhead_ratio_p99": ratio(99.0),
        "overhead_ratio_p99_paired_median": (paired_median * 100.0).round() / 100.0,
        "rounds_detail": round_details,
        "machine": crate::measure::machine(),
    }))
}
