//! Issue 20 through a real Pushpin: each kind of bad history request gets its status and
//! code (`{"error": {"code", "message"}}`) on both routes, is counted by result, and none of
//! them disturbs a WebSocket subscriber's stream.

use std::time::Duration;

use base64::Engine as _;
use restream::config::Settings;
use serde_json::json;

use crate::history_support::*;
use crate::push::*;
use crate::support::{scrape, value};

const MAX_CHANNELS: usize = 3;
const PAGE_MAX: usize = 50;

fn small_bounds(settings: &mut Settings) {
    settings.history.max_channels = MAX_CHANNELS;
    settings.history.page_max = PAGE_MAX;
    settings.history.page_default = 10;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_history_requests_get_their_code_and_leave_streams_alone() {
    let stack = push_stack(Some(small_bounds)).await;
    let q = "site=bad";
    let mut sub = Sub::ws(&stack, FEED, json!({"site": "bad"}), None).await;
    let mut mirror = Mirror::default();
    mirror
        .follow(&mut sub, 1, Duration::from_secs(10), "sub")
        .await;
    let first = publish(
        &stack.http_url,
        FEED,
        q,
        FEED_KEY,
        &[json!(1), json!(2), json!(3)],
    )
    .await;
    mirror
        .follow(&mut sub, first, Duration::from_secs(10), "sub")
        .await;
    // Real cursors to spoil: one of the channel route, one of a coalesced set.
    let one = page(
        &stack.http_url,
        &channel_path(FEED, &format!("{q}&limit=1")),
        None,
    )
    .await;
    let set = ["e2e-feed?site=bad", "e2e-feed?site=x"];
    let multi = page(&stack.http_url, &coalesced_path(&set, "limit=1"), None).await;
    assert!(one.more && multi.more);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let junk = b64.encode(b"{\"not\": \"a cursor\", \"seq\": -1}");
    let junk_bytes = b64.encode([0xffu8, 0x00, 0x13, 0x37, 0x42, 0x99, 0xee, 0x01, 0x02]);
    let cut = |c: &str| c[..c.len() / 2].to_string();
    let chan = |extra: &str| channel_path(FEED, &format!("{q}&{extra}"));
    let coal = |extra: &str| coalesced_path(&set, extra);
    let enc = restream::channel::encode_component;

    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "unknown channel",
            channel_path("no-such-channel", ""),
            404,
            "unknown_channel",
        ),
        (
            "unknown channel in a set",
            coalesced_path(&["e2e-feed?site=a", "no-such-channel"], ""),
            404,
            "unknown_channel",
        ),
        (
            "a required param missing",
            channel_path(FEED, ""),
            400,
            "invalid_params",
        ),
        (
            "an unknown param",
            chan("colour=red"),
            400,
            "invalid_params",
        ),
        (
            "a set member without its param",
            coalesced_path(&["e2e-feed"], ""),
            400,
            "invalid_params",
        ),
        (
            "a garbage cursor",
            chan("cursor=%21%21not-a-cursor%21%21"),
            400,
            "invalid_cursor",
        ),
        (
            "a truncated cursor",
            chan(&format!("cursor={}", enc(&cut(&one.cursor)))),
            400,
            "invalid_cursor",
        ),
        (
            "base64 of JSON junk",
            chan(&format!("cursor={junk}")),
            400,
            "invalid_cursor",
        ),
        (
            "base64 of bytes",
            chan(&format!("cursor={junk_bytes}")),
            400,
            "invalid_cursor",
        ),
        (
            "a set's cursor, truncated",
            coal(&format!("cursor={}", enc(&cut(&multi.cursor)))),
            400,
            "invalid_cursor",
        ),
        (
            "a set's garbage cursor",
            coal(&format!("cursor={junk}")),
            400,
            "invalid_cursor",
        ),
        (
            "a channel's cursor for a set",
            coal(&format!("cursor={}", enc(&one.cursor))),
            400,
            "invalid_cursor",
        ),
        (
            "from after to",
            chan("from=2026-12-02T10%3A00%3A00Z&to=2026-12-02T09%3A00%3A00Z"),
            400,
            "invalid_range",
        ),
        (
            "from after to, a set",
            coal("from=2026-12-02T10%3A00%3A00.001Z&to=2026-12-02T10%3A00%3A00Z"),
            400,
            "invalid_range",
        ),
        (
            "from not a time",
            chan("from=yesterday"),
            400,
            "invalid_time",
        ),
        (
            "to not a date",
            chan("to=2026-13-45T00%3A00%3A00Z"),
            400,
            "invalid_time",
        ),
        ("unix seconds", chan("from=1733130000"), 400, "invalid_time"),
        (
            "a date without a time",
            coal("to=2026-12-02"),
            400,
            "invalid_time",
        ),
        ("limit 0", chan("limit=0"), 400, "bad_limit"),
        (
            "limit over the max",
            chan(&format!("limit={}", PAGE_MAX + 1)),
            400,
            "bad_limit",
        ),
        ("limit not a number", chan("limit=ten"), 400, "bad_limit"),
        ("limit negative", coal("limit=-1"), 400, "bad_limit"),
        (
            "limit huge",
            coal("limit=99999999999999999999999"),
            400,
            "bad_limit",
        ),
        (
            "too many channels",
            coalesced_path(
                &[
                    "e2e-feed?site=1",
                    "e2e-feed?site=2",
                    "e2e-feed?site=3",
                    "e2e-feed?site=4",
                ],
                "",
            ),
            400,
            "too_many_channels",
        ),
        ("no channels", "/history".into(), 400, "no_channels"),
        (
            "no channels, other params",
            "/history?limit=5".into(),
            400,
            "no_channels",
        ),
        (
            "a repeated limit",
            chan("limit=1&limit=2"),
            400,
            "bad_query",
        ),
        (
            "a repeated from",
            coal("from=2026-12-02T10%3A00%3A00Z&from=2026-12-02T11%3A00%3A00Z"),
            400,
            "bad_query",
        ),
        (
            "a repeated param",
            channel_path(FEED, "site=bad&site=x"),
            400,
            "bad_query",
        ),
    ];
    // Every case runs; the mismatches are reported together at the end.
    let mut wrong = Vec::new();
    for (what, path, status, code) in &cases {
        let r = get(&stack.http_url, path, None).await;
        if (r.status, r.code()) != (*status, *code) {
            wrong.push(format!(
                "{what}: {path}: want {status} {code}, got {} {}",
                r.status, r.body
            ));
        }
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{what}: a message: {}", r.body);
        assert!(
            !message.contains("panicked") && !message.contains("src/"),
            "{what}: {message}"
        );
    }
    // The same channel twice in a set is refused too.
    let twice = coalesced_path(
        &["e2e-feed?site=bad", "e2e-feed?site=x", "e2e-feed?site=bad"],
        "",
    );
    let r = get(&stack.http_url, &twice, None).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "bad_query"),
        "a repeated channel: {}",
        r.body
    );
    // The most channels a set may name is fine.
    let most = coalesced_path(
        &["e2e-feed?site=1", "e2e-feed?site=2", "e2e-feed?site=3"],
        "",
    );
    let p = page(&stack.http_url, &most, None).await;
    assert_eq!(p.events.len(), 0);
    let p = page(&stack.http_url, &chan(&format!("limit={PAGE_MAX}")), None).await;
    assert_eq!(p.events.len(), 3);

    // The subscriber's stream went on: nothing extra, then the next events in order.
    assert_eq!(sub.next(Duration::from_millis(300)).await, None);
    let last = publish(&stack.http_url, FEED, q, FEED_KEY, &[json!(4), json!(5)]).await;
    mirror
        .follow(
            &mut sub,
            last,
            Duration::from_secs(10),
            "sub after bad requests",
        )
        .await;
    assert_eq!(mirror.seq, Some(first + 2));
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));

    // Counted by route and code.
    let m = scrape(&format!("http://{}/metrics", stack.backend.addr)).await;
    let count = |route: &str, result: &str| {
        value(
            &m,
            "restream_history_requests_total",
            &[("route", route), ("result", result)],
        )
    };
    assert_eq!(count("channel", "invalid_cursor"), 4.0);
    assert_eq!(count("coalesced", "invalid_cursor"), 3.0);
    assert_eq!(count("coalesced", "too_many_channels"), 1.0);
    assert_eq!(count("channel", "bad_limit"), 3.0);
    assert!(count("channel", "ok") >= 2.0 && count("coalesced", "ok") >= 2.0);
}
