//! Must-show 2: a channel's poller runs while any subscriber remains and stops after the last
//! one leaves, whether by `unsubscribe`, `unsubscribe_all` or a dropped connection.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// Upstream requests for `fragment` since `since`.
fn requests_since(stack: &Stack, fragment: &str, since: Instant) -> usize {
    stack
        .upstream
        .requests(fragment)
        .into_iter()
        .filter(|t| *t >= since)
        .count()
}

/// Time for Pushpin's linger (1 s in tests), the stats report and a poll step in flight.
const STOP_GRACE: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pollers_follow_subscribers() {
    let stack = Stack::start().await;
    let all_hour = "summary/all_hour";
    let day = "summary/2.5_day";
    let week = "summary/significant_week";

    let mut a = Client::connect(&stack.ws_url).await;
    let mut b = Client::connect(&stack.ws_url).await;
    let mut c = Client::connect(&stack.ws_url).await;
    let mut d = Client::connect(&stack.ws_url).await;
    a.subscribe("usgs-earthquakes", json!({})).await;
    b.subscribe("usgs-earthquakes", json!({"feed": "all_hour"}))
        .await;
    c.subscribe("usgs-earthquakes", json!({"feed": "2.5_day"}))
        .await;
    d.subscribe("usgs-earthquakes", json!({"feed": "significant_week"}))
        .await;
    d.subscribe("usgs-earthquakes", json!({"feed": "2.5_day"}))
        .await;

    // A leaves all_hour; B still holds it, so polling continues.
    let r = a
        .request(json!({"action": "unsubscribe", "channel": "usgs-earthquakes", "ref": 1}))
        .await;
    assert_eq!(r["type"], "unsubscribed", "{r}");
    assert_eq!(r["ref"], 1);
    tokio::time::sleep(STOP_GRACE).await;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(POLL_INTERVAL * 2.5)).await;
    assert!(
        requests_since(&stack, all_hour, t) >= 2,
        "all_hour must keep polling while B is subscribed"
    );

    // B's connection drops without a close frame: the last all_hour subscriber is gone.
    drop(b);
    tokio::time::sleep(STOP_GRACE).await;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(POLL_INTERVAL * 2.5)).await;
    assert_eq!(
        requests_since(&stack, all_hour, t),
        0,
        "all_hour must stop after its last subscriber left"
    );
    assert!(
        requests_since(&stack, day, t) >= 2,
        "2.5_day still has C and D"
    );

    // D unsubscribes from everything: significant_week stops, 2.5_day continues for C.
    d.send(json!({"action": "unsubscribe_all", "ref": "bye"}))
        .await;
    let mut left = Vec::new();
    for _ in 0..2 {
        let (m, _) = d.recv_type("unsubscribed", Duration::from_secs(10)).await;
        assert_eq!(m["ref"], "bye");
        left.push(m["params"]["feed"].as_str().unwrap().to_string());
    }
    left.sort();
    assert_eq!(left, vec!["2.5_day", "significant_week"]);
    tokio::time::sleep(STOP_GRACE).await;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(POLL_INTERVAL * 2.5)).await;
    assert_eq!(
        requests_since(&stack, week, t),
        0,
        "significant_week must stop after unsubscribe_all"
    );
    assert!(requests_since(&stack, day, t) >= 2, "2.5_day still has C");

    // C closes cleanly: nothing is polled any more.
    c.ws.close(None).await.unwrap();
    tokio::time::sleep(STOP_GRACE).await;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(POLL_INTERVAL * 2.5)).await;
    assert_eq!(
        requests_since(&stack, "", t),
        0,
        "no channel has subscribers, nothing may be polled"
    );

    // The connection that unsubscribed from everything still works.
    d.subscribe("usgs-earthquakes", json!({"feed": "2.5_day"}))
        .await;
    d.recv_type("snapshot", Duration::from_secs(10)).await;
    drop(a);
}
