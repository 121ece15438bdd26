//! Scenario 8: reading history. `channels` channels of a push channel (`bench-history?n=…`)
//! hold `events` events each, seeded straight into the redb file (`history_seed`); the real
//! backend serves that store behind a real Pushpin, and one client reads pages through
//! Pushpin's public port, one request at a time:
//!
//! - coalesced, `GET /history?channel=…` naming every channel, `limit` per page: the first
//!   page (`requests` times), the following pages by cursor (`requests` pages in a row), and
//!   first pages `from` a time in the middle of the history (binary search per channel);
//! - per channel, `GET /channels/bench-history/history?n=…`: first pages (the channel
//!   rotating) and following pages by cursor, for comparison;
//! - `GET /healthz` through the same Pushpin: the floor (a request that reads nothing).
//!
//! Every page is checked: full pages while `more`, events in (time, channel, seq) order
//! across pages, none twice. With `walk_all` the coalesced walk goes on to the end and must
//! return every seeded event exactly once (the smoke run).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use crate::history_seed::{self, Seeded};
use crate::measure::summary_ms;
use crate::stack::{self, Behind, HistorySeed, Options, HISTORY_CHANNEL};

pub struct Config {
    pub channels: usize,
    /// Events per channel.
    pub events: u64,
    /// Requests per measurement (first pages; pages walked by cursor).
    pub requests: usize,
    /// Events per page.
    pub limit: usize,
    /// Walk the coalesced history to its end and check it is the whole seeded history.
    pub walk_all: bool,
}

/// One history page as the API answers it.
struct Page {
    events: Vec<Value>,
    cursor: String,
    more: bool,
    bytes: usize,
}

struct Reader {
    client: reqwest::Client,
    base: String,
    limit: usize,
}

impl Reader {
    /// One request, timed (ms), its answer checked for shape and size.
    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<(f64, Page)> {
        let started = Instant::now();
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            status == 200,
            "GET {path}: {status} {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        let v: Value = serde_json::from_slice(&body).context("a history page is JSON")?;
        let page = Page {
            events: v["events"].as_array().cloned().unwrap_or_default(),
            cursor: v["cursor"].as_str().unwrap_or_default().to_string(),
            more: v["more"].as_bool().unwrap_or(false),
            bytes: body.len(),
        };
        anyhow::ensure!(!page.cursor.is_empty(), "GET {path}: no cursor");
        anyhow::ensure!(
            page.events.len() == self.limit || !page.more,
            "GET {path}: a page of {} events with more to come",
            page.events.len()
        );
        Ok((ms, page))
    }

    fn coalesced_query(&self, seeded: &Seeded) -> Vec<(&'static str, String)> {
        let mut q: Vec<(&str, String)> = seeded
            .channels
            .iter()
            .map(|id| ("channel", id.to_string()))
            .collect();
        q.push(("limit", self.limit.to_string()));
        q
    }
}

/// Where an event sorts in a coalesced page, and what identifies it.
fn key(event: &Value) -> anyhow::Result<(String, String, u64)> {
    let time = event["time"].as_str().context("an event has a time")?;
    let channel = match event["params"]["n"].as_str() {
        Some(n) => format!("{}?n={n}", event["channel"].as_str().unwrap_or_default()),
        None => event["channel"].as_str().unwrap_or_default().to_string(),
    };
    let seq = event["seq"].as_u64().context("an event has a seq")?;
    Ok((time.to_string(), channel, seq))
}

/// Checks order (by `key`, or by seq alone for one channel) and uniqueness over pages.
#[derive(Default)]
struct Walk {
    last: Option<(String, String, u64)>,
    seen: HashSet<(String, u64)>,
}

impl Walk {
    fn check(&mut self, events: &[Value]) -> anyhow::Result<()> {
        for e in events {
            let k = key(e)?;
            if let Some(last) = &self.last {
                anyhow::ensure!(*last < k, "out of order: {last:?} then {k:?}");
            }
            anyhow::ensure!(self.seen.insert((k.1.clone(), k.2)), "twice: {k:?}");
            self.last = Some(k);
        }
        Ok(())
    }
}

pub async fn run(config: Config) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("history.redb");
    let seeding = Instant::now();
    let seeded = history_seed::seed(&store, config.channels, config.events).await?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    let store_bytes = std::fs::metadata(&store)?.len();
    let stack = stack::start(Options {
        behind: Behind::Restream,
        interval: 60.0,
        message_rate: 50_000,
        auth: false,
        push: false,
        client_buffer_size: None,
        history: Some(HistorySeed {
            store,
            max_events: config.events,
        }),
        upstream_keep_alive: false,
    })
    .await?;
    let reader = Reader {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        base: stack.http_url.clone(),
        limit: config.limit,
    };
    let result = match served_seq(&reader).await {
        Ok(seq) if seq == config.events => measure(&config, &seeded, &reader).await,
        Ok(seq) => Err(anyhow::anyhow!(
            "the backend serves seq {seq} for the seeded channel, not {}",
            config.events
        )),
        Err(e) => Err(e),
    };
    drop(stack);
    let result = result?;
    Ok(json!({
        "scenario": "history",
        "channels": config.channels,
        "events_per_channel": config.events,
        "limit": config.limit,
        "requests": config.requests,
        "seed_secs": (seed_secs * 100.0).round() / 100.0,
        "store_mib": (store_bytes as f64 / 1_048_576.0 * 10.0).round() / 10.0,
        "results": result,
        "machine": crate::measure::machine(),
    }))
}

/// The seq the backend reports for the first seeded channel (its status, from the store).
async fn served_seq(reader: &Reader) -> anyhow::Result<u64> {
    let url = format!("{}/channels/{HISTORY_CHANNEL}?n=0", reader.base);
    let status: Value = reader.client.get(url).send().await?.json().await?;
    status["seq"]
        .as_u64()
        .with_context(|| format!("no seq in the channel's status: {status}"))
}

async fn measure(config: &Config, seeded: &Seeded, reader: &Reader) -> anyhow::Result<Value> {
    let coalesced = reader.coalesced_query(seeded);
    let total = config.channels as u64 * config.events;

    // Coalesced first pages: the oldest `limit` events of all channels together.
    let mut first = Vec::new();
    let mut bytes = 0;
    for _ in 0..config.requests {
        let (ms, page) = reader.get("/history", &coalesced).await?;
        Walk::default().check(&page.events)?;
        anyhow::ensure!(
            page.more == (total > config.limit as u64),
            "more on the first page"
        );
        bytes = page.bytes;
        first.push(ms);
    }

    // Coalesced pages by cursor, each after the last.
    let mut next = Vec::new();
    let (mut walk, mut cursor, mut read) = (Walk::default(), None::<String>, 0u64);
    loop {
        let mut q = coalesced.clone();
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let (ms, page) = reader.get("/history", &q).await?;
        walk.check(&page.events)?;
        read += page.events.len() as u64;
        if cursor.is_some() {
            next.push(ms);
        }
        cursor = Some(page.cursor);
        let done = !page.more || (!config.walk_all && next.len() >= config.requests);
        if done {
            anyhow::ensure!(
                !config.walk_all || read == total,
                "the coalesced walk read {read} of {total} events"
            );
            break;
        }
    }

    // Coalesced first pages from a time in the middle (a binary search in each channel).
    let mut from = Vec::new();
    for i in 0..config.requests {
        let t = seeded.middle_ms() + (i as u64 % 97) * 1000;
        let mut q = coalesced.clone();
        q.push(("from", restream::history::rfc3339_ms(t)));
        let (ms, page) = reader.get("/history", &q).await?;
        let first_time = page.events.first().map(key).transpose()?.map(|k| k.0);
        anyhow::ensure!(
            first_time >= Some(restream::history::rfc3339_ms(t)),
            "a page from {t} starts at {first_time:?}"
        );
        from.push(ms);
    }

    // The floor: a request through Pushpin that reads nothing (`/healthz`).
    let mut floor = Vec::new();
    for _ in 0..config.requests {
        let started = Instant::now();
        let status = reader
            .client
            .get(format!("{}/healthz", reader.base))
            .send()
            .await?
            .status();
        anyhow::ensure!(status == 200, "GET /healthz: {status}");
        floor.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    // One channel at a time: first pages, then pages by cursor.
    let path = format!("/channels/{HISTORY_CHANNEL}/history");
    let mut channel_first = Vec::new();
    for i in 0..config.requests {
        let q = [
            ("n", (i % config.channels).to_string()),
            ("limit", config.limit.to_string()),
        ];
        let (ms, page) = reader.get(&path, &q).await?;
        Walk::default().check(&page.events)?;
        channel_first.push(ms);
    }
    let mut channel_next = Vec::new();
    let (mut walk, mut cursor, mut n) = (Walk::default(), None::<String>, 0usize);
    while channel_next.len() < config.requests {
        let mut q = vec![("n", n.to_string()), ("limit", config.limit.to_string())];
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let (ms, page) = reader.get(&path, &q).await?;
        walk.check(&page.events)?;
        if cursor.is_some() {
            channel_next.push(ms);
        }
        cursor = Some(page.cursor);
        if !page.more {
            // This channel's history is read: go on with the next one.
            (walk, cursor, n) = (Walk::default(), None, (n + 1) % config.channels);
        }
    }
    Ok(json!({
        "coalesced_first_page_ms": summary_ms(&first),
        "coalesced_next_pages_ms": summary_ms(&next),
        "coalesced_from_page_ms": summary_ms(&from),
        "coalesced_page_bytes": bytes,
        "coalesced_events_walked": read,
        "channel_first_page_ms": summary_ms(&channel_first),
        "channel_next_pages_ms": summary_ms(&channel_next),
        "healthz_ms": summary_ms(&floor),
    }))
}
