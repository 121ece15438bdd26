//! Scenario 4: many active channels (20 per connection by default, the default per-connection
//! limit; `--per-connection` raises both) of one declarative fetcher. Measured over `seconds` once all are subscribed: the backend's
//! RSS and CPU (% of one core), and scheduler drift — per channel, the gap between two
//! consecutive upstream calls minus the poll interval, as seen by the fake upstream. The
//! upstream keeps connections open between polls, as APIs do (`--close-connections`: one TCP
//! connection per poll, as the scenario ran before).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::measure::{cpu_time, max_calls_within, rss_bytes, summary_ms};
use crate::stack::{self, Behind, Options};
use restream_testkit::clients::ws::{connect_many, next_json, send_json, Ws};

/// Connections subscribing at once.
const BATCH: usize = 10;

/// Subscribes `ws` to channels `bench?n=…` for every n in `ns` and waits until each is confirmed.
async fn subscribe_all(mut ws: Ws, ns: Vec<usize>) -> anyhow::Result<Ws> {
    for n in &ns {
        send_json(
            &mut ws,
            &json!({"action": "subscribe", "channel": "bench", "params": {"n": n.to_string()}}),
        )
        .await?;
    }
    let mut subscribed = 0;
    while subscribed < ns.len() {
        let m = next_json(&mut ws, Duration::from_secs(60))
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed while subscribing"))?;
        anyhow::ensure!(m["type"] != "error", "subscribe failed: {m}");
        subscribed += usize::from(m["type"] == "subscribed");
    }
    Ok(ws)
}

/// How the scenario runs: `restream-bench scale --help`.
pub struct Run {
    pub channels: usize,
    pub interval: f64,
    pub seconds: f64,
    pub close_connections: bool,
    pub batch_pause: Duration,
    /// Channels each client connection subscribes to (the backend's per-connection limit is
    /// set to it).
    pub per_connection: usize,
}

pub async fn run(run: Run) -> anyhow::Result<Value> {
    let Run {
        channels,
        interval,
        seconds,
        close_connections,
        batch_pause,
        per_connection,
    } = run;
    let limit = std::num::NonZeroUsize::new(per_connection)
        .ok_or_else(|| anyhow::anyhow!("--per-connection must be at least 1"))?;
    let options = Options {
        behind: Behind::Restream,
        interval,
        message_rate: 50_000,
        auth: false,
        push: false,
        client_buffer_size: None,
        history: None,
        upstream_keep_alive: !close_connections,
    };
    let stack = stack::start_customized(options, |settings, _| {
        settings.server.max_subscriptions_per_connection = limit;
        Ok(())
    })
    .await?;
    let connections = channels.div_ceil(per_connection);
    let subscribing = Instant::now();
    let mut opened = 0;
    while opened < connections {
        // One batch of connections opening and subscribing at a time: each subscribe is a WOH
        // request through Pushpin, whose proxy resets connections once about 100 requests are
        // queued toward the backend (all 500 connections at once overran it on some machines).
        // Opening them batch by batch also spreads their keep-alives: 5,000 connections opened
        // in the same second send 5,000 keep-alive requests in the same second, 20 s later.
        let batch = BATCH.min(connections - opened);
        let clients = connect_many(&stack.ws_url, batch).await?;
        let subscribed =
            futures_util::future::join_all(clients.into_iter().enumerate().map(|(k, ws)| {
                let i = opened + k;
                let ns: Vec<usize> =
                    (i * per_connection..((i + 1) * per_connection).min(channels)).collect();
                subscribe_all(ws, ns)
            }))
            .await;
        for ws in subscribed {
            let mut ws = ws?;
            // Keep reading so the connection never backs up.
            tokio::spawn(async move {
                while let Ok(Some(_)) = next_json(&mut ws, Duration::from_secs(3600)).await {}
            });
        }
        opened += batch;
        tokio::time::sleep(batch_pause).await;
    }
    let subscribe_secs = subscribing.elapsed().as_secs_f64();

    let pid = stack
        .backend
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the backend is not running"))?;
    let started = Instant::now();
    let cpu_before = cpu_time(pid).unwrap_or_default();
    let mut rss_max = 0;
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        rss_max = rss_max.max(rss_bytes(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time(pid).unwrap_or_default().saturating_sub(cpu_before);
    let rss_end = rss_bytes(pid).unwrap_or(0);

    let requests = stack.upstream.all_requests();
    let window = crate::measure::duplicate_window(interval);
    let mut drift_ms = Vec::new();
    let mut most = 0;
    for times in requests.values() {
        let mut t = times.clone();
        t.sort();
        most = most.max(max_calls_within(&t, window));

        drift_ms.extend(
            t.windows(2)
                .map(|w| ((w[1] - w[0]).as_secs_f64() - interval) * 1000.0),
        );
    }
    let calls_in_window: usize = requests
        .values()
        .flatten()
        .filter(|t| **t >= started)
        .count();
    let mb = |b: u64| ((b as f64 / 1_048_576.0) * 10.0).round() / 10.0;
    Ok(json!({
        "scenario": "scale",
        "channels": channels,
        "channels_polled": requests.len(),
        "upstream_keeps_connections": !close_connections,
        "connections": connections,
        "channels_per_connection": per_connection,
        "poll_interval_secs": interval,
        "measured_secs": (elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "subscribe_secs": (subscribe_secs * 100.0).round() / 100.0,
        "subscribe_batch_pause_ms": batch_pause.as_millis() as u64,
        "backend_rss_mb": mb(rss_end),
        "backend_rss_max_mb": mb(rss_max),
        "backend_cpu_percent_of_one_core": ((cpu.as_secs_f64() / elapsed.as_secs_f64()) * 1000.0).round() / 10.0,
        "upstream_calls_per_sec": ((calls_in_window as f64 / elapsed.as_secs_f64()) * 10.0).round() / 10.0,
        "upstream_calls_per_channel_per_interval": ((calls_in_window as f64 / channels as f64 / (elapsed.as_secs_f64() / interval)) * 100.0).round() / 100.0,
        "max_upstream_calls_per_interval": most,
        "scheduler_drift_ms": summary_ms(&drift_ms),
        "machine": crate::measure::machine(),
    }))
}
