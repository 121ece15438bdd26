//! Issue 19 through a real Pushpin: each kind of bad publish is refused with its code and
//! commits nothing (seq, items and subscribers untouched); polled and unknown channels are
//! not published to.

use std::time::Duration;

use restream::config::Settings;
use serde_json::json;

use crate::push::*;

const MAX_BODY: usize = 2048;
const MAX_ITEMS: usize = 5;

fn small_limits(settings: &mut Settings) {
    settings.push.max_body_bytes = MAX_BODY;
    settings.push.max_batch_items = MAX_ITEMS;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_publishes_are_refused_whole() {
    let stack = push_stack(Some(small_limits)).await;
    let q = "site=bad";
    let mut sub = Sub::ws(&stack, THINGS, json!({"site": "bad"}), None).await;
    let mut mirror = Mirror::default();
    mirror
        .follow(&mut sub, 1, Duration::from_secs(10), "sub")
        .await;
    let good = publish_things(
        &stack,
        Publish::post(THINGS, q).json(&json!({"id": "ok", "n": 1})),
    );
    assert_eq!(good.await.seq(), 2);
    mirror
        .follow(&mut sub, 2, Duration::from_secs(10), "sub")
        .await;
    let before = items_page(&stack, THINGS, q).await;

    let pad = "p".repeat(MAX_BODY);
    let many: Vec<_> = (0..=MAX_ITEMS)
        .map(|i| json!({"id": format!("m{i}")}))
        .collect();
    let valid_then = |bad: serde_json::Value| json!([{"id": "first", "n": 1}, bad]);
    let cases: Vec<(&str, Publish, &str)> = vec![
        (
            "not JSON",
            Publish::post(THINGS, q).raw("application/json", r#"{"id": "x", "n":"#),
            "invalid_json",
        ),
        (
            "an NDJSON line that is not JSON",
            Publish::post(THINGS, q).raw("application/x-ndjson", "{\"id\": \"nd1\"}\n{oops\n"),
            "invalid_json",
        ),
        (
            "an item without its id field",
            Publish::post(THINGS, q).json(&valid_then(json!({"name": "no id"}))),
            "invalid_items",
        ),
        (
            "an item whose id is not scalar",
            Publish::post(THINGS, q).json(&valid_then(json!({"id": {"a": 1}}))),
            "invalid_items",
        ),
        (
            "an entry that is not an object",
            Publish::post(THINGS, q).json(&valid_then(json!(42))),
            "invalid_items",
        ),
        (
            "an empty batch",
            Publish::post(THINGS, q).json(&json!([])),
            "invalid_items",
        ),
        (
            "an unknown param",
            Publish::post(THINGS, &format!("{q}&colour=red")).json(&json!({"id": "u"})),
            "invalid_params",
        ),
        (
            "a missing required param",
            Publish::post(THINGS, "").json(&json!({"id": "u"})),
            "invalid_params",
        ),
        (
            "a body over push.max_body_bytes",
            Publish::post(THINGS, q).json(&json!([{"id": "big", "pad": pad}])),
            "too_large",
        ),
        (
            "more entries than push.max_batch_items",
            Publish::post(THINGS, q).json(&json!(many)),
            "too_many_items",
        ),
        (
            "an NDJSON body with too many lines",
            Publish::post(THINGS, q).ndjson(&many),
            "too_many_items",
        ),
        (
            "an Idempotency-Key over 256 bytes",
            Publish::post(THINGS, q)
                .json(&json!({"id": "k"}))
                .idempotency_key(&"k".repeat(257)),
            "invalid_items",
        ),
    ];
    for (what, request, code) in cases {
        let answer = publish_things(&stack, request).await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, code),
            "{what}: {:?}",
            answer.body
        );
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{what}: a message says why");
        assert!(!message.contains(THINGS_KEY), "{what}: {message}");
        if what.starts_with("an NDJSON line") {
            assert!(
                message.contains("line 2"),
                "{what}: the message names line 2: {message}"
            );
        }
        assert_eq!(
            items_page(&stack, THINGS, q).await,
            before,
            "{what}: nothing committed"
        );
    }
    // PUT with a bad entry: the set stays whole (nothing removed either).
    let put = Publish::put(THINGS, q).json(&valid_then(json!({"no": "id"})));
    let put = publish_things(&stack, put).await;
    assert_eq!(
        (put.status, put.code()),
        (400, "invalid_items"),
        "{:?}",
        put.body
    );
    assert_eq!(
        items_page(&stack, THINGS, q).await,
        before,
        "PUT: nothing committed"
    );
    assert_eq!(
        sub.next(Duration::from_millis(500)).await,
        None,
        "no event sent"
    );

    // A polled channel does not take publishes; an unknown channel is not found.
    let any = publish_token(SECRET, &["*"], now() + 3600);
    let polled = Publish::post("usgs-earthquakes", "feed=all_hour")
        .json(&json!({"id": "q"}))
        .bearer(&any)
        .send(&stack.http_url)
        .await;
    assert_eq!(
        (polled.status, polled.code()),
        (405, "not_a_push_channel"),
        "{:?}",
        polled.body
    );
    let unknown = Publish::post("no-such-channel", "")
        .json(&json!({"id": "q"}))
        .bearer(&any)
        .send(&stack.http_url)
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (404, "unknown_channel"),
        "{:?}",
        unknown.body
    );

    // And the channel still takes a good batch, next in seq.
    let next = publish_things(&stack, Publish::post(THINGS, q).json(&json!({"id": "ok2"})));
    assert_eq!(next.await.seq(), 3);
    mirror
        .follow(&mut sub, 3, Duration::from_secs(10), "sub")
        .await;
    assert_eq!(
        mirror.events.last().unwrap(),
        &("new".to_string(), 3, "ok2".to_string())
    );
}

fn one_things_channel(settings: &mut Settings) {
    let caps = &mut settings.limits.max_channels_per_fetcher;
    caps.insert(THINGS.to_string(), 1);
}

/// A publish that would start a writer beyond a channel cap is refused (503 `channel_limit`,
/// with `Retry-After`) and commits nothing; the channel within the cap keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_beyond_a_channel_cap_is_refused_and_commits_nothing() {
    let stack = push_stack(Some(one_things_channel)).await;
    let first = Publish::post(THINGS, "site=one").json(&json!({"id": "a"}));
    assert_eq!(publish_things(&stack, first).await.seq(), 2);
    let beyond = Publish::post(THINGS, "site=two")
        .json(&json!({"id": "b"}))
        .bearer(THINGS_KEY)
        .try_send(&stack.http_url)
        .await
        .expect("an answer");
    assert_eq!(
        (beyond.status, beyond.code()),
        (503, "channel_limit"),
        "{:?}",
        beyond.body
    );
    assert_eq!(beyond.header("retry-after"), Some("1"));
    assert_eq!(
        items_page(&stack, THINGS, "site=two").await.0,
        0,
        "nothing committed"
    );
    let again = Publish::post(THINGS, "site=one").json(&json!({"id": "c"}));
    assert_eq!(publish_things(&stack, again).await.seq(), 3);
}
