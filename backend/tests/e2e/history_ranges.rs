//! Issue 20 through a real Pushpin: `from` (inclusive) and `to` (exclusive) pick exactly the
//! events of their range, in any RFC 3339 spelling, paged or not; a cursor keeps the range it
//! is sent with; `limit` defaults to `history.page_default` and bounds every page.

use std::time::Duration;

use restream::config::Settings;
use restream::history::rfc3339_ms;
use serde_json::{json, Value};

use crate::history_support::*;
use crate::push::*;

const PAGE_DEFAULT: usize = 5;
const PAGE_MAX: usize = 40;

fn small_pages(settings: &mut Settings) {
    settings.history.page_default = PAGE_DEFAULT;
    settings.history.page_max = PAGE_MAX;
}

/// The same instant as RFC 3339 with a +02:00 offset and microseconds.
fn at_offset(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}000+02:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn enc(text: &str) -> String {
    restream::channel::encode_component(text)
}

/// `site=rg` with `from`/`to` when given.
fn range_query(from: Option<&str>, to: Option<&str>) -> String {
    let mut q = "site=rg".to_string();
    if let Some(f) = from {
        q += &format!("&from={}", enc(f));
    }
    if let Some(t) = to {
        q += &format!("&to={}", enc(t));
    }
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_and_to_pick_exactly_their_events_and_limit_bounds_pages() {
    let stack = push_stack(Some(small_pages)).await;
    let q = "site=rg";
    // 8 batches of 4, 25 ms apart: several events share a time, batches do not.
    for b in 0..8 {
        let values: Vec<Value> = (0..4).map(|i| json!({"b": b, "i": i})).collect();
        publish(&stack.http_url, FEED, q, FEED_KEY, &values).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let all = page(
        &stack.http_url,
        &channel_path(FEED, &format!("{q}&limit={PAGE_MAX}")),
        None,
    )
    .await;
    assert_eq!((all.events.len(), all.more), (32, false), "{}", all.body);
    let full = all.events;
    check_channel_order(&full);
    let t: Vec<u64> = full.iter().map(time_ms).collect();
    assert!(t[0] < t[31], "the batches have distinct times: {t:?}");

    // limit: the default, 1, the most, and a cursor from a short page.
    let default = page(&stack.http_url, &channel_path(FEED, q), None).await;
    assert_eq!(
        (default.events.as_slice(), default.more),
        (&full[..PAGE_DEFAULT], true)
    );
    let one = page(
        &stack.http_url,
        &channel_path(FEED, &format!("{q}&limit=1")),
        None,
    )
    .await;
    assert_eq!((one.events.as_slice(), one.more), (&full[..1], true));
    let rest = with_cursor(
        &channel_path(FEED, &format!("{q}&limit={PAGE_MAX}")),
        &default.cursor,
    );
    let rest = page(&stack.http_url, &rest, None).await;
    assert_eq!(
        (rest.events.as_slice(), rest.more),
        (&full[PAGE_DEFAULT..], false)
    );

    let s = |i: usize| full[i]["time"].as_str().unwrap().to_string();
    let cases: Vec<(&str, Option<String>, Option<String>)> = vec![
        ("as the events spell them", Some(s(10)), Some(s(20))),
        (
            "a ms after",
            Some(rfc3339_ms(t[10] + 1)),
            Some(rfc3339_ms(t[20] + 1)),
        ),
        (
            "at another offset",
            Some(at_offset(t[10])),
            Some(at_offset(t[20])),
        ),
        ("from only", Some(s(25)), None),
        ("to only", None, Some(s(6))),
        ("an empty instant", Some(s(12)), Some(s(12))),
        (
            "around everything",
            Some(rfc3339_ms(t[0] - 3_600_000)),
            Some(rfc3339_ms(t[31] + 3_600_000)),
        ),
        (
            "before everything",
            Some("2020-01-01T00:00:00Z".into()),
            Some(rfc3339_ms(t[0])),
        ),
    ];
    for (what, from, to) in &cases {
        let (f, until) = (
            from.as_deref().map(parse_time).unwrap_or(0),
            to.as_deref().map(parse_time).unwrap_or(u64::MAX),
        );
        let expected: Vec<Value> = full
            .iter()
            .filter(|e| (f..until).contains(&time_ms(e)))
            .cloned()
            .collect();
        // The cases are not trivial: each boundary cuts inside the history.
        let empty = ["an empty instant", "before everything"].contains(what);
        assert_eq!(expected.is_empty(), empty, "{what}");
        assert_eq!(
            expected.len() == full.len(),
            *what == "around everything",
            "{what}"
        );
        let rq = range_query(from.as_deref(), to.as_deref());
        let whole = page(
            &stack.http_url,
            &channel_path(FEED, &format!("{rq}&limit={PAGE_MAX}")),
            None,
        )
        .await;
        assert_eq!(whole.events, expected, "{what}: {from:?}..{to:?}");
        assert!(!whole.more, "{what}");
        let (paged, _) = read_all(
            &stack.http_url,
            &channel_path(FEED, &format!("{rq}&limit=3")),
            None,
        )
        .await;
        assert_eq!(paged, expected, "{what}, 3 a page");
    }
    // A cursor keeps the range it is sent with: with `to` in the past, new events never
    // come; with only `from`, they do.
    let bounded = channel_path(
        FEED,
        &format!("{}&limit=3", range_query(Some(&s(10)), Some(&s(20)))),
    );
    let (_, bounded_cursor) = read_all(&stack.http_url, &bounded, None).await;
    let open = channel_path(
        FEED,
        &format!("{}&limit=3", range_query(Some(&s(25)), None)),
    );
    let (_, open_cursor) = read_all(&stack.http_url, &open, None).await;
    let last = publish(&stack.http_url, FEED, q, FEED_KEY, &[json!("late")]).await;
    let p = page(
        &stack.http_url,
        &with_cursor(&bounded, &bounded_cursor),
        None,
    )
    .await;
    assert_eq!((p.events.len(), p.more), (0, false), "{}", p.body);
    let p = page(&stack.http_url, &with_cursor(&open, &open_cursor), None).await;
    assert_eq!(seqs(&p.events), [last], "{}", p.body);
    assert_eq!(p.events[0]["item"]["data"], "late");
}

fn parse_time(text: &str) -> u64 {
    restream::history::parse_rfc3339(text).unwrap_or_else(|| panic!("{text}"))
}
