//! Issue 20 through a real Pushpin: `GET /history` over push channels (events and items
//! mode, with and without params) and a polled channel equals a brute-force merge of each
//! channel's own history by (time, channel id, seq), paged or not; one cursor continues the
//! whole set, also while producers publish; a cursor of another set is `invalid_cursor`.

use std::collections::BTreeMap;
use std::time::Duration;

use restream::channel::encode_component;
use restream::history::rfc3339_ms;
use serde_json::{json, Value};

use crate::history_support::*;
use crate::push::*;
use crate::support::Client;

const FEED_A: &str = "e2e-feed?site=a";
const FEED_B: &str = "e2e-feed?site=b";
const THINGS_C: &str = "e2e-things?site=c";
const QUAKES: &str = "usgs-earthquakes?feed=2.5_day";

fn quake(id: &str, mag: f64) -> Value {
    json!({"type": "Feature", "id": id, "properties": {"mag": mag}})
}

/// Publishes with a producer key; panics unless committed.
async fn send(base: &str, key: &str, request: Publish) {
    request.bearer(key).send(base).await.receipt();
}

/// Each channel's own history (read whole by its route), tagged with its canonical id.
async fn own_histories(base: &str, ids: &[&str]) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for id in ids {
        let (name, query) = id.split_once('?').unwrap_or((id, ""));
        let query = match query {
            "" => "limit=3".to_string(),
            q => format!("{q}&limit=3"),
        };
        let path = channel_path(name, &query);
        let first = page(base, &path, None).await;
        assert_eq!(first.body["channel"], *id);
        let (events, _) = read_all(base, &path, None).await;
        for e in &events {
            assert_eq!(event_channel_id(e), *id, "{e}");
        }
        out.push((id.to_string(), events));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coalesced_history_is_the_merge_of_its_channels_histories() {
    let stack = push_stack(None).await;
    let base = stack.http_url.clone();
    let ids = [FEED_A, FEED_B, THINGS_C, OTHER, QUAKES];
    // The polled channel polls while it has a subscriber; each change is logged at a poll.
    stack.upstream.set_quakes("2.5_day", vec![quake("q1", 1.0)]);
    let mut watcher = Client::connect(&stack.ws_url).await;
    watcher
        .subscribe("usgs-earthquakes", json!({"feed": "2.5_day"}))
        .await;
    watcher.recv_type("snapshot", Duration::from_secs(10)).await;
    let mut polled = Vec::new();

    for round in 0..3 {
        publish(
            &base,
            FEED,
            "site=a",
            FEED_KEY,
            &[json!({"r": round}), json!({"r": round, "x": 1})],
        )
        .await;
        send(
            &base,
            THINGS_KEY,
            Publish::post(THINGS, "site=c").json(&json!({"id": "t", "r": round})),
        )
        .await;
        publish(&base, FEED, "site=b", FEED_KEY, &[json!({"r": round})]).await;
        send(
            &base,
            OTHER_KEY,
            Publish::post(OTHER, "").json(&json!({"id": format!("o{round}")})),
        )
        .await;
        if round == 1 {
            send(&base, OTHER_KEY, Publish::delete(OTHER, "o0", "")).await;
        }
        // The upstream changes: an update and a new quake at the next poll.
        let mag = 2.0 + f64::from(round);
        stack.upstream.set_quakes(
            "2.5_day",
            vec![quake("q1", mag), quake(&format!("n{round}"), 1.0)],
        );
        let (updated, skipped) = watcher.recv_type("updated", Duration::from_secs(10)).await;
        polled.extend(skipped);
        polled.push(updated);
    }

    while let Some(m) = watcher.recv(Duration::from_millis(500)).await {
        polled.push(m);
    }
    let own = own_histories(&base, &ids).await;
    for (id, events) in &own {
        assert!(!events.is_empty(), "{id} has a history");
    }
    // The polled channel's history is what its subscriber got at each poll.
    polled.retain(|m| matches!(m["type"].as_str(), Some("new" | "updated" | "removed")));
    assert_eq!(own[4].1.iter().map(live).collect::<Vec<_>>(), polled);
    assert!(polled.len() >= 7, "3 polls of changes: {polled:?}");
    let merged = merge(&own);
    let whole = page(&base, &coalesced_path(&ids, "limit=1000"), None).await;
    assert!(!whole.more);
    let mut listed: Vec<String> = serde_json::from_value(whole.body["channels"].clone()).unwrap();
    listed.sort();
    let mut sorted_ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    sorted_ids.sort();
    assert_eq!(listed, sorted_ids, "{}", whole.body);
    assert_eq!(whole.events.len(), merged.len());
    assert_eq!(whole.events, merged);
    // Not one channel after another: the merge interleaves them.
    let switches = merged
        .windows(2)
        .filter(|w| event_channel_id(&w[0]) != event_channel_id(&w[1]))
        .count();
    assert!(switches >= 2 * ids.len(), "{switches} channel switches");

    // Paged by 4: the same events, each page in merge order.
    let path = coalesced_path(&ids, "limit=4");
    let (paged, cursor) = read_all(&base, &path, None).await;
    assert_eq!(paged, merged);
    // A time range over the set: the merge of the channels' events in it.
    let (from, to) = (
        time_ms(&merged[merged.len() / 3]),
        time_ms(&merged[merged.len() * 2 / 3]),
    );
    let range = format!(
        "from={}&to={}&limit=3",
        encode_component(&rfc3339_ms(from)),
        encode_component(&rfc3339_ms(to))
    );
    let (ranged, _) = read_all(&base, &coalesced_path(&ids, &range), None).await;
    let expected: Vec<Value> = merged
        .iter()
        .filter(|e| (from..to).contains(&time_ms(e)))
        .cloned()
        .collect();
    assert!(!expected.is_empty() && expected.len() < merged.len());
    assert_eq!(ranged, expected);

    // The one cursor continues the whole set with what came since, merged.
    publish(&base, FEED, "site=b", FEED_KEY, &[json!("b1"), json!("b2")]).await;
    send(
        &base,
        OTHER_KEY,
        Publish::post(OTHER, "").json(&json!({"id": "late"})),
    )
    .await;
    publish(&base, FEED, "site=a", FEED_KEY, &[json!("a1")]).await;
    let next = page(&base, &with_cursor(&path, &cursor), None).await;
    let later = page(&base, &with_cursor(&path, &next.cursor), None).await;
    let mut new_events = next.events.clone();
    new_events.extend(later.events.iter().cloned());
    assert!(!later.more);
    let own_after = own_histories(&base, &ids).await;
    let fresh: Vec<(String, Vec<Value>)> = own_after
        .iter()
        .zip(&own)
        .map(|((id, after), (_, before))| (id.clone(), after[before.len()..].to_vec()))
        .collect();
    assert_eq!(new_events, merge(&fresh));
    assert_eq!(new_events.len(), 4);

    // Another set of channels refuses the cursor (the same query continues it, above).
    for set in [
        &ids[..4],
        &[FEED_A, FEED_B, THINGS_C, OTHER, QUAKES, "e2e-feed?site=z"][..],
    ] {
        let r = get(
            &base,
            &with_cursor(&coalesced_path(set, "limit=4"), &later.cursor),
            None,
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_cursor"),
            "{set:?}: {}",
            r.body
        );
    }
    // A one-channel set and that channel's own route give the same events.
    let single = page(&base, &coalesced_path(&[OTHER], "limit=1000"), None).await;
    assert_eq!(single.events, own_after[3].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cursor_follows_a_set_of_channels_while_producers_publish() {
    let stack = push_stack(None).await;
    let sites = ["p0", "p1", "p2"];
    let ids: Vec<String> = sites.iter().map(|s| format!("e2e-feed?site={s}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let base = stack.http_url.clone();
    let producer = tokio::spawn(async move {
        for n in 0..45u64 {
            let site = sites[(n * 7 % 3) as usize];
            let values: Vec<Value> = (0..1 + n % 3).map(|i| json!({"n": n, "i": i})).collect();
            publish(&base, FEED, &format!("site={site}"), FEED_KEY, &values).await;
            tokio::time::sleep(Duration::from_millis(8)).await;
        }
    });
    let path = coalesced_path(&id_refs, "limit=5");
    let (mut got, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let done = producer.is_finished();
        let at = cursor
            .as_ref()
            .map_or(path.clone(), |c| with_cursor(&path, c));
        let p = page(&stack.http_url, &at, None).await;
        assert!(p.events.len() <= 5);
        // Within a page, the merge order.
        let tagged: Vec<(String, Vec<Value>)> = p
            .events
            .iter()
            .map(|e| (event_channel_id(e), vec![e.clone()]))
            .collect();
        assert_eq!(merge(&tagged), p.events, "a page in merge order");
        pages += 1;
        got.extend(p.events);
        cursor = Some(p.cursor);
        if !p.more {
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    producer.await.unwrap();
    assert!(pages > 10, "{pages} pages");

    // Per channel, the pages hold exactly its history, in order: no duplicate, no gap.
    let own = own_histories(&stack.http_url, &id_refs).await;
    let mut by_channel: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in &got {
        by_channel
            .entry(event_channel_id(e))
            .or_default()
            .push(e.clone());
    }
    for (id, events) in &own {
        assert_eq!(by_channel.get(id), Some(events), "{id}");
    }
    assert_eq!(got.len(), own.iter().map(|(_, e)| e.len()).sum::<usize>());
    // Read again at rest, the set is exactly the brute-force merge.
    let (at_rest, _) = read_all(&stack.http_url, &path, None).await;
    assert_eq!(at_rest, merge(&own));
}
