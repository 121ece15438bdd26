//! API keys through the whole stack: a key reaches the upstream where the fetcher puts it and
//! never appears in the backend's logs, the status API or the metrics, even when the upstream
//! echoes it back in an error.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const KEY: &str = "KEY-e2e-7f3a9c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reach_the_upstream_and_never_the_logs() {
    let stack = Stack::start_with(StackOptions {
        keys: Some(json!({"nyt-top": {"api-key": KEY}}).to_string()),
        ..StackOptions::default()
    })
    .await;
    let recorded = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../functions/nyt_top/testdata/home.json"
    ))
    .unwrap();
    stack.upstream.set_body(
        "/svc/topstories/v2/world.json",
        serde_json::from_str(&recorded).unwrap(),
    );

    let mut c = Client::connect(&stack.ws_url).await;
    c.subscribe("nyt-top", json!({"section": "world"})).await;
    let (snap, _) = c.recv_type("snapshot", Duration::from_secs(10)).await;
    assert!(!snap["items"].as_array().unwrap().is_empty());
    let paths = stack.upstream.paths();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/svc/topstories/v2/world.json?") && p.contains(KEY)),
        "{paths:?}"
    );

    // Now the upstream fails with a body that echoes the URL, key included.
    stack.upstream.fail("/svc/topstories/v2/world.json");
    tokio::time::sleep(Duration::from_secs_f64(POLL_INTERVAL * 2.5)).await;
    let log = stack.backend.log_text();
    assert!(
        log.contains("upstream of nyt_top failed with status 500"),
        "the failure is logged, naming the fetcher:\n{log}"
    );
    assert!(
        !log.contains(KEY),
        "a key value appeared in the backend log:\n{log}"
    );
    // Nor in the API a client can read, nor in the metrics.
    let (_, status) = get_json(&format!(
        "{}/channels/nyt-top?section=world",
        stack.http_url
    ))
    .await;
    assert_eq!(status["upstream"]["status"], "degraded", "{status}");
    assert!(!status.to_string().contains(KEY), "{status}");
    let metrics = reqwest::get(format!("http://{}/metrics", stack.backend.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("restream_polls_total"));
    assert!(!metrics.contains(KEY), "a key value appeared in /metrics");
}
