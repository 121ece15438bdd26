//! Issue 17's abuse bounds through a real Pushpin: channel caps, subscribe churn per connection
//! and per client address (X-Forwarded-For as Pushpin appends it), snapshot re-sends, params
//! checked and normalised at subscribe, SSE opens per address. A counting fake upstream shows
//! that nothing refused costs an upstream call.

use std::collections::HashSet;
use std::time::Duration;

use restream::config::Settings;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::*;

const CAPPED: &str = r#"
name = "capped"
url = "{base}/capped/{n}.json"
base_url_env = "USGS_BASE_URL"
items = ""
id_field = "id"
poll_interval = 1
complete = true
max_channels = 50
[params.n]
required = true
"#;

const NUMBERED: &str = r#"
name = "numbered"
url = "{base}/numbered/{n}.json"
base_url_env = "USGS_BASE_URL"
items = ""
id_field = "id"
poll_interval = 1
complete = true
[params.n]
required = true
type = "number"
"#;

/// The replies (not channel events) to `n` requests sent on `c`.
async fn replies(c: &mut Client, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = c
            .recv(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("{} of {n} replies, then nothing", out.len()));
        if matches!(m["type"].as_str(), Some("subscribed" | "error")) {
            out.push(m);
        }
    }
    out
}

fn distinct_paths(stack: &Stack, prefix: &str) -> HashSet<String> {
    stack
        .upstream
        .paths()
        .into_iter()
        .filter(|p| p.starts_with(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_cap_bounds_pollers_and_never_starves_existing_channels() {
    let stack = Stack::start_with(StackOptions {
        extra_channels: vec![("capped.toml", CAPPED.to_string())],
        ..StackOptions::default()
    })
    .await;
    stack.upstream.set_body("/capped/", json!([{"id": 1}]));
    let mut existing = Client::connect(&stack.ws_url).await;
    existing.subscribe("capped", json!({"n": 0})).await;
    existing
        .recv_type("snapshot", Duration::from_secs(10))
        .await;

    // One client: 15 connections × 20 subscriptions, 300 distinct channels, all at once.
    let mut flood = Vec::new();
    for c in 0..15 {
        let mut ws = Client::connect(&stack.ws_url).await;
        for s in 0..20 {
            let n = 1 + c * 20 + s;
            ws.send(json!({"action": "subscribe", "channel": "capped", "params": {"n": n}}))
                .await;
        }
        flood.push(ws);
    }
    let (mut admitted, mut refused) = (0, 0);
    for ws in &mut flood {
        for m in replies(ws, 20).await {
            match (m["type"].as_str(), m["code"].as_str()) {
                (Some("subscribed"), _) => admitted += 1,
                (Some("error"), Some("too_many_channels")) => refused += 1,
                other => panic!("unexpected reply {other:?}: {m}"),
            }
        }
    }
    assert_eq!(
        admitted, 49,
        "the cap of 50 holds the existing channel and 49 new ones"
    );
    assert_eq!(refused, 251);

    // Another client's subscribe to the existing channel is admitted and served.
    let mut second = Client::connect(&stack.ws_url).await;
    second.subscribe("capped", json!({"n": 0})).await;
    second.recv_type("snapshot", Duration::from_secs(10)).await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    let polled = distinct_paths(&stack, "/capped/");
    assert!(polled.len() <= 50, "{} channels polled", polled.len());
    assert!(polled.contains("/capped/0.json"));
    let m = scrape(&format!("http://{}/metrics", stack.backend.addr)).await;
    assert_eq!(
        value(
            &m,
            "restream_subscribe_refusals_total",
            &[
                ("code", "too_many_channels"),
                ("limit", "channels_per_fetcher")
            ]
        ),
        251.0
    );
    drop((flood, existing));
}

fn churn(s: &mut Settings) {
    s.limits.connection_subscribe_burst = 5;
    s.limits.connection_subscribes_per_sec = 0.2;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_churn_on_a_connection_is_rate_limited_with_retry_after() {
    let stack = Stack::start_with(StackOptions {
        configure: Some(churn),
        ..StackOptions::default()
    })
    .await;
    let mut c = Client::connect(&stack.ws_url).await;
    for feed in [
        "1.0_day", "2.5_day", "4.5_day", "1.0_day", "2.5_day", "4.5_day", "all_day",
    ] {
        c.send(
            json!({"action": "subscribe", "channel": "usgs-earthquakes", "params": {"feed": feed}}),
        )
        .await;
    }
    let got = replies(&mut c, 7).await;
    let types: Vec<_> = got.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(types[..5], ["subscribed"; 5], "{got:?}");
    for m in &got[5..] {
        assert_eq!(m["code"], "rate_limited", "{m}");
        assert!(
            m["retry_after"]
                .as_u64()
                .is_some_and(|s| (1..=5).contains(&s)),
            "{m}"
        );
    }
    assert!(
        stack.upstream.requests("/all_day").is_empty(),
        "a refused subscribe polls nothing"
    );
    // Another connection has its own budget.
    let mut other = Client::connect(&stack.ws_url).await;
    other
        .subscribe("usgs-earthquakes", json!({"feed": "all_day"}))
        .await;
}

/// A client that sends its own `X-Forwarded-For` (which Pushpin keeps and appends to).
async fn connect_claiming(stack: &Stack, address: &str) -> Client {
    let mut request = stack.ws_url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("X-Forwarded-For", address.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let ready = restream_testkit::clients::ws::next_message(&mut ws, Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ready["type"], "ready");
    Client { ws }
}

async fn subscribe_feeds(c: &mut Client, feeds: &[&str]) -> Vec<Value> {
    for feed in feeds {
        c.send(
            json!({"action": "subscribe", "channel": "usgs-earthquakes", "params": {"feed": feed}}),
        )
        .await;
    }
    replies(c, feeds.len()).await
}

fn codes(replies: &[Value]) -> Vec<&str> {
    replies
        .iter()
        .map(|m| m["code"].as_str().unwrap_or("ok"))
        .collect()
}

const FEEDS: [&str; 4] = ["1.0_day", "2.5_day", "4.5_day", "all_day"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_per_address_counts_the_address_pushpin_saw_not_the_one_claimed() {
    fn configure(s: &mut Settings) {
        s.limits.address_subscribe_burst = 6;
        s.limits.address_subscribes_per_sec = 0.1;
    }
    let stack = Stack::start_with(StackOptions {
        configure: Some(configure),
        ..StackOptions::default()
    })
    .await;
    // Both claim other addresses; Pushpin (`x_forwarded_for=truncate:0,append`) replaces the
    // header with the address it saw (127.0.0.1), which counts.
    let mut a = connect_claiming(&stack, "203.0.113.1").await;
    let mut b = connect_claiming(&stack, "203.0.113.2").await;
    assert_eq!(codes(&subscribe_feeds(&mut a, &FEEDS).await), ["ok"; 4]);
    assert_eq!(
        codes(&subscribe_feeds(&mut b, &FEEDS).await),
        ["ok", "ok", "rate_limited", "rate_limited"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_flood_sends_few_snapshots() {
    fn configure(s: &mut Settings) {
        s.limits.snapshot_resend_secs = 60.0;
    }
    let stack = Stack::start_with(StackOptions {
        configure: Some(configure),
        ..StackOptions::default()
    })
    .await;
    let mut c = Client::connect(&stack.ws_url).await;
    let subscribe = json!({"action": "subscribe", "channel": "usgs-earthquakes", "params": {"feed": "1.0_day"}});
    c.send(subscribe.clone()).await;
    c.recv_type("snapshot", Duration::from_secs(10)).await;
    for _ in 0..100 {
        c.send(subscribe.clone()).await;
    }
    let (mut confirmed, mut snapshots) = (0, 0);
    while let Some(m) = c.recv(Duration::from_secs(2)).await {
        match m["type"].as_str() {
            Some("subscribed") => confirmed += 1,
            Some("snapshot") => snapshots += 1,
            _ => {}
        }
    }
    assert_eq!(confirmed, 100, "every repeated subscribe is confirmed");
    assert!(snapshots <= 1, "{snapshots} snapshots re-sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_are_checked_and_normalised_before_anything_is_spent() {
    let stack = Stack::start_with(StackOptions {
        extra_channels: vec![("numbered.toml", NUMBERED.to_string())],
        ..StackOptions::default()
    })
    .await;
    stack.upstream.set_body("/numbered/", json!([{"id": 1}]));
    let mut c = Client::connect(&stack.ws_url).await;
    let reply = c
        .request(json!({"action": "subscribe", "channel": "usgs-earthquakes", "params": {"feed": "everything"}}))
        .await;
    assert_eq!(reply["code"], "invalid_params", "{reply}");
    let reply = c
        .request(json!({"action": "subscribe", "channel": "numbered", "params": {"n": "one"}}))
        .await;
    assert_eq!(reply["code"], "invalid_params", "{reply}");
    // "1", "01" and "1.0" are one channel.
    for n in [json!("1"), json!("01"), json!(1.0)] {
        let reply = c.subscribe("numbered", json!({ "n": n })).await;
        assert_eq!(reply["params"], json!({"n": "1"}), "{reply}");
    }
    c.recv_type("snapshot", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        distinct_paths(&stack, "/numbered/"),
        HashSet::from(["/numbered/1.json".to_string()])
    );
    assert!(
        distinct_paths(&stack, "/earthquakes/").is_empty(),
        "no upstream call"
    );
    let m = scrape(&format!("http://{}/metrics", stack.backend.addr)).await;
    assert_eq!(
        value(
            &m,
            "restream_budget_used_calls",
            &[("budget", "fetcher:usgs-earthquakes")]
        ),
        0.0,
        "no budget used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_opens_per_address_are_bounded_with_429_and_retry_after() {
    fn configure(s: &mut Settings) {
        s.limits.sse_open_burst = 3;
        s.limits.sse_opens_per_sec = 0.1;
    }
    let stack = Stack::start_with(StackOptions {
        configure: Some(configure),
        ..StackOptions::default()
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!(
        "{}/channels/usgs-earthquakes/events?feed=1.0_day",
        stack.http_url
    );
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..6 {
        let response = http.get(&url).send().await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            let retry = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .to_string();
            let body: Value = response.json().await.unwrap();
            refused = Some((retry, body));
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    let (retry, body) = refused.unwrap();
    assert!(retry.parse::<u64>().is_ok_and(|s| s >= 1), "{retry}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // Refused opens started nothing: one channel, polled by its one poller.
    let m = scrape(&format!("http://{}/metrics", stack.backend.addr)).await;
    assert_eq!(
        value(
            &m,
            "restream_subscribe_refusals_total",
            &[("code", "rate_limited"), ("limit", "sse_address")]
        ),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_meet_the_same_channel_caps() {
    fn configure(s: &mut Settings) {
        s.limits.max_channels_per_fetcher.insert("capped".into(), 2);
    }
    let stack = Stack::start_with(StackOptions {
        extra_channels: vec![("capped.toml", CAPPED.to_string())],
        configure: Some(configure),
        ..StackOptions::default()
    })
    .await;
    stack.upstream.set_body("/capped/", json!([{"id": 1}]));
    let mut first = SseClient::connect(&stack.http_url, "/channels/capped/events?n=1", None).await;
    first.next_of("snapshot", Duration::from_secs(10)).await;
    let _second = SseClient::connect(&stack.http_url, "/channels/capped/events?n=2", None).await;
    let refused = reqwest::get(format!("{}/channels/capped/events?n=3", stack.http_url))
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_channels", "{body}");
    // A channel already active is always served.
    let mut again = SseClient::connect(&stack.http_url, "/channels/capped/events?n=1", None).await;
    again.next_of("snapshot", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!distinct_paths(&stack, "/capped/").contains("/capped/3.json"));
}
