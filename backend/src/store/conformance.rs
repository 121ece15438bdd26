//! The `ItemStore` conformance suite: every implementation must pass it.
//!
//! Call [`run`] with a fresh, empty store built with a change-log capacity of
//! [`CAPACITY`] events per channel.

use serde_json::{json, Map, Value};

use crate::channel::ChannelId;

use super::{ChannelMeta, Commit, ItemStore, LoggedEvent, StoreError, StoredItem};

/// The log capacity the store under test must be created with.
pub const CAPACITY: u64 = 3;

/// A channel id of the suite (every name it uses is valid).
pub(super) fn ch(id: &str) -> ChannelId {
    ChannelId::parse(id).expect("a valid channel id")
}

pub(super) fn item(id: &str, data: Value, seq: u64) -> StoredItem {
    let Value::Object(data) = data else {
        panic!("object")
    };
    StoredItem {
        id: id.to_string(),
        hash: format!("h-{id}-{seq}"),
        data,
        seq,
        first_seen: 1,
        last_changed: seq,
    }
}

/// The time conformance events are stamped with: 10 ms apart, in seq order.
pub(super) fn event_time(seq: u64) -> u64 {
    1_700_000_000_000 + seq * 10
}

pub(super) fn event(seq: u64) -> LoggedEvent {
    LoggedEvent::new(
        seq,
        format!(r#"{{"type":"new","seq":{seq}}}"#),
        event_time(seq),
    )
}

pub(super) fn meta(seq: u64, floor: u64) -> ChannelMeta {
    ChannelMeta {
        seq,
        fetcher_state: Some(json!({"etag": format!("e{seq}")})),
        log_floor: floor,
        committed_from: seq.saturating_sub(1),
        last_event_ms: event_time(seq),
    }
}

/// Runs every check; panics with the failing check's name.
pub async fn run(store: &dyn ItemStore) {
    unknown_channels_are_empty(store).await;
    commits_round_trip(store).await;
    conflicts_change_nothing(store).await;
    log_replays_and_trims(store).await;
    channels_are_isolated(store).await;
    large_items_round_trip(store).await;
    budgets_round_trip(store).await;
    concurrent_writers_cannot_both_win(store).await;
    large_commits_apply_whole(store).await;
    pages_read_only_what_they_return(store).await;
    super::conformance_history::run(store).await;
    super::conformance_records::run(store).await;
}

/// A page is the items after the cursor id, in id order, with whether more follow; the meta
/// and the count come without the items.
async fn pages_read_only_what_they_return(store: &dyn ItemStore) {
    let ids = |p: &super::Page| p.items.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
    store
        .commit(Commit {
            channel: ch("paged"),
            meta: meta(1, 1),
            upserts: ["e", "a", "c", "b", "d"]
                .iter()
                .map(|id| item(id, json!({"id": id}), 1))
                .collect(),
            ..Commit::new(ch("paged"))
        })
        .await
        .unwrap();
    let first = store.items_page(&ch("paged"), None, 2).await.unwrap();
    assert_eq!(
        (ids(&first), first.more),
        (vec!["a".into(), "b".into()], true)
    );
    assert_eq!(first.meta, meta(1, 1), "the page carries the meta");
    let next = store.items_page(&ch("paged"), Some("b"), 2).await.unwrap();
    assert_eq!(
        (ids(&next), next.more),
        (vec!["c".into(), "d".into()], true)
    );
    let last = store.items_page(&ch("paged"), Some("d"), 2).await.unwrap();
    assert_eq!(
        (ids(&last), last.more),
        (vec!["e".into()], false),
        "last page"
    );
    let exact = store.items_page(&ch("paged"), Some("c"), 2).await.unwrap();
    assert_eq!(
        (ids(&exact), exact.more),
        (vec!["d".into(), "e".into()], false)
    );
    let past = store.items_page(&ch("paged"), Some("e"), 2).await.unwrap();
    assert_eq!(
        (ids(&past), past.more),
        (vec![], false),
        "after the last id"
    );
    // A cursor longer than any id a store can hold still pages correctly.
    let long = format!("c{}", "é".repeat(600));
    let after_long = store
        .items_page(&ch("paged"), Some(&long), 5)
        .await
        .unwrap();
    assert_eq!(ids(&after_long), vec!["d".to_string(), "e".to_string()]);
    let between = store.items_page(&ch("paged"), Some("bb"), 1).await.unwrap();
    assert_eq!(
        ids(&between),
        vec!["c".to_string()],
        "a cursor that is no id"
    );
    assert_eq!(
        store
            .items_page(&ch("paged"), None, 10)
            .await
            .unwrap()
            .items
            .len(),
        5
    );
    assert_eq!(store.item_count(&ch("paged")).await.unwrap(), 5);
    assert_eq!(store.meta(&ch("paged")).await.unwrap(), meta(1, 1));
    // Items of a neighbouring channel never leak into a page.
    let iso = store.items_page(&ch("iso"), None, 10).await.unwrap();
    assert_eq!(ids(&iso), vec!["x".to_string()]);
    let none = store
        .items_page(&ch("never-paged"), None, 10)
        .await
        .unwrap();
    assert_eq!(none, super::Page::default(), "unknown channel page");
    assert_eq!(store.item_count(&ch("never-paged")).await.unwrap(), 0);
    assert_eq!(
        store.meta(&ch("never-paged")).await.unwrap(),
        ChannelMeta::default()
    );
    // Large items page as well.
    let many = store
        .items_page(&ch("many"), Some("i100"), 3)
        .await
        .unwrap();
    assert_eq!(ids(&many), vec!["i101", "i102", "i103"]);
    assert!(many.more);
}

async fn concurrent_writers_cannot_both_win(store: &dyn ItemStore) {
    let attempt = |who: &str| Commit {
        fence: None,
        retention: None,
        channel: ch("race"),
        expected_seq: 0,
        meta: meta(1, 1),
        upserts: vec![item(who, json!({"id": who}), 1)],
        removals: vec![],
        events: vec![],
    };
    let (a, b) = tokio::join!(store.commit(attempt("a")), store.commit(attempt("b")));
    let winner = match (a, b) {
        (Ok(()), Err(StoreError::Conflict { found: 1, .. })) => "a",
        (Err(StoreError::Conflict { found: 1, .. }), Ok(())) => "b",
        other => panic!("exactly one of two racing commits must win, got {other:?}"),
    };
    let items = store.load(&ch("race")).await.unwrap().1;
    assert_eq!(items.len(), 1, "only the winner's items");
    assert_eq!(items[0].id, winner);
    // The same race with commits too large for one DynamoDB transaction.
    let large = |who: &str| Commit {
        fence: None,
        retention: None,
        channel: ch("race-large"),
        expected_seq: 0,
        meta: meta(1, 1),
        upserts: (0..120)
            .map(|i| item(&format!("{i:03}"), json!({"id": i, "by": who}), 1))
            .collect(),
        removals: vec![],
        events: vec![],
    };
    let (a, b) = tokio::join!(store.commit(large("a")), store.commit(large("b")));
    let winner = match (a, b) {
        (Ok(()), Err(StoreError::Conflict { .. })) => "a",
        (Err(StoreError::Conflict { .. }), Ok(())) => "b",
        other => panic!("exactly one of two large racing commits must win, got {other:?}"),
    };
    let items = store.load(&ch("race-large")).await.unwrap().1;
    assert_eq!(items.len(), 120);
    assert!(
        items.iter().all(|i| i.data["by"] == json!(winner)),
        "every item is the winner's"
    );
}

/// More writes than one DynamoDB transaction takes (100 actions, 4 MB): still all or nothing
/// from the reader's point of view, and complete afterwards.
async fn large_commits_apply_whole(store: &dyn ItemStore) {
    let pad = "p".repeat(30_000);
    let first: Vec<StoredItem> = (0..180)
        .map(|i| item(&format!("i{i:03}"), json!({"id": i, "pad": pad}), 1))
        .collect();
    store
        .commit(Commit {
            fence: None,
            retention: None,
            channel: ch("many"),
            expected_seq: 0,
            meta: meta(1, 1),
            upserts: first,
            removals: vec![],
            events: vec![],
        })
        .await
        .unwrap();
    let (m, items) = store.load(&ch("many")).await.unwrap();
    assert_eq!((m.seq, items.len()), (1, 180), "large first snapshot");
    let updates: Vec<StoredItem> = (0..120)
        .map(|i| item(&format!("i{i:03}"), json!({"id": i, "v": 2}), 2 + i as u64))
        .collect();
    store
        .commit(Commit {
            fence: None,
            retention: None,
            channel: ch("many"),
            expected_seq: 1,
            meta: meta(131, 1),
            upserts: updates,
            removals: (170..180).map(|i| format!("i{i:03}")).collect(),
            events: (2..=131).map(event).collect(),
        })
        .await
        .unwrap();
    let (m, items) = store.load(&ch("many")).await.unwrap();
    assert_eq!(m.seq, 131);
    assert_eq!(items.len(), 170, "removals applied");
    assert_eq!(items[0].data["v"], json!(2), "updates applied");
    assert_eq!(items[150].data["pad"], json!(pad), "untouched items kept");
    let replay = store.events_after(&ch("many"), 128).await.unwrap().unwrap();
    assert_eq!(
        replay.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![129, 130, 131],
        "log trimmed to capacity"
    );
}

async fn budgets_round_trip(store: &dyn ItemStore) {
    use crate::budget::saved;
    let writes = store.writes();
    assert_eq!(store.load_budget("keys:ab").await.unwrap(), None);
    // What the version before issue 21 wrote (the same bytes in redb, the same `calls`
    // string attribute in DynamoDB): a JSON list of call times. It still loads.
    store
        .save_budget("keys:ab", "[1,2,3]".into())
        .await
        .unwrap();
    let old = store.load_budget("keys:ab").await.unwrap().unwrap();
    assert_eq!(saved::decode(&old).unwrap(), vec![(1, 1), (2, 1), (3, 1)]);
    // The compact form replaces it.
    let minute = [std::time::Duration::from_secs(60)];
    let ages = (0..10_000).map(|i| std::time::Duration::from_millis(i * 6));
    let compact = saved::encode(1_000_000, &minute, ages);
    store.save_budget("keys:ab", compact.clone()).await.unwrap();
    store.save_budget("fetcher:x", "[9]".into()).await.unwrap();
    let loaded = store.load_budget("keys:ab").await.unwrap().unwrap();
    assert_eq!(loaded, compact, "replaced");
    let calls = saved::decode(&loaded).unwrap();
    assert_eq!(calls.iter().map(|c| c.1).sum::<u64>(), 10_000);
    assert!(calls.len() <= saved::BUCKETS as usize, "{calls:?}");
    assert_eq!(
        store.load_budget("fetcher:x").await.unwrap().as_deref(),
        Some("[9]")
    );
    assert_eq!(store.writes(), writes, "budget usage is not an item write");
}

async fn unknown_channels_are_empty(store: &dyn ItemStore) {
    let (m, items) = store.load(&ch("never-seen")).await.unwrap();
    assert_eq!(m, ChannelMeta::default(), "unknown channel meta");
    assert!(items.is_empty(), "unknown channel items");
    assert_eq!(
        store.events_after(&ch("never-seen"), 0).await.unwrap(),
        None,
        "unknown channel log"
    );
}

async fn commits_round_trip(store: &dyn ItemStore) {
    let writes = store.writes();
    // First poll: a snapshot at seq 1 (not logged), two items.
    store
        .commit(Commit {
            fence: None,
            retention: None,
            channel: ch("rt"),
            expected_seq: 0,
            meta: meta(1, 1),
            upserts: vec![
                item("b", json!({"id": "b", "v": 1}), 1),
                item("a", json!({"id": "a"}), 1),
            ],
            removals: vec![],
            events: vec![],
        })
        .await
        .unwrap();
    assert_eq!(store.writes(), writes + 1, "a commit is one write");
    let (m, items) = store.load(&ch("rt")).await.unwrap();
    assert_eq!(m, meta(1, 1));
    assert_eq!(
        items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"],
        "items sorted by id"
    );
    assert_eq!(items[1].data["v"], json!(1));
    // Then an update and a removal.
    store
        .commit(Commit {
            fence: None,
            retention: None,
            channel: ch("rt"),
            expected_seq: 1,
            meta: meta(3, 1),
            upserts: vec![item("b", json!({"id": "b", "v": 2}), 2)],
            removals: vec!["a".into()],
            events: vec![event(2), event(3)],
        })
        .await
        .unwrap();
    let (m, items) = store.load(&ch("rt")).await.unwrap();
    assert_eq!(m.seq, 3);
    assert_eq!(items.len(), 1, "removed item is gone");
    assert_eq!(items[0].data["v"], json!(2), "upsert replaces");
    assert_eq!(items[0].seq, 2);
}

async fn conflicts_change_nothing(store: &dyn ItemStore) {
    let before = store.load(&ch("rt")).await.unwrap();
    let writes = store.writes();
    let stale = Commit {
        fence: None,
        retention: None,
        channel: ch("rt"),
        expected_seq: 1,
        meta: meta(9, 1),
        upserts: vec![item("z", json!({"id": "z"}), 9)],
        removals: vec!["b".into()],
        events: vec![event(9)],
    };
    match store.commit(stale).await {
        Err(StoreError::Conflict {
            expected: 1,
            found: 3,
            ..
        }) => {}
        other => panic!("stale commit must conflict, got {other:?}"),
    }
    assert_eq!(
        store.load(&ch("rt")).await.unwrap(),
        before,
        "a conflict writes nothing"
    );
    assert_eq!(store.writes(), writes);
}

async fn log_replays_and_trims(store: &dyn ItemStore) {
    let seqs =
        |v: Option<Vec<LoggedEvent>>| v.map(|e| e.into_iter().map(|e| e.seq).collect::<Vec<_>>());
    assert_eq!(
        seqs(store.events_after(&ch("rt"), 1).await.unwrap()),
        Some(vec![2, 3])
    );
    assert_eq!(
        seqs(store.events_after(&ch("rt"), 2).await.unwrap()),
        Some(vec![3])
    );
    assert_eq!(
        seqs(store.events_after(&ch("rt"), 3).await.unwrap()),
        Some(vec![]),
        "up to date"
    );
    assert_eq!(
        store.events_after(&ch("rt"), 0).await.unwrap(),
        None,
        "before the snapshot"
    );
    assert_eq!(
        store.events_after(&ch("rt"), 4).await.unwrap(),
        None,
        "from the future"
    );
    let msg = store
        .events_after(&ch("rt"), 2)
        .await
        .unwrap()
        .unwrap()
        .remove(0)
        .message;
    assert_eq!(
        msg, r#"{"type":"new","seq":3}"#,
        "messages are kept verbatim"
    );
    // Four more events with capacity 3: only seq 5..7 stay replayable.
    store
        .commit(Commit {
            fence: None,
            retention: None,
            channel: ch("rt"),
            expected_seq: 3,
            meta: meta(7, 1),
            upserts: vec![],
            removals: vec![],
            events: (4..=7).map(event).collect(),
        })
        .await
        .unwrap();
    assert_eq!(
        store.load(&ch("rt")).await.unwrap().0.log_floor,
        4,
        "floor moves with trimming"
    );
    assert_eq!(
        seqs(store.events_after(&ch("rt"), 4).await.unwrap()),
        Some(vec![5, 6, 7])
    );
    assert_eq!(
        store.events_after(&ch("rt"), 3).await.unwrap(),
        None,
        "trimmed events are gone"
    );
}

async fn channels_are_isolated(store: &dyn ItemStore) {
    for (channel, id) in [("iso", "x"), ("iso?a=1", "y"), ("isox", "z")] {
        store
            .commit(Commit {
                fence: None,
                retention: None,
                channel: ch(channel),
                expected_seq: 0,
                meta: meta(1, 1),
                upserts: vec![item(id, json!({"id": id}), 1)],
                removals: vec![],
                events: vec![],
            })
            .await
            .unwrap();
    }
    for (channel, id) in [("iso", "x"), ("iso?a=1", "y"), ("isox", "z")] {
        let items = store.load(&ch(channel)).await.unwrap().1;
        assert_eq!(items.len(), 1, "{channel} sees only its own items");
        assert_eq!(items[0].id, id);
    }
}

async fn large_items_round_trip(store: &dyn ItemStore) {
    let mut data = Map::new();
    data.insert("id".into(), json!("big"));
    data.insert("blob".into(), json!("x".repeat(300_000)));
    let big = StoredItem {
        data,
        ..item("big", json!({}), 1)
    };
    store
        .commit(Commit {
            fence: None,
            retention: None,
            channel: ch("big"),
            expected_seq: 0,
            meta: meta(1, 1),
            upserts: vec![big.clone()],
            removals: vec![],
            events: vec![],
        })
        .await
        .unwrap();
    assert_eq!(store.load(&ch("big")).await.unwrap().1, vec![big]);
}
