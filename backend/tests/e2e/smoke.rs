use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_receives_items() {
    let stack = Stack::start().await;
    let mut c = Client::connect(&stack.ws_url).await;
    c.subscribe("usgs-earthquakes", json!({})).await;
    let (m, _) = c.recv_type("new", Duration::from_secs(10)).await;
    assert_eq!(m["channel"], "usgs-earthquakes");
    println!("{m}");
    println!("{}", stack.backend.log_text());
}
