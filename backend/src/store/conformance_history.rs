//! The history part of the `ItemStore` conformance suite: events keep their time, the log
//! reads a page at a time and finds a time by search, and a commit's retention trims by
//! count and by age.

use std::time::Duration;

use super::conformance::{ch, event, event_time, meta};
use super::{unix_now_ms, Commit, ItemStore, LogRetention, LoggedEvent};

/// Commits `seqs` (one commit each) to `channel`, from seq `from`.
async fn log(store: &dyn ItemStore, channel: &str, from: u64, events: Vec<LoggedEvent>) {
    let mut expected = from;
    for e in events {
        let seq = e.seq;
        store
            .commit(Commit {
                expected_seq: expected,
                meta: meta(seq, 1),
                events: vec![e],
                retention: Some(LogRetention {
                    max_events: 100,
                    max_age: None,
                }),
                ..Commit::new(ch(channel))
            })
            .await
            .unwrap();
        expected = seq;
    }
}

async fn opened(store: &dyn ItemStore, channel: &str) {
    store
        .commit(Commit {
            meta: meta(1, 1),
            ..Commit::new(ch(channel))
        })
        .await
        .unwrap();
}

/// Runs every history check on a fresh store.
pub async fn run(store: &dyn ItemStore) {
    pages_concatenate_to_the_log(store).await;
    search_by_time(store).await;
    retention_by_count_and_age(store).await;
}

async fn pages_concatenate_to_the_log(store: &dyn ItemStore) {
    opened(store, "h-pages").await;
    log(store, "h-pages", 1, (2..=11).map(event).collect()).await;
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store.log_page(&ch("h-pages"), after, 3).await.unwrap();
        assert_eq!(page.meta.seq, 11);
        assert!(page.events.len() <= 3);
        for e in &page.events {
            assert_eq!(e.time_ms, event_time(e.seq), "an event keeps its time");
        }
        seen.extend(page.events.iter().map(|e| e.seq));
        match page.events.last() {
            Some(last) if page.more => after = last.seq,
            _ => break,
        }
    }
    assert_eq!(seen, (2..=11).collect::<Vec<_>>());
    let last = store.log_page(&ch("h-pages"), 11, 3).await.unwrap();
    assert!(last.events.is_empty() && !last.more);
    let unknown = store.log_page(&ch("h-none"), 0, 3).await.unwrap();
    assert!(unknown.events.is_empty() && !unknown.more && unknown.meta.seq == 0);
}

async fn search_by_time(store: &dyn ItemStore) {
    opened(store, "h-time").await;
    log(store, "h-time", 1, (2..=40).map(event).collect()).await;
    let c = ch("h-time");
    assert_eq!(
        store.seq_before(&c, 0).await.unwrap(),
        1,
        "before all: the floor"
    );
    assert_eq!(store.seq_before(&c, event_time(2)).await.unwrap(), 1);
    assert_eq!(store.seq_before(&c, event_time(2) + 1).await.unwrap(), 2);
    assert_eq!(store.seq_before(&c, event_time(17)).await.unwrap(), 16);
    assert_eq!(store.seq_before(&c, event_time(17) + 5).await.unwrap(), 17);
    assert_eq!(store.seq_before(&c, u64::MAX).await.unwrap(), 40);
    assert_eq!(store.seq_before(&ch("h-none"), 5).await.unwrap(), 0);
}

async fn retention_by_count_and_age(store: &dyn ItemStore) {
    // Count: a commit keeping 4 events trims the log to the last 4.
    opened(store, "h-count").await;
    log(store, "h-count", 1, (2..=9).map(event).collect()).await;
    store
        .commit(Commit {
            expected_seq: 9,
            meta: meta(10, 1),
            events: vec![event(10)],
            retention: Some(LogRetention {
                max_events: 4,
                max_age: None,
            }),
            ..Commit::new(ch("h-count"))
        })
        .await
        .unwrap();
    let page = store.log_page(&ch("h-count"), 0, 100).await.unwrap();
    assert_eq!(page.meta.log_floor, 6);
    let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![7, 8, 9, 10]);

    // Age: events older than the commit's max age go, whatever the count allows.
    let now = unix_now_ms();
    let day = 24 * 3600 * 1000;
    opened(store, "h-age").await;
    let stamped = |seq: u64, t: u64| LoggedEvent::new(seq, format!(r#"{{"seq":{seq}}}"#), t);
    log(
        store,
        "h-age",
        1,
        vec![stamped(2, now - 3 * day), stamped(3, now - 2 * day)],
    )
    .await;
    store
        .commit(Commit {
            expected_seq: 3,
            meta: meta(4, 1),
            events: vec![stamped(4, now)],
            retention: Some(LogRetention {
                max_events: 100,
                max_age: Some(Duration::from_secs(36 * 3600)),
            }),
            ..Commit::new(ch("h-age"))
        })
        .await
        .unwrap();
    let page = store.log_page(&ch("h-age"), 0, 100).await.unwrap();
    let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
    // DynamoDB expires by TTL (later, lazily); its floor moves by count only.
    if page.meta.log_floor > 1 {
        assert_eq!(page.meta.log_floor, 3);
        assert_eq!(seqs, vec![4]);
    } else {
        assert_eq!(seqs, vec![2, 3, 4]);
    }
    assert_eq!(
        store
            .events_after(&ch("h-age"), 3)
            .await
            .unwrap()
            .unwrap()
            .len(),
        1
    );
}
