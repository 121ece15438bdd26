//! Must-show 3: the backend is SIGKILLed and restarted while clients stay connected.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_restart_is_invisible_to_clients() {
    let mut stack = Stack::start().await;
    let mut a = Client::connect(&stack.ws_url).await;
    let mut b = Client::connect(&stack.ws_url).await;
    a.subscribe("usgs-earthquakes", json!({})).await;
    a.subscribe("open-meteo-current", json!({"latitude": 1, "longitude": 2}))
        .await;
    b.subscribe("usgs-earthquakes", json!({"feed": "2.5_day"}))
        .await;
    for _ in 0..2 {
        a.recv_type("snapshot", Duration::from_secs(10)).await;
    }
    b.recv_type("snapshot", Duration::from_secs(10)).await;

    stack.backend.kill().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.backend.restart().await;
    let restarted = Instant::now();

    // Without any client activity, the restarted backend finds its channels again (stats
    // reports, keep-alive requests carrying the connection meta). Known items are not
    // announced again: the next event each client sees is the real change, and seq continues.
    let g = stack.upstream.bump();
    let (m, skipped) = b.recv_type("new", Duration::from_secs(90)).await;
    assert!(skipped.is_empty(), "nothing but the change: {skipped:?}");
    assert_eq!(m["item"]["id"], format!("2.5_day-g{g}"));
    assert_eq!(m["seq"], 2, "seq continues after the restart");
    println!("delivery resumed {:?} after restart", restarted.elapsed());
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while events.len() < 2 && Instant::now() < deadline {
        if let Some(m) = a.recv(Duration::from_secs(5)).await {
            events.push(m);
        }
    }
    events.sort_by_key(|m| m["type"].as_str().unwrap().to_string());
    assert_eq!(
        events.len(),
        2,
        "client A gets both of its channels after the restart; log:\n{}",
        stack.backend.log_text()
    );
    assert_eq!(events[0]["type"], "new");
    assert_eq!(events[0]["item"]["id"], format!("all_hour-g{g}"));
    assert_eq!(events[1]["type"], "updated");
    assert_eq!(events[1]["item"]["temperature_2m"], json!(g as f64));
    assert_eq!(
        events[1]["patch"],
        json!([{"op": "replace", "path": "/temperature_2m", "value": g as f64}])
    );

    // A client that saw seq 1 before the restart resumes with exactly the event it missed.
    let mut c = Client::connect(&stack.ws_url).await;
    c.send(json!({"action": "subscribe", "channel": "usgs-earthquakes", "params": {"feed": "2.5_day"}, "since": 1}))
        .await;
    let (sub, _) = c.recv_type("subscribed", Duration::from_secs(10)).await;
    assert_eq!(sub["params"]["feed"], "2.5_day");
    let replay = c
        .recv(Duration::from_secs(5))
        .await
        .expect("the missed event");
    assert_eq!(
        (replay["type"].as_str(), replay["seq"].as_u64()),
        (Some("new"), Some(2))
    );
    assert_eq!(replay["item"]["id"], format!("2.5_day-g{g}"));
    assert_eq!(
        c.recv(Duration::from_millis(500)).await,
        None,
        "exactly the missed events"
    );

    // Exactly one poller per channel: never two requests for one resource within an interval.
    tokio::time::sleep(Duration::from_secs_f64(POLL_INTERVAL * 3.0)).await;
    for fragment in ["summary/all_hour", "summary/2.5_day", "latitude=1"] {
        let times: Vec<_> = stack
            .upstream
            .requests(fragment)
            .into_iter()
            .filter(|t| *t >= restarted)
            .collect();
        let (min_gap, _) = gaps(&times);
        assert!(
            times.len() >= 3,
            "{fragment}: polling resumed ({} requests)",
            times.len()
        );
        assert!(
            min_gap >= Duration::from_secs_f64(POLL_INTERVAL * 0.5),
            "{fragment}: two requests {min_gap:?} apart means two pollers"
        );
    }

    // The restarted backend still knows every subscription of A (from connection meta).
    a.send(json!({"action": "unsubscribe_all"})).await;
    let mut left = Vec::new();
    for _ in 0..2 {
        let (m, _) = a.recv_type("unsubscribed", Duration::from_secs(10)).await;
        left.push(m["channel"].as_str().unwrap().to_string());
    }
    left.sort();
    assert_eq!(left, vec!["open-meteo-current", "usgs-earthquakes"]);
    // And a duplicate subscribe is still recognised as one.
    b.subscribe("usgs-earthquakes", json!({"feed": "2.5_day"}))
        .await;
    let r = b.request(json!({"action": "unsubscribe", "channel": "usgs-earthquakes", "params": {"feed": "2.5_day"}})).await;
    assert_eq!(r["type"], "unsubscribed");
    let r = b.request(json!({"action": "unsubscribe", "channel": "usgs-earthquakes", "params": {"feed": "2.5_day"}})).await;
    assert_eq!(r["code"], "not_subscribed", "{r}");
}
