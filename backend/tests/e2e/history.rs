//! Issue 20 through a real Pushpin: one channel's history paged by cursor while a producer
//! keeps publishing adds up to the whole history (no duplicate, no gap, time order), each
//! event is the message live subscribers got with its time, and a cursor polled later returns
//! only what came since.

use std::time::Duration;

use serde_json::{json, Value};

use crate::history_support::*;
use crate::push::*;

const BATCHES: u64 = 40;
const PAGE: usize = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_read_while_a_producer_publishes_add_up_to_the_history() {
    let stack = push_stack(None).await;
    let q = "site=pg";
    let mut sub = Sub::ws(&stack, FEED, json!({"site": "pg"}), None).await;
    let mut mirror = Mirror::default();
    mirror
        .follow(&mut sub, 1, Duration::from_secs(10), "sub")
        .await;
    let started = now();

    // Batches of 1 to 5 events, a few ms apart, while the reader pages behind them.
    let base = stack.http_url.clone();
    let producer = tokio::spawn(async move {
        let mut last = 0;
        for b in 0..BATCHES {
            let values: Vec<Value> = (0..1 + b * 7 % 5)
                .map(|i| json!({"b": b, "i": i}))
                .collect();
            last = publish(&base, FEED, "site=pg", FEED_KEY, &values).await;
            tokio::time::sleep(Duration::from_millis(10 + b % 3 * 10)).await;
        }
        last
    });
    let path = channel_path(FEED, &format!("{q}&limit={PAGE}"));
    let (mut got, mut cursor, mut pages, mut empty) = (Vec::new(), None::<String>, 0, 0);
    loop {
        let done = producer.is_finished();
        let at = match &cursor {
            Some(c) => with_cursor(&path, c),
            None => path.clone(),
        };
        let p = page(&stack.http_url, &at, None).await;
        assert_eq!(p.body["channel"], "e2e-feed?site=pg", "{}", p.body);
        assert!(p.events.len() <= PAGE, "limit {PAGE}: {}", p.body);
        if p.events.is_empty() {
            empty += 1;
            if let Some(c) = &cursor {
                assert_eq!(&p.cursor, c, "an empty page gives the cursor back");
            }
        }
        pages += 1;
        got.extend(p.events);
        cursor = Some(p.cursor);
        if !p.more {
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
    let last = producer.await.unwrap();
    assert!(
        pages > BATCHES as usize / 4,
        "the reader paged while the producer published ({pages} pages, {empty} empty)"
    );

    // The concatenated pages are the history as one unpaged read sees it: every event from
    // seq 2 (seq 1 is the empty snapshot commit) to the last, once, in order.
    let full = page(
        &stack.http_url,
        &channel_path(FEED, &format!("{q}&limit=1000")),
        None,
    )
    .await;
    assert!(!full.more, "{}", full.body);
    assert_eq!(seqs(&full.events), (2..=last).collect::<Vec<_>>());
    assert_eq!(got.len(), full.events.len(), "no duplicate, no gap");
    assert_eq!(got, full.events);
    check_channel_order(&got);
    let (first, end) = (time_ms(&got[0]), time_ms(&got[got.len() - 1]));
    assert!(
        first / 1000 + 1 >= started && end / 1000 <= now() + 1,
        "times are the commit times: {first}..{end}"
    );

    // Each event is the message the subscriber got live, with its time in front.
    mirror
        .follow(&mut sub, last, Duration::from_secs(20), "sub")
        .await;
    let live_msgs: Vec<Value> = mirror.log[1..].to_vec();
    assert_eq!(got.iter().map(live).collect::<Vec<_>>(), live_msgs);
    let raw = reqwest::get(format!(
        "{}{}",
        stack.http_url,
        channel_path(FEED, &format!("{q}&limit=2"))
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(
        raw.contains(r#""events":[{"time":""#) && raw.contains(r#"},{"time":""#),
        "time first: {raw}"
    );

    // The last cursor, polled later, returns only the new events, then nothing.
    let cursor = cursor.unwrap();
    let newer = publish(&stack.http_url, FEED, q, FEED_KEY, &[json!(1), json!(2)]).await;
    let newest = publish(&stack.http_url, FEED, q, FEED_KEY, &[json!(3)]).await;
    assert_eq!((newer, newest), (last + 2, last + 3));
    let p = page(&stack.http_url, &with_cursor(&path, &cursor), None).await;
    assert_eq!(
        seqs(&p.events),
        [last + 1, last + 2, last + 3],
        "{}",
        p.body
    );
    assert_eq!(
        p.events
            .iter()
            .map(|e| e["item"]["data"].clone())
            .collect::<Vec<_>>(),
        [json!(1), json!(2), json!(3)]
    );
    assert!(!p.more);
    let again = page(&stack.http_url, &with_cursor(&path, &p.cursor), None).await;
    assert_eq!(
        (again.events.len(), again.more),
        (0, false),
        "{}",
        again.body
    );
    assert_eq!(again.cursor, p.cursor);
    // The first cursor again: the same page as before (a cursor is a position, not a lease).
    let replay = page(&stack.http_url, &with_cursor(&path, &cursor), None).await;
    assert_eq!(replay.events, p.events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_items_channel_history_has_its_updates_and_removals_with_their_patches() {
    let stack = push_stack(None).await;
    let q = "site=it";
    let send = |r: Publish| r.bearer(THINGS_KEY);
    let mut sub = Sub::ws(&stack, THINGS, json!({"site": "it"}), None).await;
    let mut mirror = Mirror::default();
    mirror
        .follow(&mut sub, 1, Duration::from_secs(10), "sub")
        .await;
    for r in [
        Publish::post(THINGS, q).json(&json!([{"id": "a", "v": 1}, {"id": "b", "v": 1}])),
        Publish::post(THINGS, q).json(&json!({"id": "a", "v": 2})),
        Publish::delete(THINGS, "b", q),
        Publish::put(THINGS, q).json(&json!([{"id": "c", "v": 1}])),
    ] {
        send(r).send(&stack.http_url).await.receipt();
    }
    mirror
        .follow(&mut sub, 7, Duration::from_secs(10), "sub")
        .await;
    let (events, _) = read_all(&stack.http_url, &channel_path(THINGS, q), None).await;
    let kinds: Vec<(&str, u64, &str)> = events
        .iter()
        .map(|e| {
            let id = e["item"]["id"].as_str().unwrap();
            (e["type"].as_str().unwrap(), seq(e), id)
        })
        .collect();
    assert_eq!(
        kinds[..4],
        [
            ("new", 2, "a"),
            ("new", 3, "b"),
            ("updated", 4, "a"),
            ("removed", 5, "b")
        ]
    );
    let mut put: Vec<_> = kinds[4..].iter().map(|(k, _, id)| (*k, *id)).collect();
    put.sort();
    assert_eq!(put, [("new", "c"), ("removed", "a")]);
    assert_eq!(
        events.iter().map(live).collect::<Vec<_>>(),
        mirror.log[1..].to_vec()
    );
    assert_eq!(
        events[2]["patch"],
        json!([{"op": "replace", "path": "/v", "value": 2}])
    );
}
