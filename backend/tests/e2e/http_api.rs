//! Issue 8: the HTTP API through a real Pushpin: catalog, channel status, items with
//! pagination, health, readiness, the demo page and JSON errors.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

async fn wait_for(url: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = get_json(url).await;
        assert_eq!(status, 200, "{url}: {body}");
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{url}: never {what}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_through_pushpin() {
    let stack = Stack::start().await;
    let api = stack.http_url.clone();

    // The catalog: every channel type with what a client needs to subscribe.
    let (status, catalog) = get_json(&format!("{api}/channels")).await;
    assert_eq!(status, 200);
    let usgs = catalog["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "usgs-earthquakes")
        .expect("usgs-earthquakes in the catalog")
        .clone();
    assert_eq!(usgs["id_field"], "id");
    assert_eq!(usgs["params"]["feed"]["required"], false);
    assert_eq!(usgs["params"]["feed"]["default"], "all_hour");
    assert_eq!(usgs["poll_interval_secs"], POLL_INTERVAL);
    assert!(usgs["doc_url"].as_str().unwrap().starts_with("https://"));
    assert!(usgs["rate_limit"].is_array());
    let names: BTreeSet<_> = catalog["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains("open-meteo-current"), "{names:?}");

    // Errors: unknown channel, unknown or repeated params, API names out of place.
    let (s, b) = get_json(&format!("{api}/channels/no-such-thing")).await;
    assert_error(s, &b, 404, "unknown_channel");
    let (s, b) = get_json(&format!("{api}/channels/usgs-earthquakes?colour=red")).await;
    assert_error(s, &b, 400, "invalid_params");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("feed"),
        "{b}"
    );
    let (s, b) = get_json(&format!("{api}/channels/usgs-earthquakes?feed=a&feed=b")).await;
    assert_error(s, &b, 400, "bad_query");
    let (s, b) = get_json(&format!("{api}/channels/usgs-earthquakes?limit=3")).await;
    assert_error(s, &b, 400, "bad_query");
    let (s, b) = get_json(&format!("{api}/channels/no-such-thing/items")).await;
    assert_error(s, &b, 404, "unknown_channel");
    let (s, b) = get_json(&format!("{api}/channels/no-such-thing/events")).await;
    assert_error(s, &b, 404, "unknown_channel");
    let (s, b) = get_json(&format!("{api}/channels/usgs-earthquakes/events?limit=1")).await;
    assert_error(s, &b, 400, "bad_query");
    let (s, b) = get_json(&format!("{api}/nothing/here")).await;
    assert_error(s, &b, 404, "not_found");

    // A channel nobody watches yet.
    let url = format!("{api}/channels/usgs-earthquakes?feed=2.5_week");
    let (s, idle) = get_json(&url).await;
    assert_eq!(s, 200);
    assert_eq!(
        (
            &idle["active"],
            &idle["seq"],
            &idle["item_count"],
            &idle["upstream"]["status"]
        ),
        (&json!(false), &json!(0), &json!(0), &json!("unknown"))
    );
    assert_eq!(idle["id"], "usgs-earthquakes?feed=2.5_week");
    assert_eq!(idle["subscribers"]["total"], 0);

    // Five items upstream; one WebSocket subscriber.
    let quakes: Vec<Value> = (0..5)
        .map(|i| json!({"type": "Feature", "id": format!("q{i}"), "properties": {"mag": i}}))
        .collect();
    stack.upstream.set_quakes("2.5_week", quakes);
    let mut c = Client::connect(&stack.ws_url).await;
    c.subscribe("usgs-earthquakes", json!({"feed": "2.5_week"}))
        .await;
    c.recv_type("snapshot", Duration::from_secs(10)).await;
    let live = wait_for(&url, "report its subscriber", |b| {
        b["subscribers"]["websocket"] == 1 && b["last_poll"].is_object()
    })
    .await;
    assert_eq!(live["active"], true, "{live}");
    assert_eq!((&live["seq"], &live["item_count"]), (&json!(1), &json!(5)));
    assert_eq!(live["last_poll"]["outcome"], "changed", "{live}");
    assert!(
        live["last_poll"]["at"].as_str().unwrap().ends_with('Z'),
        "{live}"
    );
    assert!(live["next_poll_at"].is_string(), "{live}");
    assert_eq!(live["upstream"]["status"], "ok");
    assert_eq!(live["poll_interval_secs"], POLL_INTERVAL);

    // Items, two per page, in id order, every one exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let page_url = match &cursor {
            None => format!("{api}/channels/usgs-earthquakes/items?feed=2.5_week&limit=2"),
            Some(c) => {
                format!("{api}/channels/usgs-earthquakes/items?feed=2.5_week&limit=2&cursor={c}")
            }
        };
        let (s, page) = get_json(&page_url).await;
        assert_eq!(s, 200, "{page}");
        assert_eq!(page["seq"], 1);
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, vec!["q0", "q1", "q2", "q3", "q4"]);
    for bad in ["0", "1001", "ten", "-1"] {
        let (s, b) = get_json(&format!(
            "{api}/channels/usgs-earthquakes/items?feed=2.5_week&limit={bad}"
        ))
        .await;
        assert_error(s, &b, 400, "bad_limit");
    }

    // A failing upstream shows as degraded, with the error and the retry delay.
    stack
        .upstream
        .fail("/earthquakes/feed/v1.0/summary/4.5_week");
    let mut d = Client::connect(&stack.ws_url).await;
    d.subscribe("usgs-earthquakes", json!({"feed": "4.5_week"}))
        .await;
    let degraded = wait_for(
        &format!("{api}/channels/usgs-earthquakes?feed=4.5_week"),
        "degraded",
        |b| b["upstream"]["status"] == "degraded",
    )
    .await;
    assert_eq!(
        degraded["upstream"]["code"], "upstream_unavailable",
        "{degraded}"
    );
    assert_eq!(
        degraded["upstream"]["error"], "the upstream API is failing; retrying",
        "a generic sentence, not the upstream's answer: {degraded}"
    );
    assert!(degraded["upstream"]["retry_in_secs"].as_f64().unwrap() > 0.0);
    assert_eq!(degraded["last_poll"]["outcome"], "failed");

    // An absurd Retry-After is capped at fetchers.max_backoff_secs (900 by default), and the
    // status still renders its next poll.
    stack.upstream.throttle(
        "/earthquakes/feed/v1.0/summary/significant_week",
        1,
        99_999_999_999,
    );
    let mut t = Client::connect(&stack.ws_url).await;
    t.subscribe("usgs-earthquakes", json!({"feed": "significant_week"}))
        .await;
    let throttled = wait_for(
        &format!("{api}/channels/usgs-earthquakes?feed=significant_week"),
        "throttled",
        |b| b["upstream"]["status"] == "degraded",
    )
    .await;
    assert_eq!(throttled["upstream"]["retry_in_secs"], 900.0, "{throttled}");
    assert!(throttled["next_poll_at"].is_string(), "{throttled}");

    // Health and readiness.
    let health = reqwest::get(format!("{api}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    // Through Pushpin readiness is a yes or no; the checks in detail are for the backend port.
    let (s, ready) = get_json(&format!("{api}/readyz")).await;
    assert_eq!((s, ready.clone()), (200, json!({"ready": true})));
    let backend = format!("http://{}", stack.backend.addr);
    let (s, ready) = get_json(&format!("{backend}/readyz")).await;
    assert_eq!(s, 200, "{ready}");
    for check in ["pushpin", "store", "fetchers"] {
        assert_eq!(ready["checks"][check]["ok"], true, "{ready}");
    }

    // The demo page.
    for path in ["/demo", "/"] {
        let page = reqwest::get(format!("{api}{path}")).await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let html = page.text().await.unwrap();
        assert!(html.contains("/demo/restream.js") && html.contains("WebSocket"));
    }
    // The client library it is built on (clients/js/restream.js).
    let library = reqwest::get(format!("{api}/demo/restream.js"))
        .await
        .unwrap();
    assert_eq!(library.status(), 200);
    assert!(library.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let js = library.text().await.unwrap();
    assert_eq!(js, include_str!("../../../clients/js/restream.js"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_request_and_poller_spans() {
    let stack = Stack::start_with(StackOptions {
        env: vec![("RESTREAM_LOG__FORMAT".into(), "json".into())],
        ..StackOptions::default()
    })
    .await;
    let mut c = Client::connect(&stack.ws_url).await;
    c.subscribe("usgs-earthquakes", json!({"feed": "1.0_day"}))
        .await;
    c.recv_type("snapshot", Duration::from_secs(10)).await;
    let (s, _) = get_json(&format!(
        "{}/channels/usgs-earthquakes?feed=1.0_day",
        stack.http_url
    ))
    .await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = stack.backend.log_text();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    let request = lines
        .iter()
        .find(|l| {
            l["fields"]["message"] == "request" && l["span"]["path"] == "/channels/usgs-earthquakes"
        })
        .unwrap_or_else(|| panic!("no request line for the status call:\n{log}"));
    assert_eq!(request["span"]["method"], "GET");
    assert_eq!(request["fields"]["status"], 200);
    assert!(
        lines.iter().any(|l| l["span"]["name"] == "poller"
            && l["span"]["channel"] == "usgs-earthquakes?feed=1.0_day"),
        "no line in the poller span:\n{log}"
    );
}
