//! Issue 20 through a real Pushpin: a token channel's history needs a subscribe token for it
//! (like `/items`), on both routes; a push channel's history keeps only the last
//! `history.retention.push.max_events` events (`since` resumes within exactly those) and
//! drops events older than its `max_age_secs`.

use std::time::Duration;

use restream::config::{KindRetention, Settings};
use restream::history::ChannelKind;
use serde_json::{json, Value};

use crate::history_support::*;
use crate::push::*;
use crate::support::{Stack, StackOptions};

const PRIVATE: &str = "e2e-private";
const PRIVATE_KEY: &str = "pk-private-5d0a7e3c91b24f68";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_channels_history_needs_a_token_for_it() {
    let private = events_channel(PRIVATE, 5, &[]) + "access = \"token\"\n";
    let stack = Stack::start_with(StackOptions {
        keys: Some(keys_json(
            SECRET,
            &[(FEED, FEED_KEY), (PRIVATE, PRIVATE_KEY)],
        )),
        extra_channels: vec![
            ("e2e-feed.toml", events_channel(FEED, KEEP, &["site"])),
            ("e2e-private.toml", private),
        ],
        ..StackOptions::default()
    })
    .await;
    let last = publish(
        &stack.http_url,
        PRIVATE,
        "",
        PRIVATE_KEY,
        &[json!(1), json!(2)],
    )
    .await;
    publish(&stack.http_url, FEED, "site=pub", FEED_KEY, &[json!("p")]).await;
    let hour = now() + 3600;
    let mine = subscribe_token(SECRET, &[PRIVATE], hour);
    let other = subscribe_token(SECRET, &[FEED], hour);
    let expired = subscribe_token(SECRET, &[PRIVATE], now() - 600);
    let forged = subscribe_token("not-the-secret-0123456789abcdef", &[PRIVATE], hour);
    let own = channel_path(PRIVATE, "");
    let both = coalesced_path(&[PRIVATE, "e2e-feed?site=pub"], "");
    // Refused exactly as `/items` refuses the same token (401 `unauthorized` there).
    let items = format!("/channels/{PRIVATE}/items");
    let refusals: [(&str, Option<&str>); 4] = [
        ("no token", None),
        ("an expired token", Some(&expired)),
        ("a forged token", Some(&forged)),
        ("a token for another channel", Some(&other)),
    ];
    for (what, token) in &refusals {
        let like = get(&stack.http_url, &items, *token).await;
        assert!(
            matches!(like.status, 401 | 403),
            "/items, {what}: {}",
            like.body
        );
        for path in [&own, &both] {
            let r = get(&stack.http_url, path, *token).await;
            assert_eq!(
                (r.status, r.code()),
                (like.status, like.code()),
                "{path}, {what}: {}",
                r.body
            );
            assert!(r.body.get("events").is_none(), "{what}: no event leaks");
        }
    }
    let no_token = get(&stack.http_url, &own, None).await;
    assert_eq!((no_token.status, no_token.code()), (401, "unauthorized"));

    let p = page(&stack.http_url, &own, Some(&mine)).await;
    assert_eq!(p.body["channel"], PRIVATE);
    assert_eq!(seqs(&p.events), (last - 1..=last).collect::<Vec<_>>());
    // The public channel needs no token, and a token for both reads the coalesced page.
    page(&stack.http_url, &channel_path(FEED, "site=pub"), None).await;
    let both_token = subscribe_token(SECRET, &[PRIVATE, "e2e-feed?*"], hour);
    let c = page(&stack.http_url, &both, Some(&both_token)).await;
    assert_eq!(c.events.len(), 3, "{}", c.body);
    let log = stack.backend.log_text();
    assert!(
        !log.contains(&mine) && !log.contains(PRIVATE_KEY),
        "a secret reached the log"
    );
}

const RETAINED: u64 = 5;

fn keep_five(settings: &mut Settings) {
    settings.history.retention.insert(
        ChannelKind::Push,
        KindRetention {
            max_events: Some(RETAINED),
            max_age_secs: None,
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_channels_history_keeps_its_last_events_and_since_resumes_within_them() {
    let stack = push_stack(Some(keep_five)).await;
    let q = "site=ret";
    let params = json!({"site": "ret"});
    let mut sub = Sub::ws(&stack, FEED, params.clone(), None).await;
    let mut mirror = Mirror::default();
    mirror
        .follow(&mut sub, 1, Duration::from_secs(10), "sub")
        .await;
    let mut last = 0;
    for n in 0..12 {
        last = publish(&stack.http_url, FEED, q, FEED_KEY, &[json!({"n": n})]).await;
    }
    assert_eq!(last, 13);
    mirror
        .follow(&mut sub, last, Duration::from_secs(10), "sub")
        .await;

    let kept: Vec<u64> = (last - RETAINED + 1..=last).collect();
    let (events, _) = read_all(&stack.http_url, &channel_path(FEED, q), None).await;
    assert_eq!(seqs(&events), kept, "the last {RETAINED} events");
    let tail: Vec<Value> = mirror.log[mirror.log.len() - RETAINED as usize..].to_vec();
    assert_eq!(events.iter().map(live).collect::<Vec<_>>(), tail);
    let from_old = channel_path(FEED, &format!("{q}&from=2020-01-01T00%3A00%3A00Z&limit=2"));
    let (paged, _) = read_all(&stack.http_url, &from_old, None).await;
    assert_eq!(
        paged, events,
        "a range older than what is kept starts at the oldest kept"
    );

    // since = the seq before the oldest kept: exactly the kept events, no reset.
    let mut resumed = Sub::ws(&stack, FEED, params.clone(), Some(last - RETAINED)).await;
    let mut got = Vec::new();
    while let Some(m) = resumed.next(Duration::from_millis(1500)).await {
        got.push(m);
    }
    assert_eq!(got, tail, "since {} replays what is kept", last - RETAINED);
    // since older than that: the events it needs are gone, a fresh snapshot says reset.
    let mut old = Sub::ws(&stack, FEED, params, Some(3)).await;
    let snap = old.next(Duration::from_secs(10)).await.expect("a snapshot");
    assert_eq!(
        (
            snap["type"].as_str(),
            snap["seq"].as_u64(),
            snap["reset"].as_bool()
        ),
        (Some("snapshot"), Some(last), Some(true)),
        "{snap}"
    );

    // One more event: still the last five, and both subscribers get it.
    let next = publish(&stack.http_url, FEED, q, FEED_KEY, &[json!("more")]).await;
    let (events, _) = read_all(&stack.http_url, &channel_path(FEED, q), None).await;
    assert_eq!(
        seqs(&events),
        (next - RETAINED + 1..=next).collect::<Vec<_>>()
    );
    for s in [&mut resumed, &mut old] {
        let m = s
            .next(Duration::from_secs(10))
            .await
            .expect("the new event");
        assert_eq!(m["seq"], next, "{m}");
    }
}

fn two_seconds(settings: &mut Settings) {
    settings.history.retention.insert(
        ChannelKind::Push,
        KindRetention {
            max_events: None,
            max_age_secs: Some(2),
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_channels_history_drops_events_older_than_its_max_age() {
    let stack = push_stack(Some(two_seconds)).await;
    let q = "site=age";
    let old = publish(
        &stack.http_url,
        FEED,
        q,
        FEED_KEY,
        &[json!(1), json!(2), json!(3)],
    )
    .await;
    let (events, _) = read_all(&stack.http_url, &channel_path(FEED, q), None).await;
    assert_eq!(seqs(&events), (old - 2..=old).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The next commit trims what is older than two seconds.
    let new = publish(&stack.http_url, FEED, q, FEED_KEY, &[json!(4), json!(5)]).await;
    let (events, _) = read_all(&stack.http_url, &channel_path(FEED, q), None).await;
    assert_eq!(seqs(&events), [new - 1, new], "{events:?}");
    let whole = channel_path(FEED, &format!("{q}&from=2020-01-01T00%3A00%3A00Z"));
    assert_eq!(read_all(&stack.http_url, &whole, None).await.0, events);
}
