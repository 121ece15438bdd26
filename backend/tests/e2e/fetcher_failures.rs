//! A fetcher that crashes, prints garbage, fails upstream or hangs is retried next interval;
//! the backend, its other channels and its clients carry on.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_fetcher_is_retried_and_harms_nobody() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fetchers");
    let state_dir = tempfile::tempdir().unwrap();
    let stack = Stack::start_with(StackOptions {
        extra_fetchers: vec![fixtures.join("flaky")],
        fetcher_timeout_secs: 2.0,
        env: vec![(
            "FLAKY_STATE".into(),
            state_dir.path().join("calls").display().to_string(),
        )],
        ..StackOptions::default()
    })
    .await;
    let mut flaky = Client::connect(&stack.ws_url).await;
    let mut steady = Client::connect(&stack.ws_url).await;
    flaky.subscribe("flaky", json!({})).await;
    steady.subscribe("usgs-earthquakes", json!({})).await;
    steady.recv_type("snapshot", Duration::from_secs(10)).await;

    // Calls 0-3 fail (crash, garbage, 503, hang past the 2 s timeout); call 4 succeeds.
    // Subscribers hear `degraded` when the failures start (not once per failed poll), `ok`
    // when they end, and no items until then.
    let (m, before) = flaky.recv_type("snapshot", Duration::from_secs(30)).await;
    assert_eq!(m["items"][0]["id"], "call-4", "{m}");
    assert!(
        before.iter().all(|s| s["type"] == "status"),
        "only statuses before the data: {before:?}"
    );
    let first = before.first().expect("a degraded status");
    assert_eq!(first["status"], "degraded");
    assert_eq!(first["code"], "fetcher_failed", "{first}");
    assert_eq!(
        first["error"], "fetching this channel failed; retrying",
        "{first}"
    );
    assert!(
        stack.backend.log_text().contains("fetcher flaky crashed"),
        "the details are logged"
    );
    let retry_in = first["retry_in"].as_f64().unwrap();
    assert!(
        (0.8..=1.2).contains(&retry_in),
        "first retry after about one interval: {retry_in}"
    );
    assert!(before.len() <= 3, "transitions only: {before:?}");
    let last = before.last().unwrap();
    assert_eq!(
        (last["status"].as_str(), last.get("error")),
        (Some("ok"), None)
    );

    // Meanwhile the other channel kept going.
    let g = stack.upstream.bump();
    let (m, _) = steady.recv_type("new", Duration::from_secs(10)).await;
    assert_eq!(m["item"]["id"], format!("all_hour-g{g}"));

    let log = stack.backend.log_text();
    for needle in [
        "fetcher flaky crashed",
        "fetcher flaky returned an invalid response",
        "status 503",
        "did not answer within 2.0s",
    ] {
        assert!(log.contains(needle), "log lacks {needle:?}:\n{log}");
    }
}
