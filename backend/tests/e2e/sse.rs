//! Issue 8: Server-Sent Events through a real Pushpin, beside WebSocket on the same channel.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const FEED: &str = "/channels/usgs-earthquakes/events?feed=1.0_day";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_and_websocket_subscribers_get_the_same_events_from_one_poll() {
    let stack = Stack::start().await;
    let mut ws = Client::connect(&stack.ws_url).await;
    ws.subscribe("usgs-earthquakes", json!({"feed": "1.0_day"}))
        .await;
    let mut sse = SseClient::connect(&stack.http_url, FEED, None).await;
    let (ws_snapshot, _) = ws.recv_type("snapshot", Duration::from_secs(10)).await;
    let (sse_snapshot, skipped) = sse.next_of("snapshot", Duration::from_secs(10)).await;
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(sse_snapshot.data, ws_snapshot, "the same snapshot on both");
    assert_eq!(
        sse_snapshot.id.as_deref(),
        Some("1"),
        "the SSE id is the seq"
    );
    for _ in 0..3 {
        stack.upstream.bump();
    }
    for seq in 2..=4 {
        let (w, _) = ws.recv_type("new", Duration::from_secs(10)).await;
        let s = sse
            .next(Duration::from_secs(10))
            .await
            .expect("an SSE event");
        assert_eq!((s.event.as_str(), &s.data), ("new", &w));
        assert_eq!(w["seq"], seq);
        assert_eq!(s.id, Some(seq.to_string()));
    }
    // One upstream request per interval, whoever listens and however.
    let requests = stack.upstream.requests("summary/1.0_day");
    let (min_gap, _) = gaps(&requests);
    assert!(
        min_gap >= Duration::from_secs_f64(POLL_INTERVAL * 0.9),
        "polls {min_gap:?} apart: {} requests",
        requests.len()
    );
    // A WebSocket-only listener leaving keeps the SSE stream's channel polled.
    drop(ws);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.upstream.bump();
    let (s, skipped) = sse.next_of("new", Duration::from_secs(10)).await;
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(s.data["seq"], 5);
    assert!(sse.comments >= 1, "the stream opened with a comment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_with_exactly_the_missed_events() {
    let stack = Stack::start().await;
    // A WebSocket subscriber keeps the channel polled while the SSE client is away.
    let mut ws = Client::connect(&stack.ws_url).await;
    ws.subscribe("usgs-earthquakes", json!({"feed": "1.0_day"}))
        .await;
    let mut sse = SseClient::connect(&stack.http_url, FEED, None).await;
    let (snapshot, _) = sse.next_of("snapshot", Duration::from_secs(10)).await;
    let last = snapshot.id.clone().unwrap();
    drop(sse);
    stack.upstream.bump();
    stack.upstream.bump();
    let mut missed = Vec::new();
    for _ in 0..2 {
        missed.push(ws.recv_type("new", Duration::from_secs(10)).await.0);
    }
    // Reconnect as a browser does: the same URL with Last-Event-ID.
    let mut sse = SseClient::connect(&stack.http_url, FEED, Some(&last)).await;
    for expected in &missed {
        let e = sse
            .next(Duration::from_secs(10))
            .await
            .expect("a missed event");
        assert_eq!(
            (e.event.as_str(), &e.data),
            ("new", expected),
            "exactly the missed events, in order"
        );
        assert_eq!(e.id, Some(expected["seq"].to_string()));
    }
    assert_eq!(
        sse.next(Duration::from_millis(500)).await,
        None,
        "nothing else: no snapshot, no repeat"
    );
    // Then live events continue on the same stream.
    stack.upstream.bump();
    let (live, skipped) = sse.next_of("new", Duration::from_secs(10)).await;
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(live.data["seq"], 4);
    // Up to date already: nothing is replayed. `since` in the URL works where headers cannot
    // be set.
    let mut current = SseClient::connect(&stack.http_url, &format!("{FEED}&since=4"), None).await;
    assert_eq!(current.next(Duration::from_millis(500)).await, None);
    // A Last-Event-ID beyond the log's reach gets a reset snapshot.
    let mut stale = SseClient::connect(&stack.http_url, FEED, Some("999")).await;
    let (reset, _) = stale.next_of("snapshot", Duration::from_secs(10)).await;
    assert_eq!(reset.data["reset"], true);
    assert_eq!(reset.data["seq"], 4);
    // Garbage is refused with a JSON error, through Pushpin.
    let response = reqwest::Client::new()
        .get(format!("{}{FEED}", stack.http_url))
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_last_event_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_gets_keep_alive_comments() {
    let stack = Stack::start_with(StackOptions {
        env: vec![("RESTREAM_SERVER__SSE_KEEP_ALIVE_SECS".into(), "1".into())],
        ..StackOptions::default()
    })
    .await;
    let mut sse = SseClient::connect(&stack.http_url, FEED, None).await;
    sse.next_of("snapshot", Duration::from_secs(10)).await;
    let after_snapshot = sse.comments;
    // Nothing changes upstream: only comments arrive, about one a second.
    assert_eq!(sse.next(Duration::from_millis(3500)).await, None);
    assert!(
        sse.comments >= after_snapshot + 2,
        "{} keep-alive comments in 3.5 s",
        sse.comments - after_snapshot
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_has_no_event_id_so_resume_points_stay_on_events() {
    let stack = Stack::start().await;
    stack
        .upstream
        .fail("/earthquakes/feed/v1.0/summary/4.5_day");
    let mut sse = SseClient::connect(
        &stack.http_url,
        "/channels/usgs-earthquakes/events?feed=4.5_day",
        None,
    )
    .await;
    let (status, _) = sse.next_of("status", Duration::from_secs(10)).await;
    assert_eq!(status.data["status"], "degraded");
    assert_eq!(
        status.id, None,
        "a browser's Last-Event-ID must not move past unsent events"
    );
}
