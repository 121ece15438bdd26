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
    a.recv_type("new", Duration::from_secs(10)).await;
    b.recv_type("new", Duration::from_secs(10)).await;

    stack.backend.kill().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.backend.restart().await;
    let restarted = Instant::now();

    // Without any client activity, the restarted backend finds its channels again and new
    // upstream data reaches both clients.
    // (Items are kept in memory only until the item store lands, so a restarted poller may
    // announce known items again; only the new one matters here.)
    let g = stack.upstream.bump();
    let wanted = json!(format!("2.5_day-g{g}"));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let m = b
            .recv(deadline.saturating_duration_since(Instant::now()))
            .await;
        let m = m.expect("client B gets the new item after the restart");
        if m["type"] == "new" && m["item"]["id"] == wanted {
            break;
        }
    }
    println!("delivery resumed {:?} after restart", restarted.elapsed());
    let mut seen_quake = false;
    let mut seen_weather = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(seen_quake && seen_weather) && Instant::now() < deadline {
        if let Some(m) = a.recv(Duration::from_secs(5)).await {
            seen_quake |= m["type"] == "new" && m["item"]["id"] == format!("all_hour-g{g}");
            // `new` or `updated`: a restarted poller has no memory of the previous reading yet.
            seen_weather |= m["item"]["temperature_2m"] == json!(g as f64);
        }
    }
    assert!(
        seen_quake && seen_weather,
        "client A must get both of its channels after the restart (quake {seen_quake}, weather {seen_weather}); log:\n{}",
        stack.backend.log_text()
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
