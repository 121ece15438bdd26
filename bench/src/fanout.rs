//! Scenarios 1 and 2: `n` WebSocket subscribers on one channel.
//!
//! Each round changes the upstream once and times, for every subscriber, the path from the
//! upstream serving the change (the item's `stamp_us`) to the subscriber receiving its `new`
//! event; then publishes one message straight to the same Pushpin over HTTP and times that to
//! every subscriber. The overhead ratio divides the first by the second (p50 and p99), so
//! Pushpin's own fan-out cost, common to both, cancels out. Rounds alternate which goes first.
//!
//! Both paths start from an equally quiet machine, at the same point of the poll cycle: each
//! waits for the channel's next poll; restream's change is then made, and served by the poll
//! after, one interval later; the direct message is published one interval later. (Published
//! straight after the previous fan-out, into warm caches and busy cores, the direct message
//! used to reach its first subscriber about 4 ms sooner and its median one about 8 ms sooner
//! than after a pause, so restream looked 10–15 % slower than it is.)

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::measure::{max_calls_within, now_us, percentile, summary_ms};
use crate::stack::{self, Behind, Options, Stack};
use restream_testkit::clients::http::{scrape, value};
use restream_testkit::clients::ws::{connect_many, next_json, send_json};

const INTERVAL: f64 = 1.0;
const CHANNEL_ID: &str = "bench?n=0";
/// The upstream path the channel polls.
const FEED: &str = "/feed/0.json";

/// The type of the message a client's reader sends when its connection ends.
const CLOSED: &str = "_closed";

type Inbox = mpsc::UnboundedReceiver<(usize, u64, Value)>;

/// Latencies (ms) of the first message per client that `pick` maps to a stamp, until every one
/// of `n` clients had one.
async fn collect(
    inbox: &mut Inbox,
    n: usize,
    what: &str,
    mut pick: impl FnMut(&Value) -> Option<u64>,
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
/// same two formats, so both paths hand Pushpin the same work. Returns the stamp.
async fn publish_direct(
    client: &reqwest::Client,
    stack: &Stack,
    round: usize,
    size: usize,
) -> anyhow::Result<u64> {
    let stamp_us = now_us();
    let mut message = json!({"type": "direct", "round": round, "stamp_us": stamp_us, "pad": ""});
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
    Ok(stamp_us)
}

/// Returns once the channel has polled the upstream again; an error if it has not within a
/// minute (the poller stopped or is backing off).
async fn next_poll(stack: &Stack) -> anyhow::Result<()> {
    let polls = || stack.upstream.requests(FEED).len();
    let before = polls();
    let deadline = Instant::now() + Duration::from_secs(60);
    while polls() == before {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no poll of the channel for a minute (BENCH_KEEP_LOGS=DIR keeps the backend's log)"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// An upstream change, polled, committed and published by restream.
    Restream,
    /// A message published straight to Pushpin.
    Direct,
}

/// Measures one path's round at a time, on one subscribed stack.
struct Paths<'a> {
    stack: &'a Stack,
    publisher: reqwest::Client,
    inbox: Inbox,
    subscribers: usize,
    /// The size of restream's last event, for the direct message's padding (the first round
    /// measures restream first).
    event_size: usize,
    /// When the previous path's round ended (its last subscriber had its message).
    quiet_since_us: u64,
}

impl Paths<'_> {
    /// Both paths start at the channel's next poll and hand out their change or message one
    /// interval later. Returns the latencies (ms) and the round's summary.
    async fn measure(&mut self, path: Path, round: usize) -> anyhow::Result<(Vec<f64>, Value)> {
        let stack = self.stack;
        next_poll(stack).await?;
        let woh_before = woh_events(stack).await;
        // When the change or message was handed out: the upstream's stamp, the direct publish's.
        let mut stamp = 0;
        let latencies = match path {
            Path::Restream => {
                let id = format!("0-g{}", stack.upstream.bump());
                let mut size = self.event_size;
                let latencies = collect(
                    &mut self.inbox,
                    self.subscribers,
                    "an upstream change",
                    |m| {
                        let ours = m["type"] == "new" && m["item"]["id"] == id.as_str();
                        let at = ours.then(|| m["item"]["stamp_us"].as_u64()).flatten();
                        if let Some(at) = at {
                            (size, stamp) = (m.to_string().len(), at);
                        }
                        at
                    },
                )
                .await?;
                self.event_size = size;
                latencies
            }
            Path::Direct => {
                tokio::time::sleep(Duration::from_secs_f64(INTERVAL)).await;
                stamp = publish_direct(&self.publisher, stack, round, self.event_size).await?;
                collect(&mut self.inbox, self.subscribers, "a direct publish", |m| {
                    (m["type"] == "direct" && m["round"] == round)
                        .then(|| m["stamp_us"].as_u64())
                        .flatten()
                })
                .await?
            }
        };
        let quiet_ms = stamp.saturating_sub(self.quiet_since_us) / 1000;
        self.quiet_since_us = now_us();
        let woh = woh_events(stack).await - woh_before;
        let ms = |p: f64| (percentile(&latencies, p) * 10.0).round() / 10.0;
        let detail = json!({
            "path": match path { Path::Restream => "restream", Path::Direct => "direct" },
            "quiet_ms": quiet_ms,
            "first_ms": ms(0.0),
            "p50_ms": ms(50.0),
            "p99_ms": ms(99.0),
            "woh_events": woh,
        });
        Ok((latencies, detail))
    }
}

/// `rounds` measured rounds of `subscribers` on one channel, after unmeasured ones until
/// `warm_up` has passed since the last subscribe.
pub async fn run(subscribers: usize, rounds: usize, warm_up: Duration) -> anyhow::Result<Value> {
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
    let mut paths = Paths {
        stack: &stack,
        publisher,
        inbox,
        subscribers,
        event_size: 0,
        quiet_since_us: now_us(),
    };
    // Unmeasured rounds first, until the keep-alives that the subscribe burst set off together
    // have passed (`warm_up`): a wave of them takes the cores for a round or two, from
    // whichever path that happens to be (later keep-alives are spread out, and fall on both
    // paths alike). The rounds keep the clients busy meanwhile, so Pushpin's pings to idle
    // clients do not make a wave of pongs instead.
    let settled = subscribing + Duration::from_secs_f64(subscribe_secs) + warm_up;
    let mut warm_up_rounds = 0;
    while Instant::now() < settled {
        for path in [Path::Restream, Path::Direct] {
            paths.measure(path, warm_up_rounds).await?;
        }
        warm_up_rounds += 1;
    }
    let measuring = Instant::now();
    let (mut restream, mut direct) = (Vec::new(), Vec::new());
    // Each path's round: when it started, how it went, and the WOH events (keep-alives, pongs)
    // the backend handled meanwhile, so a slow round can be told apart.
    let mut round_details = Vec::new();
    for measured in 0..rounds {
        let order = match measured % 2 {
            0 => [Path::Restream, Path::Direct],
            _ => [Path::Direct, Path::Restream],
        };
        for path in order {
            let started_s = measuring.elapsed().as_secs_f64();
            let (latencies, mut detail) = paths.measure(path, warm_up_rounds + measured).await?;
            detail["round"] = json!(measured);
            detail["started_s"] = json!((started_s * 10.0).round() / 10.0);
            round_details.push(detail);
            match path {
                Path::Restream => restream.extend(latencies),
                Path::Direct => direct.extend(latencies),
            }
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
    let calls = stack.upstream.requests_since(FEED, measuring);
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
        "warm_up_rounds": warm_up_rounds,
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
