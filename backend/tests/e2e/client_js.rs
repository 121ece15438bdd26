//! Issue 22: the JavaScript client library (`clients/js/restream.js`, served as
//! `/demo/restream.js`) in headless Chromium (`tests/browser/client.mjs`) keeps a channel's item
//! set through a backend restart and a Pushpin restart mid-stream: it ends equal to
//! `GET /channels/{name}/items`, with every event applied exactly once, in seq order; and it
//! falls back to Server-Sent Events when WebSockets cannot open.

use std::time::Duration;

use serde_json::{json, Value};

use crate::browser::Driver;
use crate::support::*;

/// Magnitudes are not whole numbers: JavaScript writes `1.0` as `1`, which compares unequal.
fn quake(id: &str, mag: f64) -> Value {
    json!({"type": "Feature", "id": id, "properties": {"mag": mag}})
}

fn state(line: String) -> Value {
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// The client's items equal the channel's (`GET /channels/{name}/items`), at the same seq.
async fn assert_same_items(stack: &Stack, feed: &str, client: &Value) {
    let url = format!(
        "{}/channels/usgs-earthquakes/items?feed={feed}",
        stack.http_url
    );
    let (status, body) = get_json(&url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(client["seq"], body["seq"], "client {client}\nserver {body}");
    assert_eq!(
        client["items"], body["items"],
        "client {client}\nserver {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_client_keeps_the_items_through_backend_and_pushpin_restarts() {
    let mut stack = Stack::start().await;
    let feed = "4.5_week";
    stack
        .upstream
        .set_quakes(feed, vec![quake("a", 1.5), quake("b", 1.5)]);
    let mut driver = Driver::spawn(
        "client.mjs",
        &[
            ("PAGE_URL", format!("{}/demo", stack.http_url)),
            ("CHANNEL", "usgs-earthquakes".to_string()),
            ("PARAMS", json!({"feed": feed}).to_string()),
            ("TIMEOUT_MS", "60000".to_string()),
        ],
    );
    let ready = state(driver.expect("READY").await);
    assert_eq!(ready, json!({"seq": 1, "count": 2}));

    // Live: b updated, c new, a removed (seq 2, 3, 4).
    stack
        .upstream
        .set_quakes(feed, vec![quake("b", 2.5), quake("c", 1.5)]);
    driver.send("WAIT_SEQ 4").await;
    let s = state(driver.expect("AT").await);
    assert_eq!(s["ids"], json!(["b", "c"]), "{s}");

    // The backend is killed and restarted: Pushpin keeps the connection, the stream goes on
    // (b updated, d new: seq 5, 6) without a reconnect.
    stack.backend.kill().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.upstream.set_quakes(
        feed,
        vec![quake("b", 3.5), quake("c", 1.5), quake("d", 1.5)],
    );
    stack.backend.restart().await;
    driver.send("WAIT_SEQ 6").await;
    let s = state(driver.expect("AT").await);
    assert_eq!(s["reconnects"], 0, "Pushpin held the connection: {s}");
    assert_same_items(&stack, feed, &s).await;

    // Pushpin stops: the connection drops, the client retries with backoff. The channel changes
    // meanwhile (c updated, e new, b removed: seq 7, 8, 9); once Pushpin is back the client
    // resumes with `since` and gets exactly what it missed.
    stack.stop_pushpin().await;
    stack.upstream.set_quakes(
        feed,
        vec![quake("c", 2.5), quake("d", 1.5), quake("e", 1.5)],
    );
    tokio::time::sleep(Duration::from_secs_f64(POLL_INTERVAL * 2.0)).await;
    stack.start_pushpin().await.expect("Pushpin starts again");
    driver.send("WAIT_RECONNECTED 1").await;
    driver.expect("RECONNECTED").await;
    driver.send("WAIT_SEQ 9").await;
    let s = state(driver.expect("AT").await);
    assert_same_items(&stack, feed, &s).await;
    assert_eq!(s["ids"], json!(["c", "d", "e"]), "{s}");

    // Every event applied once, in order, none missing; no patch disagreed with its item.
    assert_eq!(s["applied"], json!([2, 3, 4, 5, 6, 7, 8, 9]), "{s}");
    assert_eq!(s["mismatches"], 0, "{s}");
    assert_eq!(s["transport"], "ws", "{s}");
    assert_eq!(s["errors"], json!([]), "{s}");

    driver.send("QUIT").await;
    let status = tokio::time::timeout(Duration::from_secs(20), driver.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// WebSockets refused (the client's WebSocket URL has nothing listening): after three failed
/// opens the client switches to SSE on the real stack, and keeps the items there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_client_falls_back_to_sse_when_websockets_cannot_open() {
    let stack = Stack::start().await;
    let feed = "2.5_week";
    stack
        .upstream
        .set_quakes(feed, vec![quake("a", 1.5), quake("b", 1.5)]);
    let mut driver = Driver::spawn(
        "client.mjs",
        &[
            ("PAGE_URL", format!("{}/demo", stack.http_url)),
            ("CHANNEL", "usgs-earthquakes".to_string()),
            ("PARAMS", json!({"feed": feed}).to_string()),
            ("BLOCKED_WS", "1".to_string()),
            ("TIMEOUT_MS", "60000".to_string()),
        ],
    );
    let ready = state(driver.expect("READY").await);
    assert_eq!(ready, json!({"seq": 1, "count": 2}));
    stack
        .upstream
        .set_quakes(feed, vec![quake("b", 2.5), quake("c", 1.5)]);
    driver.send("WAIT_SEQ 4").await;
    let s = state(driver.expect("AT").await);
    assert_eq!(s["transport"], "sse", "{s}");
    assert_same_items(&stack, feed, &s).await;
    assert_eq!(s["applied"], json!([2, 3, 4]), "{s}");
    driver.send("QUIT").await;
    let status = tokio::time::timeout(Duration::from_secs(20), driver.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// A token-access channel: the client's connection token (`?token=` on the WebSocket URL, as a
/// browser must send it) admits it; the channel refuses a client without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_client_subscribes_to_a_token_channel_with_its_connection_token() {
    const SECRET: &str = "e2e-js-jwt-secret-0123456789";
    let stack = Stack::start_with(StackOptions {
        keys: Some(json!({"_restream": {"jwt_secret": SECRET}}).to_string()),
        env: vec![(
            "RESTREAM_AUTH__ACCESS".into(),
            "{\"usgs-earthquakes\" = \"token\"}".into(),
        )],
        ..StackOptions::default()
    })
    .await;
    let exp = restream::auth::now_unix() + 3600;
    let token = restream::auth::mint::hs256(
        SECRET.as_bytes(),
        Some("e2e"),
        &["usgs-earthquakes".to_string()],
        exp,
    )
    .unwrap();
    let feed = "significant_week";
    stack.upstream.set_quakes(feed, vec![quake("a", 1.5)]);
    let env = |token: Option<&str>| {
        let mut env = vec![
            ("PAGE_URL", format!("{}/demo", stack.http_url)),
            ("CHANNEL", "usgs-earthquakes".to_string()),
            ("PARAMS", json!({"feed": feed}).to_string()),
            ("TIMEOUT_MS", "5000".to_string()),
        ];
        if let Some(t) = token {
            env.push(("TOKEN", t.to_string()));
        }
        env
    };
    let mut with_token = Driver::spawn("client.mjs", &env(Some(&token)));
    let ready = state(with_token.expect("READY").await);
    assert_eq!(ready, json!({"seq": 1, "count": 1}));
    with_token.send("QUIT").await;

    // Without the token: refused (`unauthorized`), no snapshot; the driver reports the wait
    // that failed and the errors the client surfaced.
    let mut without = Driver::spawn("client.mjs", &env(None));
    let mut lines = Vec::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(60), without.stdout.next_line()).await
    {
        lines.push(line);
    }
    let report = lines.join("\n");
    assert!(
        report.starts_with("FAIL waiting for the first snapshot"),
        "{report}"
    );
    assert!(report.contains(r#""errors":["unauthorized"]"#), "{report}");
}
