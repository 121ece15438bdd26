//! Issue 18, operable on AWS: the private metrics listener scraped beside a running stack,
//! and the CloudWatch EMF lines the binary writes on stdout, read back from its output.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_port_serves_metrics_and_healthz_only() {
    let metrics_port = free_port();
    let mut stack = Stack::start_with(StackOptions {
        env: vec![(
            "RESTREAM_SERVER__METRICS_LISTEN".into(),
            format!("127.0.0.1:{metrics_port}"),
        )],
        ..StackOptions::default()
    })
    .await;
    let private = format!("http://127.0.0.1:{metrics_port}");
    let mut ws = Client::connect(&stack.ws_url).await;
    ws.subscribe("usgs-earthquakes", json!({})).await;
    ws.recv_type("snapshot", Duration::from_secs(10)).await;

    // Exposition text a parser reads, moving with the traffic.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = scrape(&format!("{private}/metrics")).await;
        let subscribers = value(&s, "restream_subscribers", &[("transport", "websocket")]);
        if value(&s, "restream_active_channels", &[]) >= 1.0 && subscribers >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "never counted: {subscribers}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{private}{path}")).send();
    let healthz = get("/healthz").await.unwrap();
    assert_eq!(healthz.status(), 200);
    assert_eq!(healthz.text().await.unwrap(), "ok\n");
    // Nothing else: not the API, not readiness details, not the WebSocket endpoint.
    for path in [
        "/readyz",
        "/channels",
        "/channels/usgs-earthquakes/items",
        "/demo",
    ] {
        let (status, body) = get_json(&format!("{private}{path}")).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!("not_found")),
            "{path}"
        );
    }
    let woh = client
        .post(format!("{private}/ws"))
        .header("Content-Type", "application/websocket-events")
        .body("OPEN\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(woh.status(), 404);
    // The public port still refuses metrics, as before.
    let (status, body) = get_json(&format!("{}/metrics", stack.http_url)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("not_found")),
        "{body}"
    );
    // It stops with the backend.
    drop(ws);
    stack.backend.terminate(Duration::from_secs(20)).await;
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", metrics_port))
        .await
        .is_err());
}

/// The EMF lines of a backend's output (stdout and stderr share its log file); every JSON
/// line must parse (an interleaved write would not).
fn emf_lines(log: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for line in log
        .lines()
        .filter(|l| l.starts_with('{') || l.contains("\"_aws\""))
    {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        if v.get("_aws").is_some() {
            out.push(v);
        }
    }
    out
}

/// The structure CloudWatch reads (the full rules are checked in `telemetry::emf`'s tests).
fn check_emf(v: &Value) {
    let directive = &v["_aws"]["CloudWatchMetrics"][0];
    assert!(v["_aws"]["Timestamp"].is_u64(), "{v}");
    assert_eq!(directive["Namespace"], "restream", "{v}");
    assert_eq!(directive["Dimensions"], json!([["Service"]]), "{v}");
    assert_eq!(v["Service"], "e2e-emf", "{v}");
    let names: Vec<&str> = directive["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ChannelsWithSubscribers",
            "ActivePollers",
            "Subscribers",
            "FailingChannels",
            "PublishFailures",
            "PollFailures",
            "LeasesLost",
            "LeasesAcquired"
        ]
    );
    for name in names {
        assert!(v[name].is_u64(), "{name} in {v}");
    }
}

fn max_of(lines: &[Value], name: &str) -> u64 {
    lines
        .iter()
        .filter_map(|l| l[name].as_u64())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emf_lines_report_gauges_and_each_failure_once() {
    let mut stack = Stack::start_with(StackOptions {
        env: vec![
            ("RESTREAM_LOG__EMF_INTERVAL_SECS".into(), "1".into()),
            ("RESTREAM_LOG__EMF_SERVICE".into(), "e2e-emf".into()),
            ("RESTREAM_LOG__FORMAT".into(), "json".into()),
        ],
        ..StackOptions::default()
    })
    .await;
    let metrics = format!("http://{}/metrics", stack.backend.addr);
    stack
        .upstream
        .fail("/earthquakes/feed/v1.0/summary/4.5_day");
    let mut ws = Client::connect(&stack.ws_url).await;
    ws.subscribe("usgs-earthquakes", json!({"feed": "4.5_day"}))
        .await;

    // Lines while the channel is subscribed and failing.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = emf_lines(&stack.backend.log_text());
        if max_of(&lines, "FailingChannels") >= 1 && max_of(&lines, "Subscribers") >= 1 {
            assert!(max_of(&lines, "ChannelsWithSubscribers") >= 1);
            assert!(max_of(&lines, "ActivePollers") >= 1);
            break;
        }
        assert!(Instant::now() < deadline, "never reported: {lines:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The client leaves; once the poller stops the failure count stands still.
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(30);
    let failures = loop {
        let s = scrape(&metrics).await;
        if value(&s, "restream_active_channels", &[]) == 0.0 {
            break value(&s, "restream_poll_failures_total", &[]);
        }
        assert!(Instant::now() < deadline, "the poller never stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(failures >= 1.0);
    // SIGTERM: the last line after the drain carries whatever the previous ones did not.
    stack.backend.terminate(Duration::from_secs(20)).await;
    let lines = emf_lines(&stack.backend.log_text());
    assert!(
        lines.len() >= 2,
        "periodic ones and a last one: {}",
        lines.len()
    );
    for line in &lines {
        check_emf(line);
    }
    let reported: u64 = lines
        .iter()
        .map(|l| l["PollFailures"].as_u64().unwrap())
        .sum();
    assert_eq!(
        reported as f64, failures,
        "every failure in exactly one line"
    );
    let last = lines.last().unwrap();
    assert_eq!(
        (
            last["ActivePollers"].as_u64(),
            last["FailingChannels"].as_u64()
        ),
        (Some(0), Some(0)),
        "{last}"
    );
    let stamps: Vec<u64> = lines
        .iter()
        .map(|l| l["_aws"]["Timestamp"].as_u64().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
}
