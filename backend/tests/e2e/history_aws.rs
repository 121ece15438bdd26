//! Issue 20 on the production profile (DynamoDB on moto, keys on S3) through a real Pushpin:
//! the DynamoDB store serves the same history — pages by cursor while a producer publishes
//! add up to the unpaged read and to what a subscriber got, ranges cut by time, and the push
//! retention count holds.

use std::time::Duration;

use restream::config::{FetcherKind, KindRetention, Settings};
use restream::history::{rfc3339_ms, ChannelKind};
use serde_json::{json, Value};

use crate::history_support::*;
use crate::push::*;
use crate::support::{AwsOptions, Stack, StackOptions};

const RETAINED: u64 = 30;

/// Push channel files next to the Lambda fetchers, and a small push retention.
fn push_on_aws(settings: &mut Settings) {
    settings.fetchers.kinds.push(FetcherKind::Http);
    settings.history.retention.insert(
        ChannelKind::Push,
        KindRetention {
            max_events: Some(RETAINED),
            max_age_secs: None,
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_store_serves_the_same_history() {
    let stack = Stack::start_with(StackOptions {
        aws: Some(AwsOptions {
            keys: Some(keys_json(SECRET, &[(FEED, FEED_KEY)])),
            functions: Vec::new(),
        }),
        extra_channels: vec![("e2e-feed.toml", events_channel(FEED, KEEP, &["site"]))],
        configure: Some(push_on_aws),
        ..StackOptions::default()
    })
    .await;
    let q = "site=ddb";
    let mut sub = Sub::ws(&stack, FEED, json!({"site": "ddb"}), None).await;
    let mut mirror = Mirror::default();
    mirror
        .follow(&mut sub, 1, Duration::from_secs(20), "sub")
        .await;

    let base = stack.http_url.clone();
    let producer = tokio::spawn(async move {
        let mut last = 0;
        for b in 0..12u64 {
            let values: Vec<Value> = (0..1 + b % 3).map(|i| json!({"b": b, "i": i})).collect();
            last = publish(&base, FEED, "site=ddb", FEED_KEY, &values).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        last
    });
    let path = channel_path(FEED, &format!("{q}&limit=4"));
    let (mut got, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let done = producer.is_finished();
        let at = cursor
            .as_ref()
            .map_or(path.clone(), |c| with_cursor(&path, c));
        let p = page(&stack.http_url, &at, None).await;
        assert!(p.events.len() <= 4);
        got.extend(p.events);
        cursor = Some(p.cursor);
        if !p.more {
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let last = producer.await.unwrap();
    assert_eq!(
        last,
        1 + 24,
        "12 batches of 1 to 3 events after the snapshot commit"
    );
    let full = page(
        &stack.http_url,
        &channel_path(FEED, &format!("{q}&limit=100")),
        None,
    )
    .await;
    assert_eq!(seqs(&full.events), (2..=last).collect::<Vec<_>>());
    assert_eq!(got, full.events, "no duplicate, no gap");
    check_channel_order(&got);
    mirror
        .follow(&mut sub, last, Duration::from_secs(20), "sub")
        .await;
    assert_eq!(
        got.iter().map(live).collect::<Vec<_>>(),
        mirror.log[1..].to_vec()
    );

    // A range by time: exactly its events.
    let t: Vec<u64> = got.iter().map(time_ms).collect();
    let (from, to) = (t[5], t[15]);
    let enc = restream::channel::encode_component;
    let ranged = format!(
        "{q}&from={}&to={}&limit=3",
        enc(&rfc3339_ms(from)),
        enc(&rfc3339_ms(to))
    );
    let (events, _) = read_all(&stack.http_url, &channel_path(FEED, &ranged), None).await;
    let expected: Vec<Value> = got
        .iter()
        .filter(|e| (from..to).contains(&time_ms(e)))
        .cloned()
        .collect();
    assert!(!expected.is_empty() && expected.len() < got.len());
    assert_eq!(events, expected);

    // Past the retention count, the oldest go: the last RETAINED stay.
    let mut newest = last;
    for n in 0..RETAINED - 10 {
        newest = publish(&stack.http_url, FEED, q, FEED_KEY, &[json!({"more": n})]).await;
    }
    let (kept, _) = read_all(
        &stack.http_url,
        &channel_path(FEED, &format!("{q}&limit=7")),
        None,
    )
    .await;
    assert_eq!(
        seqs(&kept),
        (newest - RETAINED + 1..=newest).collect::<Vec<_>>()
    );
    // 44 events in all: the last 10 of the first 24, then the 20 after.
    assert_eq!(kept[..10], got[got.len() - 10..]);
    let log = stack.backend.log_text();
    assert!(log.contains("dynamodb"), "the DynamoDB store served");

    // The store down: 503 unavailable with Retry-After on both routes, no detail shown.
    let pid = stack.aws.as_ref().unwrap().moto.pid() as i32;
    // SAFETY: signalling the emulator this test started, by PID.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    for path in [
        channel_path(FEED, q),
        coalesced_path(&["e2e-feed?site=ddb"], ""),
    ] {
        let r = get(&stack.http_url, &path, None).await;
        assert_eq!(
            (r.status, r.code()),
            (503, "unavailable"),
            "{path}: {}",
            r.body
        );
        assert!(r.retry_after.is_some(), "{path}: Retry-After");
        assert!(!r.body.to_string().contains("127.0.0.1"), "{}", r.body);
    }
}
