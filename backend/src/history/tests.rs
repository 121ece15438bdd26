//! The history read side against real stores: pages under concurrent writes (property), the
//! coalesced merge against a brute-force merge, ranges, and the archive below the log's floor.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use proptest::prelude::*;

use super::*;
use crate::store::{ChannelMeta, Commit, ItemStore, LogRetention, MemoryStore};

fn id(name: &str) -> ChannelId {
    ChannelId::parse(name).unwrap()
}

/// Appends events stamped `times` to `channel` (one commit), as a writer would.
async fn append(
    store: &dyn ItemStore,
    channel: &ChannelId,
    times: &[u64],
    keep: u64,
) -> Vec<LoggedEvent> {
    let meta = store.meta(channel).await.unwrap();
    let (expected, mut seq) = match meta.seq {
        0 => (0, 1),
        s => (s, s),
    };
    let mut events = Vec::new();
    for &t in times {
        seq += 1;
        events.push(LoggedEvent::new(
            seq,
            format!(r#"{{"type":"new","channel":"{channel}","seq":{seq}}}"#),
            t.max(meta.last_event_ms),
        ));
    }
    store
        .commit(Commit {
            expected_seq: expected,
            meta: ChannelMeta {
                seq,
                log_floor: meta.log_floor.max(1),
                last_event_ms: events.last().map_or(meta.last_event_ms, |e| e.time_ms),
                ..meta
            },
            events: events.clone(),
            retention: Some(LogRetention {
                max_events: keep,
                max_age: None,
            }),
            ..Commit::new(channel.clone())
        })
        .await
        .unwrap();
    events
}

async fn read_page(
    store: &dyn ItemStore,
    archive: Option<&dyn ArchiveRead>,
    channels: &[ChannelId],
    range: Range,
    cursor: Option<&str>,
    limit: usize,
) -> (Vec<(ChannelId, LoggedEvent)>, String, bool) {
    let cursor = match cursor {
        Some(text) => Cursor::decode(text, channels).unwrap(),
        None => Cursor::start(channels.len()),
    };
    let sources = channels
        .iter()
        .zip(&cursor.positions)
        .map(|(c, at)| Source::new(store, archive, c.clone(), range, *at, 4))
        .collect();
    let p = page(sources, cursor, limit).await.unwrap();
    let events = p
        .events
        .into_iter()
        .map(|(i, e)| (channels[i].clone(), e))
        .collect();
    (events, p.cursor.encode(channels), p.more)
}

/// Pages from `cursor` until no more, each at most `limit` long; panics if the pages never
/// end (a cursor that does not advance).
async fn read_all(
    store: &dyn ItemStore,
    archive: Option<&dyn ArchiveRead>,
    channels: &[ChannelId],
    range: Range,
    cursor: Option<&str>,
    limit: usize,
) -> (Vec<(ChannelId, LoggedEvent)>, String) {
    let mut all = Vec::new();
    let mut cursor = cursor.map(str::to_string);
    for _ in 0..10_000 {
        let (events, next, more) =
            read_page(store, archive, channels, range, cursor.as_deref(), limit).await;
        assert!(events.len() <= limit, "a page holds at most `limit` events");
        all.extend(events);
        cursor = Some(next);
        if !more {
            return (all, cursor.unwrap_or_default());
        }
    }
    panic!("the pages never end: the cursor does not advance");
}

/// Every event of `channels` in range, merged by (time, channel id, seq): the brute force.
fn brute_force(all: &[(ChannelId, LoggedEvent)], range: Range) -> Vec<(u64, String, u64)> {
    let mut v: Vec<(u64, String, u64)> = all
        .iter()
        .filter(|(_, e)| range.from_ms.is_none_or(|f| e.time_ms >= f))
        .filter(|(_, e)| range.to_ms.is_none_or(|t| e.time_ms < t))
        .map(|(c, e)| (e.time_ms, c.to_string(), e.seq))
        .collect();
    v.sort();
    v
}

fn keys(events: &[(ChannelId, LoggedEvent)]) -> Vec<(u64, String, u64)> {
    events
        .iter()
        .map(|(c, e)| (e.time_ms, c.to_string(), e.seq))
        .collect()
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Pages read while writers keep committing: every event exactly once, each channel's in
    /// order, each page in merge order; with the writes done, the pages are the brute-force merge.
    #[test]
    fn pages_under_concurrent_writes_have_no_gap_and_no_duplicate(
        steps in proptest::collection::vec((0usize..3, proptest::collection::vec(0u64..50, 0..4), 1usize..5), 1..30),
        limit in 1usize..6,
    ) {
        run(async {
            let store = MemoryStore::new(10_000);
            let channels = vec![id("a"), id("b?x=1"), id("c")];
            let mut clock = [1_000u64; 3];
            let mut all = Vec::new();
            let mut seen: Vec<(ChannelId, LoggedEvent)> = Vec::new();
            let mut cursor: Option<String> = None;
            for (who, gaps, reads) in steps {
                let times: Vec<u64> = gaps.iter().map(|g| { clock[who] += g; clock[who] }).collect();
                if !times.is_empty() {
                    for e in append(&store, &channels[who], &times, 10_000).await {
                        all.push((channels[who].clone(), e));
                    }
                }
                for _ in 0..reads {
                    let (events, next, _) = read_page(&store, None, &channels, Range::default(), cursor.as_deref(), limit).await;
                    let k = keys(&events);
                    prop_assert!(k.windows(2).all(|w| w[0] < w[1]), "a page is in merge order");
                    seen.extend(events);
                    cursor = Some(next);
                }
            }
            let (rest, _) = read_all(&store, None, &channels, Range::default(), cursor.as_deref(), limit).await;
            seen.extend(rest);
            let unique: BTreeSet<_> = keys(&seen).into_iter().collect();
            prop_assert_eq!(unique.len(), seen.len(), "no duplicate");
            prop_assert_eq!(unique, keys(&all).into_iter().collect::<BTreeSet<_>>(), "no gap");
            for c in &channels {
                let seqs: Vec<u64> = seen.iter().filter(|(x, _)| x == c).map(|(_, e)| e.seq).collect();
                prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]), "a channel's events in order");
            }
            // Read again from the start, writes done: exactly the brute-force merge.
            let (again, _) = read_all(&store, None, &channels, Range::default(), None, limit).await;
            prop_assert_eq!(keys(&again), brute_force(&all, Range::default()));
            Ok(())
        })?;
    }

    /// A time range (from inclusive, to exclusive) picks exactly the brute force's events.
    #[test]
    fn ranges_match_the_brute_force(
        per_channel in proptest::collection::vec(proptest::collection::vec(0u64..30, 1..12), 1..4),
        from in proptest::option::of(900u64..1200),
        width in proptest::option::of(0u64..300),
        limit in 1usize..7,
    ) {
        run(async {
            let store = MemoryStore::new(10_000);
            let channels: Vec<ChannelId> = (0..per_channel.len()).map(|i| id(&format!("ch{i}"))).collect();
            let mut all = Vec::new();
            for (c, gaps) in channels.iter().zip(&per_channel) {
                let mut t = 1_000;
                let times: Vec<u64> = gaps.iter().map(|g| { t += g; t }).collect();
                for e in append(&store, c, &times, 10_000).await {
                    all.push((c.clone(), e));
                }
            }
            let range = Range { from_ms: from, to_ms: width.map(|w| from.unwrap_or(1000) + w) };
            let (got, _) = read_all(&store, None, &channels, range, None, limit).await;
            prop_assert_eq!(keys(&got), brute_force(&all, range));
            Ok(())
        })?;
    }
}

/// An archive in memory: what a sink wrote, per channel (the reader's contract only).
#[derive(Default)]
struct Archived(Mutex<HashMap<ChannelId, Vec<LoggedEvent>>>);

#[async_trait]
impl ArchiveRead for Archived {
    async fn read_after(
        &self,
        channel: &ChannelId,
        after: Position,
        limit: usize,
        _max_objects: usize,
    ) -> anyhow::Result<ArchivedPage> {
        let map = self.0.lock().unwrap();
        let events: Vec<LoggedEvent> = map
            .get(channel)
            .into_iter()
            .flatten()
            .filter(|e| e.seq > after.seq)
            .cloned()
            .collect();
        Ok(ArchivedPage {
            more: events.len() > limit,
            events: events.into_iter().take(limit).collect(),
        })
    }
}

#[tokio::test]
async fn ranges_older_than_the_log_come_from_the_archive_once() {
    let store = MemoryStore::new(10_000);
    let archive = Archived::default();
    let c = id("trimmed");
    let mut all = Vec::new();
    for chunk in 0..6u64 {
        let times: Vec<u64> = (0..5).map(|i| 10_000 + chunk * 100 + i).collect();
        let events = append(&store, &c, &times, 7).await;
        archive
            .0
            .lock()
            .unwrap()
            .entry(c.clone())
            .or_default()
            .extend(events.clone());
        all.extend(events.into_iter().map(|e| (c.clone(), e)));
    }
    let floor = store.meta(&c).await.unwrap().log_floor;
    assert!(
        floor > 20,
        "the log kept only the last events (floor {floor})"
    );
    for limit in [1, 3, 8, 100] {
        let (got, _) = read_all(
            &store,
            Some(&archive),
            std::slice::from_ref(&c),
            Range::default(),
            None,
            limit,
        )
        .await;
        assert_eq!(
            keys(&got),
            brute_force(&all, Range::default()),
            "limit {limit}"
        );
    }
    // A range that starts before the log's floor and ends inside it.
    let range = Range {
        from_ms: Some(10_102),
        to_ms: Some(10_503),
    };
    let (events, _, more) = read_page(
        &store,
        Some(&archive),
        std::slice::from_ref(&c),
        range,
        None,
        100,
    )
    .await;
    assert!(!more);
    assert_eq!(keys(&events), brute_force(&all, range));
    // Without the archive, the same read starts at what the log holds.
    let (events, _, _) = read_page(
        &store,
        None,
        std::slice::from_ref(&c),
        Range::default(),
        None,
        100,
    )
    .await;
    assert_eq!(events.first().map(|(_, e)| e.seq), Some(floor + 1));
}

#[tokio::test]
async fn a_cursor_polled_later_returns_only_new_events() {
    let store: Arc<dyn ItemStore> = Arc::new(MemoryStore::new(100));
    let c = [id("live")];
    append(store.as_ref(), &c[0], &[1, 2, 3], 100).await;
    let (events, cursor, more) =
        read_page(store.as_ref(), None, &c, Range::default(), None, 10).await;
    assert_eq!((events.len(), more), (3, false));
    let (none, same, _) = read_page(
        store.as_ref(),
        None,
        &c,
        Range::default(),
        Some(&cursor),
        10,
    )
    .await;
    assert!(none.is_empty());
    assert_eq!(same, cursor, "no event: the cursor stays");
    append(store.as_ref(), &c[0], &[4, 5], 100).await;
    let (new, _, _) = read_page(
        store.as_ref(),
        None,
        &c,
        Range::default(),
        Some(&cursor),
        10,
    )
    .await;
    assert_eq!(
        new.iter().map(|(_, e)| e.seq).collect::<Vec<_>>(),
        vec![5, 6]
    );
}
