//! Issue 19, events mode through a real Pushpin: every published value is a `new` event with
//! a server-assigned id (the zero-padded seq) and time; the snapshot is the last `keep` events.

use std::time::Duration;

use serde_json::{json, Value};

use crate::push::*;

/// Checks one `new` event of an events channel: id from its seq, a recent RFC 3339 UTC time
/// with milliseconds, the published value as `data`.
fn check_event(m: &Value, seq: u64, data: &Value, before: u64) {
    assert_eq!(m["type"], "new", "{m}");
    assert_eq!(m["seq"], seq, "{m}");
    let item = &m["item"];
    assert_eq!(item["id"], format!("{seq:020}"), "{m}");
    assert_eq!(&item["data"], data, "{m}");
    let time = item["time"].as_str().expect("a time");
    // 2026-12-02T05:32:41.123Z
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
        "RFC 3339 UTC with ms: {time}"
    );
    let at = chrono_secs(time);
    assert!(
        at + 1 >= before && at <= now() + 1,
        "{time} is not the publish time"
    );
    assert_eq!(item.as_object().unwrap().len(), 3, "id, time, data: {item}");
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS.mmmZ` (days from the civil calendar).
fn chrono_secs(t: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().expect("digits");
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_publish_to_an_events_channel_is_a_new_event_and_the_snapshot_keeps_the_last() {
    let stack = push_stack(None).await;
    let q = "site=ev";
    let params = json!({"site": "ev"});
    let mut ws = Sub::ws(&stack, FEED, params.clone(), None).await;
    let mut sse = Sub::sse(&stack, FEED, q, None).await;
    for sub in [&mut ws, &mut sse] {
        let snap = sub.next(Duration::from_secs(10)).await.expect("a snapshot");
        assert_eq!(
            (snap["type"].as_str(), snap["seq"].as_u64()),
            (Some("snapshot"), Some(1))
        );
        assert_eq!(snap["items"], json!([]));
    }

    let before = now();
    let send = |r: Publish| r.bearer(FEED_KEY);
    // An array is a batch of events; any JSON value is an event; NDJSON one per line; the
    // same value again is another event.
    let values = [
        json!({"n": 1}),
        json!([1, 2]),
        json!({"n": 3, "nested": {"deep": [true, null]}}),
        json!("four"),
        json!(5),
        json!({"n": 1}),
    ];
    let a = send(Publish::post(FEED, q).json(&json!([values[0], values[1]])))
        .send(&stack.http_url)
        .await;
    assert_eq!((a.seq(), counts(a.receipt())), (3, (2, 0, 0, 0)));
    let b = send(Publish::post(FEED, q).json(&values[2]))
        .send(&stack.http_url)
        .await;
    assert_eq!((b.seq(), counts(b.receipt())), (4, (1, 0, 0, 0)));
    let c = send(Publish::post(FEED, q).ndjson(&values[3..]))
        .send(&stack.http_url)
        .await;
    assert_eq!((c.seq(), counts(c.receipt())), (7, (3, 0, 0, 0)));

    let mut seen = Vec::new();
    for (who, sub) in [("ws", &mut ws), ("sse", &mut sse)] {
        let mut got = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let m = sub.next(Duration::from_secs(10)).await;
            let m = m.unwrap_or_else(|| panic!("{who}: event {i} missing after {got:?}"));
            check_event(&m, i as u64 + 2, v, before);
            got.push(m);
        }
        assert_eq!(sub.next(Duration::from_millis(300)).await, None, "{who}");
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1], "one event, the same on both transports");

    // The snapshot is the last KEEP events, as the items API lists them.
    let events: Vec<Value> = seen[0].iter().map(|m| m["item"].clone()).collect();
    let last = events[events.len() - KEEP..].to_vec();
    let (seq, page) = items_page(&stack, FEED, q).await;
    assert_eq!((seq, &page), (7, &last));
    let mut late = Sub::ws(&stack, FEED, params.clone(), None).await;
    let snap = late
        .next(Duration::from_secs(10))
        .await
        .expect("a snapshot");
    assert_eq!(
        (snap["type"].as_str(), snap["seq"].as_u64()),
        (Some("snapshot"), Some(7))
    );
    assert_eq!(snap["items"], json!(last));

    // An events channel is append-only: no replacement, no delete; nothing committed.
    let put = send(Publish::put(FEED, q).json(&json!([])))
        .send(&stack.http_url)
        .await;
    assert_eq!(
        (put.status, put.code()),
        (400, "invalid_items"),
        "{:?}",
        put.body
    );
    let del = send(Publish::delete(FEED, &format!("{:020}", 2), q))
        .send(&stack.http_url)
        .await;
    assert_eq!(del.status, 400, "{:?}", del.body);
    assert_eq!(items_page(&stack, FEED, q).await.0, 7);
    // Resume after seq 5 replays the events, data and ids as first sent.
    let mut resumed = Sub::ws(&stack, FEED, params, Some(5)).await;
    for expected in &seen[0][4..] {
        let m = resumed
            .next(Duration::from_secs(10))
            .await
            .expect("a replay");
        assert_eq!(&m, expected);
    }
    assert_eq!(resumed.next(Duration::from_millis(300)).await, None);
    assert_eq!(late.next(Duration::from_millis(100)).await, None);
}
