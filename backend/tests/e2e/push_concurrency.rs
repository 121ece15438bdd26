//! Issue 19 under load through a real Pushpin: producers publishing at once to one events
//! channel each get their batch committed whole (its events consecutive in seq), and producers
//! that keep retrying (same `Idempotency-Key`) through a backend SIGKILL get every batch
//! committed exactly once; subscribers see every event once, in seq order.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::push::*;
use crate::support::Stack;

/// What a producer learnt of one batch it sent: its events' data and the receipt's seq.
type Committed = Vec<(Vec<Value>, u64)>;

fn batch(producer: usize, b: usize, size: usize) -> Vec<Value> {
    (0..size)
        .map(|k| json!({"p": producer, "b": b, "k": k}))
        .collect()
}

/// Checks that the receipts' ranges tile seq 2..=last (each batch's events consecutive, no
/// batch twice) and returns every event's data by seq.
fn tile(committed: &[Committed]) -> Vec<Value> {
    let mut ranges: Vec<(u64, &Vec<Value>)> = committed
        .iter()
        .flatten()
        .map(|(data, seq)| (seq + 1 - data.len() as u64, data))
        .collect();
    ranges.sort_by_key(|(from, _)| *from);
    let mut next = 2;
    let mut out = Vec::new();
    for (from, data) in ranges {
        assert_eq!(from, next, "batches overlap or leave a gap at seq {next}");
        next += data.len() as u64;
        out.extend(data.iter().cloned());
    }
    out
}

/// The data of every event a mirror applied, in order.
fn event_data(mirror: &Mirror) -> Vec<Value> {
    let events = mirror.log.iter().filter(|m| m["type"] != "snapshot");
    events.map(|m| m["item"]["data"].clone()).collect()
}

/// Every event of the channel as a subscriber resuming from seq 1 receives it (`since` over
/// WebSocket, `Last-Event-ID` over SSE).
async fn replay(sub: &mut Sub, last: u64) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < (last - 1) as usize {
        let m = sub.next(Duration::from_secs(10)).await;
        let m = m.unwrap_or_else(|| panic!("replay stopped after {} events", out.len()));
        assert_eq!(m["seq"], out.len() as u64 + 2, "{m}");
        out.push(m["item"]["data"].clone());
    }
    assert_eq!(sub.next(Duration::from_millis(500)).await, None);
    out
}

/// A resume over SSE (see `a_websocket_resume_replays_a_short_gap_and_snapshots_a_long_one`).
async fn sse_replay(stack: &Stack, q: &str, last: u64) -> Vec<Value> {
    replay(&mut Sub::sse(stack, FEED, q, Some("1")).await, last).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_each_get_their_batch_committed_whole() {
    let stack = push_stack(None).await;
    let q = "site=conc";
    let mut live = Sub::sse(&stack, FEED, q, None).await;
    let mut mirror = Mirror::default();
    mirror
        .follow(&mut live, 1, Duration::from_secs(10), "live")
        .await;
    let (producers, batches, size) = (16, 5, 3);
    let runs = (0..producers).map(|p| {
        let base = stack.http_url.clone();
        async move {
            let mut committed = Committed::new();
            for b in 0..batches {
                let data = batch(p, b, size);
                let answer = Publish::post(FEED, q)
                    .json(&json!(data))
                    .bearer(FEED_KEY)
                    .send(&base)
                    .await;
                assert_eq!(counts(answer.receipt()), (size as u64, 0, 0, 0));
                committed.push((data, answer.seq()));
            }
            committed
        }
    });
    let committed = futures_util::future::join_all(runs).await;
    let data = tile(&committed);
    let last = data.len() as u64 + 1;
    assert_eq!(last, (producers * batches * size) as u64 + 1);
    mirror
        .follow(&mut live, last, Duration::from_secs(30), "live")
        .await;
    let seen = event_data(&mirror);
    assert_eq!(
        seen, data,
        "the live subscriber saw the batches as committed"
    );
    assert_eq!(sse_replay(&stack, q, last).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_retrying_through_a_backend_kill_commit_every_batch_once() {
    let mut stack = push_stack(None).await;
    let (q, params) = ("site=retry", json!({"site": "retry"}));
    let mut live = Sub::ws(&stack, FEED, params, None).await;
    let mut mirror = Mirror::default();
    mirror
        .follow(&mut live, 1, Duration::from_secs(10), "live")
        .await;
    let (producers, batches, size) = (4, 12, 2);
    let sent = Arc::new(Mutex::new(0usize));
    let retries = Arc::new(Mutex::new(0usize));
    let runs = (0..producers).map(|p| {
        let (base, sent, retries) = (stack.http_url.clone(), sent.clone(), retries.clone());
        async move {
            let mut committed = Committed::new();
            for b in 0..batches {
                let data = batch(p, b, size);
                let request = Publish::post(FEED, q)
                    .json(&json!(data))
                    .bearer(FEED_KEY)
                    .idempotency_key(&format!("p{p}-b{b}"));
                let deadline = Instant::now() + Duration::from_secs(60);
                let receipt = loop {
                    match request.try_send(&base).await {
                        Ok(a) if a.status == 200 => break a.receipt().clone(),
                        Ok(a) if a.status < 500 => {
                            panic!("p{p} b{b}: refused {} {}", a.status, a.body)
                        }
                        _ => *retries.lock().unwrap() += 1,
                    }
                    assert!(Instant::now() < deadline, "p{p} b{b}: no answer in 60 s");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                };
                assert_eq!(counts(&receipt), (size as u64, 0, 0, 0), "{receipt}");
                committed.push((data, receipt["seq"].as_u64().unwrap()));
                *sent.lock().unwrap() += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            committed
        }
    });
    let producing = futures_util::future::join_all(runs);
    let crash = async {
        // SIGKILL once about a third of the batches are in, while the rest keep coming.
        while *sent.lock().unwrap() < producers * batches / 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stack.backend.kill().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stack.backend.restart().await;
    };
    let (committed, ()) = tokio::join!(producing, crash);
    assert!(*retries.lock().unwrap() > 0, "the kill hit no publish");
    let data = tile(&committed);
    let last = (producers * batches * size) as u64 + 1;
    assert_eq!(data.len() as u64 + 1, last, "every batch once");
    // The subscriber connected through the crash got every event once, in order.
    mirror
        .follow(&mut live, last, Duration::from_secs(30), "live")
        .await;
    assert_eq!(live.next(Duration::from_millis(500)).await, None);
    let seen = event_data(&mirror);
    assert_eq!(seen, data);
    assert_eq!(sse_replay(&stack, q, last).await, data);
    assert_eq!(items_page(&stack, FEED, q).await.0, last);
}

/// Pushpin 1.36 drops WebSocket messages a connection's buffer cannot take at once, so a
/// replay is paced, and one longer than 32 events is a reset snapshot instead (SSE replays
/// every event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_resume_replays_a_short_gap_and_snapshots_a_long_one() {
    let stack = push_stack(None).await;
    let (q, params) = ("site=gap", json!({"site": "gap"}));
    let data: Vec<Value> = (0..30).map(|i| json!({"i": i})).collect();
    let answer = Publish::post(FEED, q)
        .json(&json!(data))
        .bearer(FEED_KEY)
        .send(&stack.http_url)
        .await;
    let last = answer.seq();
    assert_eq!(last, 31);
    // Within the WebSocket replay bound (32 events): every event, in order.
    let mut ws = Sub::ws(&stack, FEED, params.clone(), Some(1)).await;
    assert_eq!(replay(&mut ws, last).await, data);
    // Beyond it: a reset snapshot (SSE still replays every event).
    let more: Vec<Value> = (30..200).map(|i| json!({"i": i})).collect();
    let last = Publish::post(FEED, q)
        .json(&json!(more))
        .bearer(FEED_KEY)
        .send(&stack.http_url)
        .await
        .seq();
    assert_eq!(last, 201);
    let all: Vec<Value> = data.iter().chain(&more).cloned().collect();
    assert_eq!(sse_replay(&stack, q, last).await, all);
    let mut ws = Sub::ws(&stack, FEED, params, Some(1)).await;
    let m = ws.next(Duration::from_secs(10)).await.expect("a snapshot");
    assert_eq!(
        (m["type"].as_str(), m["reset"].as_bool()),
        (Some("snapshot"), Some(true)),
        "{m}"
    );
    assert_eq!(m["seq"], json!(last));
    let kept: Vec<Value> = m["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["data"].clone())
        .collect();
    assert_eq!(
        kept,
        all[all.len() - KEEP..].to_vec(),
        "the last `keep` events"
    );
    assert_eq!(ws.next(Duration::from_millis(500)).await, None);
}

/// One batch of many events reaches a live WebSocket subscriber whole: Pushpin drops what a
/// connection's buffer cannot take at once, so the burst goes in paced chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_websocket_subscriber_gets_every_event_of_a_large_batch() {
    let stack = push_stack(None).await;
    let (q, params) = ("site=big", json!({"site": "big"}));
    let mut ws = Sub::ws(&stack, FEED, params, None).await;
    let mut sse = Sub::sse(&stack, FEED, q, None).await;
    let mut mirrors = [Mirror::default(), Mirror::default()];
    for (sub, mirror) in [&mut ws, &mut sse].into_iter().zip(&mut mirrors) {
        mirror.follow(sub, 1, Duration::from_secs(10), "sub").await;
    }
    let n: u64 = 500;
    let data: Vec<Value> = (0..n).map(|i| json!({"i": i})).collect();
    let answer = Publish::post(FEED, q)
        .json(&json!(data))
        .bearer(FEED_KEY)
        .send(&stack.http_url)
        .await;
    assert_eq!(answer.seq(), n + 1);
    for ((who, sub), mirror) in [("sse", &mut sse), ("ws", &mut ws)]
        .into_iter()
        .zip(&mut mirrors)
    {
        mirror
            .follow(sub, n + 1, Duration::from_secs(30), who)
            .await;
        assert_eq!(event_data(mirror), data, "{who}");
    }
}
