//! Issue 8: `/metrics` is valid Prometheus exposition text (read with a parser) and its
//! counters follow the traffic a test drives through Pushpin.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::politeness::BUDGETED;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_the_traffic() {
    let stack = Stack::start_with(StackOptions {
        extra_channels: vec![("budgeted.toml", BUDGETED.to_string())],
        ..StackOptions::default()
    })
    .await;
    let url = format!("http://{}/metrics", stack.backend.addr);
    let before = scrape(&url).await;
    let usgs = [("channel", "usgs-earthquakes")];

    let mut ws = Client::connect(&stack.ws_url).await;
    ws.subscribe("usgs-earthquakes", json!({"feed": "1.0_day"}))
        .await;
    let sse = SseClient::connect(
        &stack.http_url,
        "/channels/usgs-earthquakes/events?feed=1.0_day",
        None,
    )
    .await;
    ws.recv_type("snapshot", Duration::from_secs(10)).await;
    stack.upstream.bump();
    stack.upstream.bump();
    for _ in 0..2 {
        ws.recv_type("new", Duration::from_secs(10)).await;
    }
    ws.subscribe("budgeted", json!({"n": 1})).await;
    ws.recv_type("snapshot", Duration::from_secs(10)).await;

    // Gauges come from Pushpin's stats reports, which may trail the subscribes a little.
    let deadline = Instant::now() + Duration::from_secs(15);
    let after = loop {
        let s = scrape(&url).await;
        let ws_subs = value(&s, "restream_subscribers", &[("transport", "websocket")]);
        let sse_subs = value(&s, "restream_subscribers", &[("transport", "sse")]);
        if ws_subs >= 2.0 && sse_subs >= 1.0 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "subscribers never reported: ws {ws_subs}, sse {sse_subs}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(
        delta("restream_changes_total", &[usgs[0], ("kind", "new")]),
        2.0
    );
    // The first poll, then one or two polls for the two bumps.
    assert!(delta("restream_polls_total", &[usgs[0], ("outcome", "changed")]) >= 2.0);
    assert!(delta("restream_upstream_latency_seconds", &usgs) >= 2.0);
    assert!(value(&after, "restream_active_channels", &[]) >= 2.0);
    assert!(delta("restream_woh_events_total", &[("event", "OPEN")]) >= 1.0);
    assert!(delta("restream_woh_events_total", &[("event", "TEXT")]) >= 2.0);
    assert_eq!(delta("restream_sse_streams_total", &[]), 1.0);
    assert!(delta("restream_published_items_total", &[]) >= 3.0);
    assert_eq!(value(&after, "restream_publish_failures_total", &[]), 0.0);
    let budget = [("budget", "fetcher:budgeted"), ("window_seconds", "1")];
    assert_eq!(value(&after, "restream_budget_limit_calls", &budget), 2.0);
    assert!(value(&after, "restream_budget_used_calls", &budget) >= 1.0);
    // Operators only: not through Pushpin's public port.
    let (status, body) = get_json(&format!("{}/metrics", stack.http_url)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("not_found")),
        "{body}"
    );
    drop(sse);
}
