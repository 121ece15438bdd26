//! Scenario 3: subscribe/unsubscribe messages per second through Pushpin, with restream behind
//! it and with the no-op responder behind it, in the same run (alternating, twice each). Each
//! connection sends `subscribe`, waits for `subscribed`, sends `unsubscribe`, waits for
//! `unsubscribed`, and repeats; the rate counts answered messages.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::clients::{connect_many, next_json, send_json, Ws};
use crate::stack::{Behind, Options, Stack};

/// Sends `action` and waits for its reply type (snapshots and other messages are skipped).
async fn ask(ws: &mut Ws, action: &str, reply: &str) -> anyhow::Result<()> {
    send_json(
        ws,
        &json!({"action": action, "channel": "bench", "params": {"n": "0"}}),
    )
    .await?;
    loop {
        let m = next_json(ws, Duration::from_secs(30))
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed while waiting for {reply}"))?;
        if m["type"] == reply {
            return Ok(());
        }
        anyhow::ensure!(m["type"] != "error", "{action} failed: {m}");
    }
}

/// Answered messages per second over `seconds` with `connections` clients.
async fn rate(behind: Behind, connections: usize, seconds: f64) -> anyhow::Result<f64> {
    let stack = Stack::start(Options {
        behind,
        interval: 60.0,
        message_rate: 50_000,
    })
    .await?;
    let clients = connect_many(&stack.ws_url, connections).await?;
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut answered = 0u64;
                while Instant::now() < until {
                    ask(&mut ws, "subscribe", "subscribed").await?;
                    ask(&mut ws, "unsubscribe", "unsubscribed").await?;
                    answered += 2;
                }
                anyhow::Ok(answered)
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(connections: usize, seconds: f64) -> anyhow::Result<Value> {
    let half = seconds / 2.0;
    let (mut ours, mut null) = (0.0, 0.0);
    for _ in 0..2 {
        ours += rate(Behind::Restream, connections, half).await? / 2.0;
        null += rate(Behind::NullResponder, connections, half).await? / 2.0;
    }
    let r = |v: f64| (v * 10.0).round() / 10.0;
    Ok(json!({
        "scenario": "subscribe",
        "connections": connections,
        "seconds_each": seconds,
        "restream_msgs_per_sec": r(ours),
        "null_responder_msgs_per_sec": r(null),
        "ratio": if null > 0.0 { (ours / null * 100.0).round() / 100.0 } else { 0.0 },
        "machine": crate::measure::machine(),
    }))
}
