//! The production profile end to end: `store = dynamodb`, `keys = s3`, `fetchers = lambda`,
//! against moto and minilambda, through a real Pushpin. The change-detection flows run
//! unchanged on it, and each AWS failure degrades only its own channel.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::changes::{exactly_what_changed, late_large_snapshot};
use crate::support::*;

const TOKEN: &str = "TOKEN-aws-e2e-51c2";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fetchers")
        .join(name)
}

/// The AWS profile serving `usgs-earthquakes` from a Lambda that needs a key from S3.
fn on_aws(keys: Option<String>, extra: &[&str]) -> StackOptions {
    let mut functions = vec![fixture("usgs_keyed")];
    functions.extend(extra.iter().map(|f| fixture(f)));
    StackOptions {
        aws: Some(AwsOptions { keys, functions }),
        ..StackOptions::default()
    }
}

fn keys() -> Option<String> {
    Some(json!({"usgs-earthquakes": {"token": TOKEN}}).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_exactly_what_changed_on_aws() {
    let stack = Stack::start_with(on_aws(keys(), &[])).await;
    exactly_what_changed(&stack).await;
    let auth = stack.upstream.authorizations();
    assert!(
        !auth.is_empty() && auth.iter().all(|a| *a == format!("Bearer {TOKEN}")),
        "the key from S3 reached the upstream through Lambda: {auth:?}"
    );
    let log = stack.backend.log_text();
    assert!(
        log.contains("dynamodb"),
        "the DynamoDB store served:\n{log}"
    );
    assert!(!log.contains(TOKEN), "a key value reached the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_gets_a_large_snapshot_on_aws() {
    // 250 items of 1 KB: a first commit larger than one DynamoDB transaction.
    late_large_snapshot(&Stack::start_with(on_aws(keys(), &[])).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_failures_degrade_only_their_own_channel() {
    // No keys object yet, and a Lambda whose handler raises.
    let stack = Stack::start_with(on_aws(None, &["crash"])).await;
    let mut keyed = Client::connect(&stack.ws_url).await;
    let mut crashing = Client::connect(&stack.ws_url).await;
    let mut steady = Client::connect(&stack.ws_url).await;
    keyed.subscribe("usgs-earthquakes", json!({})).await;
    crashing.subscribe("crash", json!({})).await;
    steady
        .subscribe("open-meteo-current", json!({"latitude": 1, "longitude": 2}))
        .await;

    // Subscribers get a code and a generic sentence; the details stay in the logs.
    let (status, _) = keyed.recv_type("status", Duration::from_secs(20)).await;
    assert_eq!(status["status"], "degraded", "{status}");
    assert_eq!(status["code"], "keys_unavailable", "{status}");
    assert!(!status.to_string().contains("keys.json"), "{status}");
    let (status, _) = crashing.recv_type("status", Duration::from_secs(20)).await;
    assert_eq!(status["status"], "degraded");
    assert_eq!(status["code"], "fetcher_failed", "{status}");
    assert!(
        !status.to_string().contains("KeyError"),
        "the handler's exception stays in the logs: {status}"
    );
    let log = stack.backend.log_text();
    assert!(
        log.contains("API keys unavailable") && log.contains("KeyError"),
        "the details are logged:\n{log}"
    );
    let (snap, _) = steady.recv_type("snapshot", Duration::from_secs(20)).await;
    assert_eq!(snap["items"].as_array().unwrap().len(), 1, "{snap}");

    // The keys object appears: the next refresh picks it up and the channel recovers.
    stack.aws.as_ref().unwrap().put_keys(&keys().unwrap()).await;
    let (ok, skipped) = keyed.recv_type("snapshot", Duration::from_secs(30)).await;
    assert_eq!(ok["items"].as_array().unwrap().len(), 1, "{ok}");
    assert!(
        skipped
            .iter()
            .any(|m| m["type"] == "status" && m["status"] == "ok"),
        "an ok status announced the recovery: {skipped:?}"
    );
    // The healthy channel kept polling throughout.
    stack.upstream.bump();
    steady.recv_type("updated", Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_deployed_later_is_discovered_without_a_restart() {
    let stack = Stack::start_with(on_aws(keys(), &[])).await;
    let mut client = Client::connect(&stack.ws_url).await;
    let subscribe = json!({"action": "subscribe", "channel": "crash", "ref": "late"});
    let early = client.request(subscribe.clone()).await;
    assert_eq!(early["code"], "unknown_channel", "{early}");
    stack.aws.as_ref().unwrap().deploy(&fixture("crash")).await;
    // fetchers.refresh_secs = 1 in the test stack: the next discovery finds it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let reply = client.request(subscribe.clone()).await;
        if reply["type"] == "subscribed" {
            break;
        }
        assert_eq!(reply["code"], "unknown_channel", "{reply}");
        assert!(std::time::Instant::now() < deadline, "never discovered");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, _) = client.recv_type("status", Duration::from_secs(20)).await;
    assert_eq!(
        status["code"], "fetcher_failed",
        "the new function runs: {status}"
    );
    assert!(
        stack.backend.log_text().contains("KeyError"),
        "its exception is logged"
    );
}
