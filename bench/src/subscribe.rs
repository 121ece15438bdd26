//! Scenario 3: subscribe/unsubscribe messages per second through Pushpin, with restream behind
//! it and with the no-op responder behind it, in the same run (alternating, `rounds` times
//! each: a few seconds of a shared 2-core machine vary by several percent). Each
//! connection sends `subscribe`, waits for `subscribed`, sends `unsubscribe`, waits for
//! `unsubscribed`, and repeats; the rate counts answered messages.
//!
//! Restream runs twice per round: with fresh subscribes, each owed the channel's snapshot
//! (which Pushpin must then deliver too), and with subscribes that resume at the channel's
//! current `seq` (`since`), which are owed nothing: the same WOH traffic as the no-op responder,
//! so that ratio isolates the backend's own cost. A third restream run makes `bench` a token
//! channel and connects with `?token=`: the cost of subscriber authentication (issue 17).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::stack::{self, Behind, Options};
use restream_testkit::clients::ws::{connect, connect_many, next_json, send_json, Ws};

/// Sends `action` (resuming after `since` if set) and waits for the message of type `reply`,
/// which it returns (snapshots and other messages are skipped).
async fn ask(ws: &mut Ws, action: &str, since: Option<u64>, reply: &str) -> anyhow::Result<Value> {
    let mut message = json!({"action": action, "channel": "bench", "params": {"n": "0"}});
    if let Some(seq) = since {
        message["since"] = json!(seq);
    }
    send_json(ws, &message).await?;
    wait_for(ws, action, reply).await
}

/// The next message of type `reply` (others are skipped; an error fails `action`).
async fn wait_for(ws: &mut Ws, action: &str, reply: &str) -> anyhow::Result<Value> {
    loop {
        let m = next_json(ws, Duration::from_secs(30))
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed while waiting for {reply}"))?;
        if m["type"] == reply {
            return Ok(m);
        }
        anyhow::ensure!(m["type"] != "error", "{action} failed: {m}");
    }
}

/// What each subscribe asks of the backend.
#[derive(Clone, Copy)]
enum Subscribe {
    /// A new subscriber, owed the channel's snapshot.
    Fresh,
    /// A subscriber resuming at the channel's current `seq`, owed nothing.
    UpToDate,
    /// A new subscriber of a channel that needs a token (given on the WebSocket URL, so
    /// verified on every WOH request), owed the snapshot.
    FreshWithToken,
}

/// A client whose connection Pushpin resets reconnects and goes on, this many times at most;
/// the resets are reported beside the rate.
const MAX_RESETS_PER_CLIENT: u32 = 3;

/// Answered messages per second over `seconds` with `connections` clients, and how many
/// connections were reset on the way.
async fn rate(
    behind: Behind,
    subscribe: Subscribe,
    connections: usize,
    seconds: f64,
) -> anyhow::Result<(f64, u32)> {
    let stack = stack::start(Options {
        behind,
        interval: 60.0,
        message_rate: 50_000,
        auth: matches!(subscribe, Subscribe::FreshWithToken),
        push: false,
        client_buffer_size: None,
        history: None,
        upstream_keep_alive: false,
    })
    .await?;
    let mut clients = connect_many(&stack.ws_url, connections).await?;
    // Subscribes to a live channel, not a channel's start: before the clock starts, one
    // subscriber waits for the snapshot of the first poll (the interval is a minute: the only
    // one), which sets the seq. (Started by the measured burst itself, the first snapshot
    // waits for the burst to settle, up to 2 s of a 5-second turn, and then answers
    // every subscriber held meanwhile: a channel's start-up, which the no-op side never has.)
    let seq = match behind {
        Behind::NullResponder => None, // Nothing to start, and no snapshot.
        Behind::Restream => {
            let ws = &mut clients[0];
            ask(ws, "subscribe", None, "subscribed").await?;
            let snapshot = wait_for(ws, "subscribe", "snapshot").await;
            let seq = snapshot.ok().and_then(|m| m["seq"].as_u64()).unwrap_or(0);
            ask(ws, "unsubscribe", None, "unsubscribed").await?;
            anyhow::ensure!(seq > 0, "no snapshot with a seq");
            Some(seq)
        }
    };
    let since = match subscribe {
        Subscribe::Fresh | Subscribe::FreshWithToken => None,
        Subscribe::UpToDate => seq,
    };
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            let url = stack.ws_url.clone();
            tokio::spawn(async move {
                let (mut answered, mut resets) = (0u64, 0u32);
                while Instant::now() < until {
                    let round = async {
                        ask(&mut ws, "subscribe", since, "subscribed").await?;
                        ask(&mut ws, "unsubscribe", None, "unsubscribed").await
                    };
                    match round.await {
                        Ok(_) => answered += 2,
                        Err(e) if resets < MAX_RESETS_PER_CLIENT => {
                            eprintln!("subscribe: a connection failed ({e}); reconnecting");
                            resets += 1;
                            ws = connect(&url).await?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                anyhow::Ok((answered, resets))
            })
        })
        .collect();
    let (mut total, mut resets) = (0, 0);
    for t in tasks {
        let (answered, reset) = t.await??;
        total += answered;
        resets += reset;
    }
    Ok((total as f64 / started.elapsed().as_secs_f64(), resets))
}

/// Each side for `seconds` in all, in `rounds` turns.
pub async fn run(connections: usize, seconds: f64, rounds: usize) -> anyhow::Result<Value> {
    anyhow::ensure!(rounds > 0, "at least one round");
    let turn = seconds / rounds as f64;
    // Each round's rates, in the order the sides run: `FRESH`, `NULL`, `UP_TO_DATE`, `TOKEN`.
    const FRESH: usize = 0;
    const NULL: usize = 1;
    const UP_TO_DATE: usize = 2;
    const TOKEN: usize = 3;
    let sides = [
        (Behind::Restream, Subscribe::Fresh),
        (Behind::NullResponder, Subscribe::Fresh),
        (Behind::Restream, Subscribe::UpToDate),
        (Behind::Restream, Subscribe::FreshWithToken),
    ];
    let (mut per_round, mut our_resets, mut null_resets) = (Vec::new(), 0, 0);
    for _ in 0..rounds {
        let mut rates = [0.0; 4];
        for (rate_, (behind, subscribe)) in rates.iter_mut().zip(sides) {
            let resets;
            (*rate_, resets) = rate(behind, subscribe, connections, turn).await?;
            match behind {
                Behind::Restream => our_resets += resets,
                Behind::NullResponder => null_resets += resets,
            }
        }
        per_round.push(rates);
    }
    let r = |v: f64| (v * 10.0).round() / 10.0;
    let two = |v: f64| (v * 100.0).round() / 100.0;
    // Side `i` over the no-op responder: pooled (mean rates over all rounds), and the median
    // over rounds of each round's own ratio (its sides ran back to back, on about the same
    // machine: a slow spell of a shared VM moves one round, not the median).
    let mean = |i: usize| per_round.iter().map(|round| round[i]).sum::<f64>() / rounds as f64;
    let null = mean(NULL);
    let ratio = |i: usize| if null > 0.0 { two(mean(i) / null) } else { 0.0 };
    let paired_median = |i: usize| {
        let ratios: Vec<f64> = per_round
            .iter()
            .filter(|round| round[NULL] > 0.0)
            .map(|round| round[i] / round[NULL])
            .collect();
        two(crate::measure::percentile(&ratios, 50.0))
    };
    let rounds_detail: Vec<Value> = per_round
        .iter()
        .map(|round| {
            json!({"restream": r(round[FRESH]), "null_responder": r(round[NULL]),
                   "restream_up_to_date": r(round[UP_TO_DATE]),
                   "restream_with_token": r(round[TOKEN])})
        })
        .collect();
    Ok(json!({
        "scenario": "subscribe",
        "connections": connections,
        "seconds_each": seconds,
        "rounds": rounds,
        "restream_msgs_per_sec": r(mean(FRESH)),
        "restream_up_to_date_msgs_per_sec": r(mean(UP_TO_DATE)),
        "restream_with_token_msgs_per_sec": r(mean(TOKEN)),
        "null_responder_msgs_per_sec": r(null),
        "ratio": ratio(FRESH),
        "ratio_up_to_date": ratio(UP_TO_DATE),
        "ratio_with_token": ratio(TOKEN),
        "ratio_paired_median": paired_median(FRESH),
        "ratio_up_to_date_paired_median": paired_median(UP_TO_DATE),
        "ratio_with_token_paired_median": paired_median(TOKEN),
        "rounds_detail": rounds_detail,
        "connection_resets": {"restream": our_resets, "null_responder": null_resets},
        "machine": crate::measure::machine(),
    }))
}
