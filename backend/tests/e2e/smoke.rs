//! Both publish paths (ZeroMQ PUSH and HTTP `/publish`) deliver in order with GRIP ids.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

async fn items_arrive_in_order(publish: &'static str) {
    let stack = Stack::start_with(StackOptions {
        publish,
        ..StackOptions::default()
    })
    .await;
    let mut c = Client::connect(&stack.ws_url).await;
    let r = c
        .request(json!({"action": "subscribe", "channel": "usgs-earthquakes", "params": {"feed": "1.0_day"}, "ref": "s1"}))
        .await;
    assert_eq!(
        r,
        json!({"type": "subscribed", "channel": "usgs-earthquakes", "params": {"feed": "1.0_day"}, "ref": "s1"})
    );
    // The first poll arrives as one snapshot.
    let (first, _) = c.recv_type("snapshot", Duration::from_secs(10)).await;
    assert_eq!(first["items"][0]["id"], "1.0_day-g0");
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    for _ in 0..3 {
        stack.upstream.bump();
    }
    let mut seqs = vec![first["seq"].as_u64().unwrap()];
    for _ in 0..3 {
        let (m, _) = c.recv_type("new", Duration::from_secs(10)).await;
        seqs.push(m["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, vec![1, 2, 3, 4], "seq increases by one per event");
    // The container healthcheck command agrees the backend is up.
    let health = |addr: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_restream"))
            .arg("health")
            .env("RESTREAM_SERVER__LISTEN", addr)
            .output()
            .unwrap()
    };
    let up = health(stack.backend.addr.to_string());
    assert!(up.status.success(), "{up:?}");
    let down = health(format!("127.0.0.1:{}", free_port()));
    assert!(!down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("no answer from http://127.0.0.1:"),
        "{down:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_publish_delivers() {
    items_arrive_in_order("zmq").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publish_delivers() {
    items_arrive_in_order("http").await;
}
