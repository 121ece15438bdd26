//! Issue 17: the items and status API read only what they return, through a real Pushpin. A
//! channel of 500 items pages one at a time and a hundred at a time with the opaque `cursor`,
//! `limit` is capped by `state.items_page_max`, the status API counts the items, and repeated
//! reads of the unchanged channel are served from the read cache (its metric says so), on the
//! embedded store and on DynamoDB. Clients see the API unchanged.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const ITEMS: usize = 500;
const PAGE_MAX: usize = 200;

fn options(aws: Option<AwsOptions>) -> StackOptions {
    StackOptions {
        env: vec![(
            "RESTREAM_STATE__ITEMS_PAGE_MAX".into(),
            PAGE_MAX.to_string(),
        )],
        aws,
        ..StackOptions::default()
    }
}

/// `restream_read_cache_events_total{event}` from the backend's `/metrics`.
async fn cache_events(stack: &Stack, event: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", stack.backend.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let needle = format!("restream_read_cache_events_total{{event=\"{event}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

async fn pages_of_a_large_channel(stack: &Stack) {
    let api = &stack.http_url;
    let quakes: Vec<Value> = (0..ITEMS)
        .map(|i| json!({"type": "Feature", "id": format!("q{i:04}"), "properties": {"mag": i}}))
        .collect();
    let expected: Vec<String> = (0..ITEMS).map(|i| format!("q{i:04}")).collect();
    stack.upstream.set_quakes("all_week", quakes);
    let mut c = Client::connect(&stack.ws_url).await;
    c.subscribe("usgs-earthquakes", json!({"feed": "all_week"}))
        .await;
    let (snapshot, _) = c.recv_type("snapshot", Duration::from_secs(20)).await;
    assert_eq!(snapshot["items"].as_array().unwrap().len(), ITEMS);
    let items =
        |query: &str| format!("{api}/channels/usgs-earthquakes/items?feed=all_week&{query}");

    // limit=1: one item, and a cursor that continues exactly after it.
    let (s, first) = get_json(&items("limit=1")).await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(
        (ids(&first), &first["seq"]),
        (vec!["q0000".to_string()], &json!(1))
    );
    let cursor = first["next_cursor"]
        .as_str()
        .expect("more pages")
        .to_string();
    let (_, second) = get_json(&items(&format!("limit=1&cursor={cursor}"))).await;
    assert_eq!(ids(&second), vec!["q0001".to_string()]);

    // A hundred at a time from the start: every item once, in order, the last page says so.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let query = match &cursor {
            None => "limit=100".to_string(),
            Some(c) => format!("limit=100&cursor={c}"),
        };
        let (s, page) = get_json(&items(&query)).await;
        assert_eq!(s, 200, "{page}");
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, expected, "every item exactly once, in id order");

    // The default page, and the cap from state.items_page_max.
    let (_, default) = get_json(&items("")).await;
    assert_eq!(ids(&default).len(), 100);
    let (_, max) = get_json(&items(&format!("limit={PAGE_MAX}"))).await;
    assert_eq!(ids(&max).len(), PAGE_MAX);
    let (s, over) = get_json(&items(&format!("limit={}", PAGE_MAX + 1))).await;
    assert_eq!(
        (s, &over["error"]["code"]),
        (400, &json!("bad_limit")),
        "{over}"
    );

    // The status API, unchanged for clients.
    let status_url = format!("{api}/channels/usgs-earthquakes?feed=all_week");
    let (s, status) = get_json(&status_url).await;
    assert_eq!(s, 200, "{status}");
    assert_eq!(
        (&status["seq"], &status["item_count"]),
        (&json!(1), &json!(ITEMS))
    );

    // The same page again: served from the cache.
    let hits = cache_events(stack, "hit").await;
    let (_, again) = get_json(&items("limit=1")).await;
    assert_eq!(ids(&again), vec!["q0000".to_string()]);
    assert!(
        cache_events(stack, "hit").await > hits,
        "a repeated read is a cache hit"
    );

    // The last page, from a cursor.
    let (_, last) = get_json(&items("limit=1&cursor=q0498")).await;
    assert_eq!(
        (ids(&last), &last["next_cursor"]),
        (vec!["q0499".to_string()], &Value::Null)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_items_api_pages_a_large_channel() {
    let stack = Stack::start_with(options(None)).await;
    pages_of_a_large_channel(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_items_api_pages_a_large_channel_on_dynamodb() {
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fetchers/usgs_keyed");
    let stack = Stack::start_with(options(Some(AwsOptions {
        keys: Some(json!({"usgs-earthquakes": {"token": "item-pages"}}).to_string()),
        functions: vec![fixture],
    })))
    .await;
    pages_of_a_large_channel(&stack).await;
}
