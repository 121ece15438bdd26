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

use crate::clients::{connect_many, next_json, send_json};
use crate::measure::{max_calls_within, now_us, percentile, summary_ms};
use crate::stack::{Behind, Options, Stack};

const INTERVAL: f64 = 1.0;
const CHANNEL_ID: &str = "bench?n=0";

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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while out.len() < n {
        let Ok(Some((client, received_us, message))) =
            tokio::time::timeout_at(deadline, inbox.recv()).await
        else {
            anyhow::bail!("{what}: only {} of {n} subscribers received it", out.len());
        };
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
/// just before it is sent.
async fn publish_direct(
    client: &reqwest::Client,
    stack: &Stack,
    round: usize,
) -> anyhow::Result<()> {
    let content = json!({"type": "direct", "round": round, "stamp_us": now_us()}).to_string();
    let body = json!({"items": [{"channel": CHANNEL_ID, "formats": {"ws-message": {"content": content}}}]});
    client
        .post(&stack.publish_url)
        .json(&body)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

pub async fn run(subscribers: usize, rounds: usize) -> anyhow::Result<Value> {
    let stack = Stack::start(Options {
        behind: Behind::Restream,
        interval: INTERVAL,
        message_rate: 50_000,
    })
    .await?;
    let opened = Instant::now();
    let clients = connect_many(&stack.ws_url, subscribers).await?;
    let connect_secs = opened.elapsed().as_secs_f64();
    let (tx, mut inbox) = mpsc::unbounded_channel();
    for (i, mut ws) in clients.into_iter().enumerate() {
        // Subscribes are paced like opens: in a burst of hundreds, Pushpin applies some GRIP
        // subscriptions later than the backend's snapshot delay assumes (bench/RESULTS.md).
        if i > 0 && i % crate::clients::BATCH == 0 && std::env::var_os("BENCH_BURST").is_none() {
            tokio::time::sleep(crate::clients::PAUSE).await;
        }
        send_json(
            &mut ws,
            &json!({"action": "subscribe", "channel": "bench", "params": {"n": "0"}}),
        )
        .await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(m)) = next_json(&mut ws, Duration::from_secs(3600)).await {
                if tx.send((i, now_us(), m)).is_err() {
                    return;
                }
            }
        });
    }
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
    for round in 0..rounds {
        for path in [round % 2, 1 - round % 2] {
            if path == 0 {
                let id = format!("0-g{}", stack.upstream.bump());
                restream.extend(
                    collect(&mut inbox, subscribers, "an upstream change", |m| {
                        (m["type"] == "new" && m["item"]["id"] == id.as_str())
                            .then(|| m["item"]["stamp_us"].as_u64())
                            .flatten()
                    })
                    .await?,
                );
            } else {
                publish_direct(&publisher, &stack, round).await?;
                direct.extend(
                    collect(&mut inbox, subscribers, "a direct publish", |m| {
                        (m["type"] == "direct" && m["round"] == round)
                            .then(|| m["stamp_us"].as_u64())
                            .flatten()
                    })
                    .await?,
                );
            }
        }
    }
    let measured = measuring.elapsed();
    let calls: Vec<Instant> = stack
        .upstream
        .requests("/feed/0.json")
        .into_iter()
        .filter(|t| *t >= measuring)
        .collect();
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
        "max_upstream_calls_per_interval": max_calls_within(&calls, crate::measure::duplicate_window(INTERVAL)),
        "upstream_calls_per_interval": ((calls.len() as f64 / (measured.as_secs_f64() / INTERVAL)) * 100.0).round() / 100.0,
        "restream_latency_ms": summary_ms(&restream),
        "direct_publish_latency_ms": summary_ms(&direct),
        "overhead_ratio_p50": ratio(50.0),
        "overhead_ratio_p99": ratio(99.0),
        "machine": crate::measure::machine(),
    }))
}
