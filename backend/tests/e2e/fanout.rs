//! Must-show 1: many clients, several channels (some with params), one upstream request per
//! channel per poll interval, and each client gets exactly its channels' items.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

const CLIENTS: usize = 240;

/// (channel, params, upstream path fragment). The first two are one channel: the default
/// spelled out must share the id, the poller and the upstream request.
fn channels() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("usgs-earthquakes", json!({}), "summary/all_hour"),
        (
            "usgs-earthquakes",
            json!({"feed": "all_hour"}),
            "summary/all_hour",
        ),
        (
            "usgs-earthquakes",
            json!({"feed": "2.5_day"}),
            "summary/2.5_day",
        ),
        (
            "open-meteo-current",
            json!({"latitude": 52.52, "longitude": "13.41"}),
            "latitude=52.52",
        ),
        (
            "open-meteo-current",
            json!({"latitude": "-33.9", "longitude": 151.2}),
            "latitude=-33.9",
        ),
    ]
}

/// The upstream path a received channel message belongs to.
fn fragment_of(m: &Value) -> &'static str {
    match (m["channel"].as_str().unwrap(), &m["params"]) {
        ("usgs-earthquakes", p) if p["feed"] == "all_hour" => "summary/all_hour",
        ("usgs-earthquakes", p) if p["feed"] == "2.5_day" => "summary/2.5_day",
        ("open-meteo-current", p) if p["latitude"] == "52.52" => "latitude=52.52",
        ("open-meteo-current", p) if p["latitude"] == "-33.9" => "latitude=-33.9",
        other => panic!("message for an unexpected channel: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_gets_its_channels_with_one_upstream_call_per_interval() {
    let stack = Stack::start().await;
    let all = channels();
    // Client i subscribes to one channel, and every third client to a second one too.
    let plan: Vec<Vec<usize>> = (0..CLIENTS)
        .map(|i| {
            let mut s = vec![i % all.len()];
            if i % 3 == 0 {
                s.push((i + 2) % all.len());
            }
            s
        })
        .collect();

    // Connect in waves of 40: Pushpin 1.36 answers 502 to bursts of ~100+ simultaneous opens.
    let mut clients = Vec::new();
    for wave in plan.chunks(40) {
        let futs = wave.iter().map(|subs| {
            let url = stack.ws_url.clone();
            let all = all.clone();
            let subs = subs.clone();
            async move {
                let mut c = Client::connect(&url).await;
                for &s in &subs {
                    c.subscribe(all[s].0, all[s].1.clone()).await;
                }
                c
            }
        });
        clients.extend(futures_util::future::join_all(futs).await);
    }
    let subscribed_at = Instant::now();

    // Two upstream changes, each after everyone is subscribed.
    let mut generations = Vec::new();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs_f64(POLL_INTERVAL * 1.5)).await;
        generations.push(stack.upstream.bump());
    }
    tokio::time::sleep(Duration::from_secs_f64(POLL_INTERVAL * 2.5)).await;
    let window_end = Instant::now();

    // Drain every client and check it got exactly its channels, including both changes.
    let results =
        futures_util::future::join_all(clients.iter_mut().zip(&plan).map(|(c, subs)| async move {
            let mut got: HashMap<&'static str, BTreeSet<String>> = HashMap::new();
            while let Some(m) = c.recv(Duration::from_millis(300)).await {
                let kind = m["type"].as_str().unwrap().to_string();
                let items: Vec<Value> = match kind.as_str() {
                    "snapshot" => m["items"].as_array().unwrap().clone(),
                    "new" | "updated" => vec![m["item"].clone()],
                    _ => panic!("unexpected {m}"),
                };
                for item in items {
                    let marker = item["id"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| item["temperature_2m"].to_string());
                    got.entry(fragment_of(&m)).or_default().insert(marker);
                }
            }
            (subs.clone(), got)
        }))
        .await;

    for (i, (subs, got)) in results.iter().enumerate() {
        let wanted: BTreeSet<&str> = subs.iter().map(|&s| all[s].2).collect();
        let received: BTreeSet<&str> = got.keys().copied().collect();
        assert_eq!(
            received, wanted,
            "client {i} received channels {received:?}, subscribed {wanted:?}"
        );
        for fragment in &wanted {
            for g in &generations {
                let marker = if fragment.starts_with("summary/") {
                    format!("{}-g{g}", fragment.trim_start_matches("summary/"))
                } else {
                    format!("{g}.0")
                };
                assert!(
                    got[fragment].contains(&marker),
                    "client {i} missed {marker} on {fragment}: {:?}",
                    got[fragment]
                );
            }
        }
    }

    // Upstream load: one request per channel per interval, whatever the number of clients.
    let paths = stack.upstream.paths();
    assert_eq!(
        paths.len(),
        4,
        "one upstream resource per distinct channel: {paths:?}"
    );
    for (_, _, fragment) in all.iter().skip(1) {
        let times: Vec<_> = stack
            .upstream
            .requests(fragment)
            .into_iter()
            .filter(|t| *t >= subscribed_at && *t <= window_end)
            .collect();
        let window = (window_end - subscribed_at).as_secs_f64();
        let expected = window / POLL_INTERVAL;
        let (min_gap, max_gap) = gaps(&times);
        assert!(
            (times.len() as f64 - expected).abs() <= 1.0,
            "{fragment}: {} requests in {window:.1}s, expected about {expected:.1}",
            times.len()
        );
        assert!(
            min_gap >= Duration::from_secs_f64(POLL_INTERVAL * 0.5) && max_gap <= Duration::from_secs_f64(POLL_INTERVAL * 1.75),
            "{fragment}: request gaps between {min_gap:?} and {max_gap:?}, interval {POLL_INTERVAL}s"
        );
    }
}
