//! Issue 3 through a real Pushpin: new/updated/removed in seq order, nothing on unchanged
//! polls, a late subscriber's large snapshot with no gap, and `since` resume.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

fn quake(id: &str, mag: f64) -> Value {
    json!({"type": "Feature", "id": id, "properties": {"mag": mag}})
}

/// Channel messages until `quiet` passes without one.
async fn drain(c: &mut Client, quiet: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(m) = c.recv(quiet).await {
        out.push(m);
    }
    out
}

fn kinds(ms: &[Value]) -> Vec<(String, u64, String)> {
    ms.iter()
        .map(|m| {
            let id = m["item"]["id"].as_str().unwrap_or("").to_string();
            (
                m["type"].as_str().unwrap().to_string(),
                m["seq"].as_u64().unwrap_or(0),
                id,
            )
        })
        .collect()
}

const POLL: Duration = Duration::from_millis((POLL_INTERVAL * 1000.0) as u64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_exactly_what_changed() {
    exactly_what_changed(&Stack::start().await).await;
}

/// The flow of `clients_see_exactly_what_changed`, on any stack serving `usgs-earthquakes`.
pub async fn exactly_what_changed(stack: &Stack) {
    let feed = "4.5_month";
    stack
        .upstream
        .set_quakes(feed, vec![quake("x", 1.0), quake("y", 1.0)]);
    let mut a = Client::connect(&stack.ws_url).await;
    a.subscribe("usgs-earthquakes", json!({"feed": feed})).await;
    let (snap, _) = a.recv_type("snapshot", Duration::from_secs(10)).await;
    assert_eq!(snap["seq"], 1);
    assert_eq!(
        snap["items"].as_array().unwrap().len(),
        2,
        "{snap} {:?}",
        stack.upstream.paths()
    );

    // y changes, z appears, x is gone: three events in fetch order, removals last.
    stack
        .upstream
        .set_quakes(feed, vec![quake("y", 2.5), quake("z", 1.0)]);
    let got = drain(&mut a, POLL * 2).await;
    assert_eq!(
        kinds(&got),
        vec![
            ("updated".into(), 2, "y".into()),
            ("new".into(), 3, "z".into()),
            ("removed".into(), 4, "x".into())
        ]
    );
    assert_eq!(
        got[0]["patch"],
        json!([{"op": "replace", "path": "/properties/mag", "value": 2.5}])
    );
    assert_eq!(got[2]["item"], quake("x", 1.0));
    // Unchanged polls send nothing.
    assert!(drain(&mut a, POLL * 2).await.is_empty());

    // Resume: a client that saw up to seq 2 gets exactly 3 and 4, then live events.
    let mut r = Client::connect(&stack.ws_url).await;
    r.send(json!({"action": "subscribe", "channel": "usgs-earthquakes", "params": {"feed": feed}, "since": 2})).await;
    let got = drain(&mut r, POLL).await;
    assert_eq!(got[0]["type"], "subscribed");
    assert_eq!(
        kinds(&got[1..]),
        vec![
            ("new".into(), 3, "z".into()),
            ("removed".into(), 4, "x".into())
        ]
    );
    // Too old (before the first snapshot): a fresh snapshot marked reset.
    let mut old = Client::connect(&stack.ws_url).await;
    old.send(json!({"action": "subscribe", "channel": "usgs-earthquakes", "params": {"feed": feed}, "since": 0})).await;
    let (snap, _) = old.recv_type("snapshot", Duration::from_secs(10)).await;
    assert_eq!(snap["reset"], true);
    assert_eq!(snap["seq"], 4);

    stack.upstream.set_quakes(feed, vec![quake("y", 2.5)]);
    for c in [&mut a, &mut r, &mut old] {
        let (m, skipped) = c.recv_type("removed", POLL * 3).await;
        assert!(
            skipped
                .iter()
                .all(|s| s["type"] == "snapshot" || s["type"] == "subscribed"),
            "{skipped:?}"
        );
        assert_eq!(
            (m["seq"].as_u64(), m["item"]["id"].as_str()),
            (Some(5), Some("z"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_gets_a_large_snapshot_then_live_events() {
    late_large_snapshot(&Stack::start().await).await;
}

/// The flow of `a_late_subscriber_gets_a_large_snapshot_then_live_events`, on any stack.
pub async fn late_large_snapshot(stack: &Stack) {
    let feed = "significant_month";
    let pad = "p".repeat(1000);
    let big = |v: f64| -> Vec<Value> {
        (0..250)
            .map(|i| json!({"type": "Feature", "id": format!("q{i:03}"), "properties": {"mag": v, "pad": pad}}))
            .collect()
    };
    stack.upstream.set_quakes(feed, big(1.0));
    let mut early = Client::connect(&stack.ws_url).await;
    early
        .subscribe("usgs-earthquakes", json!({"feed": feed}))
        .await;
    early.recv_type("snapshot", Duration::from_secs(10)).await;
    let mut changed = big(1.0);
    changed[7] = json!({"type": "Feature", "id": "q007", "properties": {"mag": 9.9, "pad": pad}});
    stack.upstream.set_quakes(feed, changed.clone());
    early.recv_type("updated", POLL * 3).await;

    // The late subscriber: subscribed, then the whole snapshot (> 200 KB) in one message,
    // then the next live event with the next seq: no gap, no duplicate.
    let mut late = Client::connect(&stack.ws_url).await;
    late.send(
        json!({"action": "subscribe", "channel": "usgs-earthquakes", "params": {"feed": feed}}),
    )
    .await;
    let first = late.recv(Duration::from_secs(10)).await.unwrap();
    assert_eq!(first["type"], "subscribed");
    let snap = late.recv(Duration::from_secs(10)).await.unwrap();
    assert_eq!(snap["type"], "snapshot");
    assert!(
        snap.to_string().len() > 200_000,
        "snapshot is {} bytes",
        snap.to_string().len()
    );
    assert_eq!(snap["items"].as_array().unwrap().len(), 250);
    assert_eq!(snap["seq"], 2);
    assert_eq!(snap["items"][7]["properties"]["mag"], 9.9);

    changed[8] = json!({"type": "Feature", "id": "q008", "properties": {"mag": 8.8, "pad": pad}});
    stack.upstream.set_quakes(feed, changed);
    let next = late.recv(POLL * 3).await.unwrap();
    assert_eq!(
        (next["type"].as_str(), next["seq"].as_u64()),
        (Some("updated"), Some(3))
    );
    assert_eq!(next["item"]["id"], "q008");
    assert!(
        drain(&mut late, POLL).await.is_empty(),
        "nothing duplicated"
    );
}

/// A poll with hundreds of changes reaches a live WebSocket subscriber whole: Pushpin drops
/// WebSocket messages a connection's buffer cannot take at once, so the poller hands them
/// over in paced chunks (`pushpin.ws_burst_bytes`).
fn quarter_buffer_bursts(settings: &mut restream::config::Settings) {
    // A quarter of Pushpin's 8192-byte buffer per burst: headroom for a test client that drains
    // slowly on a loaded CI machine (the default, 6144, leaves a quarter).
    settings.pushpin.ws_burst_bytes = 2048;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_with_hundreds_of_changes_reaches_a_websocket_whole() {
    let stack = Stack::start_with(StackOptions {
        configure: Some(quarter_buffer_bursts),
        ..StackOptions::default()
    })
    .await;
    let feed = "2.5_week";
    stack.upstream.set_quakes(feed, vec![quake("first", 1.0)]);
    let mut c = Client::connect(&stack.ws_url).await;
    c.subscribe("usgs-earthquakes", json!({"feed": feed})).await;
    let (snap, _) = c.recv_type("snapshot", Duration::from_secs(10)).await;
    assert_eq!(snap["seq"], 1);
    let many: Vec<Value> = std::iter::once(quake("first", 1.0))
        .chain((0..300).map(|i| quake(&format!("q{i:03}"), 2.0)))
        .collect();
    stack.upstream.set_quakes(feed, many);
    let mut seqs = Vec::new();
    while seqs.len() < 300 {
        let Some(m) = c.recv(POLL * 10).await else {
            panic!("got {} of 300 events, then nothing", seqs.len());
        };
        assert_eq!(m["type"], "new", "{m}");
        seqs.push(m["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, (2..=301).collect::<Vec<_>>(), "every event, in order");
}

/// Issue 21: once a channel's snapshot was answered, later fresh subscribers get it inline in
/// their WOH response, right after `subscribed`; a change makes it stale (the next one is
/// published, then kept again), and nobody gets an event twice or misses one.
/// Fresh subscribers served the kept snapshot inline all through a change: those served in
/// the moment before the change (their subscription not yet surely applied in Pushpin) are
/// handed back to the poller, which publishes the change after that moment and resumes them.
/// Following the client rule, every one ends at the new state without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_subscribers_served_inline_around_a_change_miss_nothing() {
    let stack = Stack::start().await;
    let feed = "1.0_hour";
    let metrics = format!("http://{}/metrics", stack.backend.addr);
    stack.upstream.set_quakes(feed, vec![quake("a", 1.0)]);
    let params = json!({"feed": feed});
    // The first gets the broadcast first snapshot, the second the poller's, kept from then on.
    let mut first = Vec::new();
    for _ in 0..2 {
        let mut c = Client::connect(&stack.ws_url).await;
        c.subscribe("usgs-earthquakes", params.clone()).await;
        c.recv_type("snapshot", Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.push(c);
    }
    stack.upstream.set_quakes(feed, vec![quake("a", 2.0)]);
    // A new subscriber every 40 ms for two intervals: the change lands among them.
    let mut clients = Vec::new();
    let until = tokio::time::Instant::now() + POLL * 2;
    while tokio::time::Instant::now() < until {
        let mut c = Client::connect(&stack.ws_url).await;
        c.subscribe("usgs-earthquakes", params.clone()).await;
        clients.push(c);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    tokio::time::sleep(POLL).await;
    let got = futures_util::future::join_all(
        clients
            .iter_mut()
            .map(|c| drain(c, Duration::from_millis(500))),
    )
    .await;
    let (mut before, mut after) = (0, 0);
    for messages in &got {
        // The client rule (docs/protocol.md): a snapshot newer than what is held replaces it;
        // events count only after a snapshot and only above the seq held, one at a time.
        let mut held: Option<(u64, Value)> = None;
        for m in messages {
            let seq = m["seq"].as_u64().expect("a seq");
            match (m["type"].as_str(), &held) {
                (Some("snapshot"), None) => {
                    let mag = m["items"][0]["properties"]["mag"].clone();
                    if seq == 1 {
                        before += 1;
                    } else {
                        after += 1;
                    }
                    held = Some((seq, mag));
                }
                (Some("snapshot"), Some((at, _))) if seq > *at => {
                    held = Some((seq, m["items"][0]["properties"]["mag"].clone()));
                }
                (_, Some((at, _))) if seq <= *at => {} // Already applied.
                (Some("updated"), Some((at, _))) => {
                    assert_eq!(seq, at + 1, "no gap: {messages:?}");
                    held = Some((seq, m["item"]["properties"]["mag"].clone()));
                }
                _ => panic!("unexpected {m} in {messages:?}"),
            }
        }
        assert_eq!(
            held,
            Some((2, json!(2.0))),
            "at the new state: {messages:?}"
        );
    }
    assert!(
        before > 0 && after > 0,
        "the change came among them: {before} / {after}"
    );
    let m = scrape(&metrics).await;
    let event = |e| value(&m, "restream_snapshot_cache_events_total", &[("event", e)]);
    assert!(event("inline") > 0.0, "served from the cache");
    eprintln!(
        "{} subscribers: {before} before the change, {after} after; {} handed back to the poller",
        got.len(),
        event("resume_owed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_fresh_subscribers_get_the_kept_snapshot_inline() {
    let stack = Stack::start().await;
    let feed = "2.5_week";
    let metrics = format!("http://{}/metrics", stack.backend.addr);
    let inline = || async {
        let m = scrape(&metrics).await;
        value(
            &m,
            "restream_snapshot_cache_events_total",
            &[("event", "inline")],
        )
    };
    stack.upstream.set_quakes(feed, vec![quake("a", 1.0)]);
    let params = json!({"feed": feed});
    let mut clients = Vec::new();
    for expected_inline in [0.0, 0.0, 1.0] {
        // The first gets the broadcast first snapshot, the second its own (kept), the third
        // the kept one.
        let mut c = Client::connect(&stack.ws_url).await;
        c.subscribe("usgs-earthquakes", params.clone()).await;
        let (snap, skipped) = c.recv_type("snapshot", Duration::from_secs(10)).await;
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(
            (snap["seq"].as_u64(), snap["reset"].as_bool()),
            (Some(1), None)
        );
        assert_eq!(inline().await, expected_inline);
        tokio::time::sleep(Duration::from_millis(300)).await;
        clients.push(c);
    }

    stack.upstream.set_quakes(feed, vec![quake("a", 2.0)]);
    for c in &mut clients {
        let got = drain(c, POLL * 2).await;
        assert_eq!(
            kinds(&got),
            vec![("updated".into(), 2, "a".into())],
            "{got:?}"
        );
    }
    for expected_inline in [1.0, 2.0] {
        let mut c = Client::connect(&stack.ws_url).await;
        c.subscribe("usgs-earthquakes", params.clone()).await;
        let (snap, _) = c.recv_type("snapshot", Duration::from_secs(10)).await;
        assert_eq!(snap["seq"], 2, "the stale one is never sent: {snap}");
        assert_eq!(snap["items"][0]["properties"]["mag"], 2.0);
        assert_eq!(inline().await, expected_inline);
        assert!(drain(&mut c, Duration::from_millis(500)).await.is_empty());
    }
}
