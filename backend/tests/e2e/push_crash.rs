//! Issue 19: the backend is SIGKILLed between two batches of an events channel (append-only,
//! so a repeat would show as an extra event): after the restart seq continues, a retried batch
//! is recognised by its `Idempotency-Key`, and every subscriber sees each event exactly once.
//! A writer that stopped after its linger resumes from the store the same way.

use std::time::Duration;

use serde_json::{json, Value};

use crate::push::*;

fn batch(from: u64) -> Value {
    json!([{"n": from}, {"n": from + 1}, {"n": from + 2}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_between_two_batches_loses_nothing_and_repeats_nothing() {
    let mut stack = push_stack(None).await;
    let q = "site=crash";
    let params = json!({"site": "crash"});
    let publish = |body: Value, key: &str| {
        Publish::post(FEED, q)
            .json(&body)
            .bearer(FEED_KEY)
            .idempotency_key(key)
    };
    let mut ws = Sub::ws(&stack, FEED, params.clone(), None).await;
    let mut sse = Sub::sse(&stack, FEED, q, None).await;
    let mut mirrors = [Mirror::default(), Mirror::default()];
    for (sub, mirror) in [&mut ws, &mut sse].into_iter().zip(&mut mirrors) {
        mirror
            .follow(sub, 1, Duration::from_secs(10), "before")
            .await;
    }
    let first = publish(batch(1), "batch-1").send(&stack.http_url).await;
    assert_eq!((first.seq(), counts(first.receipt())), (4, (3, 0, 0, 0)));
    for (sub, mirror) in [&mut ws, &mut sse].into_iter().zip(&mut mirrors) {
        mirror
            .follow(sub, 4, Duration::from_secs(10), "batch 1")
            .await;
    }

    stack.backend.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.backend.restart().await;

    // The producer did not see its answer and retries: the same receipt, nothing appended.
    let retry = publish(batch(1), "batch-1").send(&stack.http_url).await;
    assert_eq!(retry.receipt()["replayed"], true, "{:?}", retry.body);
    assert_eq!((retry.seq(), counts(retry.receipt())), (4, (3, 0, 0, 0)));
    let second = publish(batch(4), "batch-2").send(&stack.http_url).await;
    assert_eq!(
        (second.seq(), counts(second.receipt())),
        (7, (3, 0, 0, 0)),
        "seq continues after the restart; log:\n{}",
        stack.backend.log_text()
    );
    // The subscribers connected through the crash get the second batch live, next in seq.
    for ((who, sub), mirror) in [("ws", &mut ws), ("sse", &mut sse)]
        .into_iter()
        .zip(&mut mirrors)
    {
        mirror.follow(sub, 7, Duration::from_secs(30), who).await;
        assert_eq!(sub.next(Duration::from_millis(500)).await, None, "{who}");
        let data: Vec<Value> = mirror.items.values().map(|i| i["data"].clone()).collect();
        // The mirror applies every event (it does not trim to `keep`): all six, in order.
        assert_eq!(
            data,
            (1..=6).map(|n| json!({"n": n})).collect::<Vec<_>>(),
            "{who}"
        );
    }
    // A subscriber reconnecting with `since` sees each event exactly once.
    let mut resumed = Sub::ws(&stack, FEED, params.clone(), Some(1)).await;
    let mut got = Vec::new();
    while let Some(m) = resumed.next(Duration::from_millis(1500)).await {
        got.push(m);
    }
    let expected: Vec<Value> = mirrors[0]
        .log
        .iter()
        .filter(|m| m["type"] != "snapshot")
        .cloned()
        .collect();
    assert_eq!(got, expected, "events 2..=7 once each");
    let mut sse_resumed = Sub::sse(&stack, FEED, q, Some("3")).await;
    for m in &expected[2..] {
        assert_eq!(
            sse_resumed.next(Duration::from_secs(10)).await.as_ref(),
            Some(m)
        );
    }
    assert_eq!(sse_resumed.next(Duration::from_millis(300)).await, None);
    assert_eq!(items_page(&stack, FEED, q).await.0, 7);
}

fn short_linger(settings: &mut restream::config::Settings) {
    settings.push.linger = Duration::from_secs(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_lingered_out_picks_up_where_it_stopped() {
    let stack = push_stack(Some(short_linger)).await;
    let q = "site=linger";
    let publish = |body: Value, key: &str| {
        Publish::post(FEED, q)
            .json(&body)
            .bearer(FEED_KEY)
            .idempotency_key(key)
    };
    // No subscriber: the writer opens the channel (seq 1), commits, and stops after linger.
    let first = publish(batch(1), "l-1").send(&stack.http_url).await;
    assert_eq!(first.seq(), 4);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !stack
        .backend
        .log_text()
        .contains("push channel writer stopped")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never stopped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A new writer reads the stored state: the key is remembered, seq continues.
    let retry = publish(batch(1), "l-1").send(&stack.http_url).await;
    assert_eq!(
        (retry.seq(), retry.receipt()["replayed"].clone()),
        (4, json!(true))
    );
    let second = publish(batch(4), "l-2").send(&stack.http_url).await;
    assert_eq!(second.seq(), 7);
    let mut sub = Sub::ws(&stack, FEED, json!({"site": "linger"}), None).await;
    let snap = sub.next(Duration::from_secs(10)).await.expect("a snapshot");
    assert_eq!(snap["seq"], 7);
    let data: Vec<Value> = snap["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["data"].clone())
        .collect();
    assert_eq!(
        data,
        [json!({"n": 4}), json!({"n": 5}), json!({"n": 6})],
        "the last KEEP"
    );
}
