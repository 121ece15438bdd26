//! Issue 5 through a real Pushpin: conditional requests and a shared upstream budget.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_upstream_answers_304_and_nothing_is_sent() {
    let stack = Stack::start().await;
    let mut c = Client::connect(&stack.ws_url).await;
    c.subscribe("usgs-earthquakes", json!({"feed": "1.0_week"}))
        .await;
    c.recv_type("snapshot", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs_f64(POLL_INTERVAL * 3.5)).await;
    let (conditional, not_modified) = stack.upstream.conditional();
    assert!(
        conditional >= 3 && not_modified >= 3,
        "later polls are conditional and answered 304: {conditional}/{not_modified}"
    );
    assert_eq!(
        c.recv(Duration::from_millis(200)).await,
        None,
        "a 304 sends nothing"
    );
    // A change gets a fresh 200 and its event.
    let g = stack.upstream.bump();
    let (m, skipped) = c.recv_type("new", Duration::from_secs(10)).await;
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(m["item"]["id"], format!("1.0_week-g{g}"));
    assert_eq!(m["seq"], 2);
}

pub const BUDGETED: &str = r#"
name = "budgeted"
url = "{base}/budgeted/{n}.json"
base_url_env = "USGS_BASE_URL"
items = ""
id_field = "id"
poll_interval = 0.1
complete = true
[params.n]
required = true
[rate_limit]
per_second = 2
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_channels_sharing_a_budget_stay_within_it() {
    let stack = Stack::start_with(StackOptions {
        extra_channels: vec![("budgeted.toml", BUDGETED.to_string())],
        ..StackOptions::default()
    })
    .await;
    let mut clients = Vec::new();
    for n in 0..10 {
        let mut c = Client::connect(&stack.ws_url).await;
        c.subscribe("budgeted", json!({ "n": n })).await;
        clients.push(c);
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let times: Vec<_> = stack
        .upstream
        .requests("/budgeted/")
        .into_iter()
        .filter(|t| *t >= start)
        .collect();
    // Each channel asks every 0.1 s; together they may make 2 calls in any second.
    for (i, t) in times.iter().enumerate() {
        let in_second = times[i..]
            .iter()
            .filter(|u| **u - *t < Duration::from_millis(1000))
            .count();
        assert!(
            in_second <= 2,
            "{in_second} upstream calls in the second after call {i}"
        );
    }
    assert!(
        times.len() >= 12,
        "the budget is used: {} calls in 8 s",
        times.len()
    );
    let polled: HashSet<_> = stack
        .upstream
        .paths()
        .into_iter()
        .filter(|p| p.starts_with("/budgeted/"))
        .collect();
    assert_eq!(polled.len(), 10, "every channel gets polled: {polled:?}");
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_from_the_upstream_is_honoured_to_the_second() {
    let stack = Stack::start().await;
    let feed = "2.5_week";
    let path = format!("/earthquakes/feed/v1.0/summary/{feed}");
    let mut c = Client::connect(&stack.ws_url).await;
    c.subscribe("usgs-earthquakes", json!({ "feed": feed }))
        .await;
    c.recv_type("snapshot", Duration::from_secs(10)).await;
    // The next answer is 429 with Retry-After: 7 (the poll interval is 2 s).
    let throttled_at = stack.upstream.requests(&path).len();
    stack.upstream.throttle(&path, 1, 7);
    let (status, _) = c.recv_type("status", Duration::from_secs(10)).await;
    assert_eq!(
        (status["status"].as_str(), status["retry_in"].as_f64()),
        (Some("degraded"), Some(7.0)),
        "{status}"
    );
    let (ok, _) = c.recv_type("status", Duration::from_secs(15)).await;
    assert_eq!(ok["status"], "ok", "{ok}");
    let times = stack.upstream.requests(&path);
    let wait = times[throttled_at + 1] - times[throttled_at];
    assert!(
        wait >= Duration::from_secs(7) && wait < Duration::from_millis(8500),
        "called again {wait:?} after a Retry-After of 7 s"
    );
}
