//! The archiver over the memory store and the local sink, under an injected clock: objects
//! by hour and size, the checkpoint, lost events, the admin view, and one archiving replica.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::archive::control::Sinks;
use crate::archive::local::LocalTarget;
use crate::archive::reader::ArchiveReader;
use crate::archive::Leader;
use crate::archive::{EnabledBy, SinkControl, SinkError};
use crate::config::{Archive, SinkEntry};
use crate::history::{ArchiveRead, Position};
use crate::store::{ChannelMeta, Commit, ItemStore, LogRetention, MemoryStore};

/// 2026-12-02T08:00:00Z.
const EIGHT: u64 = 1_796_198_400_000;
const HOUR: u64 = 3_600_000;

fn ch(id: &str) -> ChannelId {
    ChannelId::parse(id).unwrap()
}

/// Logs events `seqs` at `times` on `channel`, one commit each, keeping `keep` events.
pub(crate) async fn log(
    store: &dyn ItemStore,
    channel: &ChannelId,
    events: &[(u64, u64)],
    keep: u64,
) {
    for &(seq, time) in events {
        let meta = store.meta(channel).await.unwrap();
        let message = format!(
            r#"{{"type":"new","channel":"{channel}","seq":{seq},"item":{{"id":"i{seq}"}}}}"#
        );
        store
            .commit(Commit {
                expected_seq: meta.seq,
                meta: ChannelMeta {
                    seq,
                    log_floor: meta.log_floor,
                    last_event_ms: time,
                    ..ChannelMeta::default()
                },
                events: vec![LoggedEvent::new(seq, message, time)],
                retention: Some(LogRetention {
                    max_events: keep,
                    max_age: None,
                }),
                ..Commit::new(channel.clone())
            })
            .await
            .unwrap();
    }
}

struct Rig {
    store: Arc<MemoryStore>,
    book: Arc<Book>,
    target: Arc<dyn SinkTarget>,
    now: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new(settings: impl FnOnce(&mut Archive)) -> Rig {
        Rig::with_store(settings, MemoryStore::new(1000))
    }

    fn with_store(settings: impl FnOnce(&mut Archive), store: MemoryStore) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Archive {
            local_dir: dir.path().to_path_buf(),
            flush_secs: 60,
            ..Archive::default()
        };
        settings(&mut archive);
        let store = Arc::new(store);
        let book = Arc::new(Book::new(store.clone(), archive));
        Rig {
            store,
            book,
            target: Arc::new(LocalTarget::new(dir.path())),
            now: Arc::new(AtomicU64::new(EIGHT)),
            _dir: dir,
        }
    }

    fn archiver(&self) -> Archiver {
        let now = self.now.clone();
        let targets = Targets::from([(SinkType::Local, self.target.clone())]);
        Archiver::new(self.book.clone(), targets)
            .with_clock(Arc::new(move || now.load(Ordering::SeqCst)))
    }

    async fn objects(&self, channel: &ChannelId) -> Vec<(String, Vec<u64>)> {
        let prefix = super::super::layout::channel_dir(channel);
        let keys = self.target.list(&prefix, "", 10_000).await.unwrap();
        let mut out = Vec::new();
        for key in keys {
            let body = String::from_utf8(self.target.get(&key).await.unwrap()).unwrap();
            let seqs = body
                .lines()
                .map(|l| crate::history::from_line(l).unwrap().seq)
                .collect();
            out.push((key.rsplit('/').next().unwrap().to_string(), seqs));
        }
        out
    }
}

#[tokio::test]
async fn objects_are_cut_by_hour_and_flushed_by_age() {
    let rig = Rig::new(|_| {});
    let c = ch("quakes?min=2");
    rig.book
        .create(&c, SinkType::Local, EnabledBy::Api)
        .await
        .unwrap();
    log(
        &*rig.store,
        &c,
        &[(1, EIGHT + 10), (2, EIGHT + 20), (3, EIGHT + HOUR + 5)],
        100,
    )
    .await;
    let mut a = rig.archiver();
    rig.now.store(EIGHT + HOUR + 10, Ordering::SeqCst);
    assert!(a.pass().await);
    // 08:00's object is complete (a later hour began); 09:00's is 5 ms old: it waits.
    assert_eq!(
        rig.objects(&c).await,
        vec![("00000000000000000001.ndjson".into(), vec![1, 2])]
    );
    let record = rig.book.get(&c, SinkType::Local).await.unwrap().unwrap();
    assert_eq!(
        (record.archived_seq, record.archived_time_ms),
        (2, EIGHT + 20)
    );
    rig.now.store(EIGHT + HOUR + 5 + 60_000, Ordering::SeqCst);
    a.pass().await;
    let objects = rig.objects(&c).await;
    assert_eq!(objects[1], ("00000000000000000003.ndjson".into(), vec![3]));
    assert_eq!(
        rig.book
            .get(&c, SinkType::Local)
            .await
            .unwrap()
            .unwrap()
            .archived_seq,
        3
    );
    // Read back from the archive, across the hour.
    let reader = ArchiveReader::new(rig.target.clone());
    let page = reader
        .read_after(&c, Position::default(), 10, 10)
        .await
        .unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(!page.more);
    // Behind the history routes: only channels with a sink on are looked up.
    let holds = Arc::new(super::super::Holds::new(10));
    let guarded = ArchiveReader::new(rig.target.clone()).only_channels_with_sinks(holds.clone());
    let none = guarded
        .read_after(&c, Position::default(), 10, 10)
        .await
        .unwrap();
    assert!(none.events.is_empty(), "no sink known: nothing listed");
    holds.set(std::collections::HashMap::from([(c.clone(), 0)]));
    let some = guarded
        .read_after(&c, Position::default(), 10, 10)
        .await
        .unwrap();
    assert_eq!(some.events.len(), 3);
}

#[tokio::test]
async fn full_objects_are_written_at_once_and_every_seq_lands_once() {
    let rig = Rig::new(|a| a.max_object_bytes = 1024);
    let c = ch("big");
    rig.book
        .create(&c, SinkType::Local, EnabledBy::Api)
        .await
        .unwrap();
    let events: Vec<(u64, u64)> = (1..=1200).map(|s| (s, EIGHT + s)).collect();
    log(&*rig.store, &c, &events, 5000).await;
    rig.archiver().pass().await;
    let objects = rig.objects(&c).await;
    let seqs: Vec<u64> = objects.iter().flat_map(|(_, s)| s.clone()).collect();
    // All but the last (not full, not old) object are written.
    assert!(objects.len() > 50, "{}", objects.len());
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(seqs.len() < 1200);
    rig.now.store(EIGHT + 10 * 60_000, Ordering::SeqCst);
    rig.archiver().pass().await;
    let seqs: Vec<u64> = rig
        .objects(&c)
        .await
        .iter()
        .flat_map(|(_, s)| s.clone())
        .collect();
    assert_eq!(seqs, (1..=1200).collect::<Vec<_>>());
    for (name, s) in rig.objects(&c).await {
        assert_eq!(super::super::layout::first_seq(&name), Some(s[0]));
    }
}

#[tokio::test]
async fn events_trimmed_before_archiving_are_counted_and_skipped() {
    let rig = Rig::new(|_| {});
    let c = ch("trimmed");
    // Seq 1 is the channel's first snapshot: not an event (never counted lost).
    rig.store
        .commit(Commit {
            meta: ChannelMeta {
                seq: 1,
                log_floor: 1,
                ..ChannelMeta::default()
            },
            ..Commit::new(c.clone())
        })
        .await
        .unwrap();
    rig.book
        .create(&c, SinkType::Local, EnabledBy::Api)
        .await
        .unwrap();
    let events: Vec<(u64, u64)> = (2..=10).map(|s| (s, EIGHT + s)).collect();
    log(&*rig.store, &c, &events, 3).await;
    let before = crate::metrics::get().archive_lost_events.get();
    rig.now.store(EIGHT + 2 * HOUR, Ordering::SeqCst);
    rig.archiver().pass().await;
    assert!(crate::metrics::get().archive_lost_events.get() >= before + 6);
    let seqs: Vec<u64> = rig
        .objects(&c)
        .await
        .iter()
        .flat_map(|(_, s)| s.clone())
        .collect();
    assert_eq!(seqs, vec![8, 9, 10]);
}

#[tokio::test]
async fn the_admin_view_keeps_settings_sinks_and_reports_lag() {
    let rig = Rig::new(|a| {
        a.sinks = vec![SinkEntry {
            channel: "fixed".into(),
            sink: SinkType::Local,
        }];
    });
    let sinks = Sinks::new(rig.book.clone());
    let (fixed, other) = (ch("fixed"), ch("other?x=1"));
    log(&*rig.store, &other, &[(1, EIGHT), (2, EIGHT + 1)], 100).await;
    let listed = sinks.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].channel.as_str(), listed[0].enabled_by),
        ("fixed", EnabledBy::Settings)
    );
    assert!(matches!(
        sinks.disable(&fixed, SinkType::Local).await,
        Err(SinkError::InSettings)
    ));
    assert!(matches!(
        sinks.enable(&other, SinkType::S3).await,
        Err(SinkError::NotConfigured("s3"))
    ));
    let state = sinks.enable(&other, SinkType::Local).await.unwrap();
    assert_eq!(
        (state.archived_seq, state.channel_seq, state.lag_events),
        (0, 2, 2)
    );
    assert_eq!(state.enabled_by, EnabledBy::Api);
    assert_eq!(
        sinks
            .enable(&other, SinkType::Local)
            .await
            .unwrap()
            .archived_seq,
        0,
        "idempotent"
    );
    rig.now.store(EIGHT + HOUR, Ordering::SeqCst);
    rig.archiver().pass().await;
    let state = sinks.state(&other, SinkType::Local).await.unwrap().unwrap();
    assert_eq!(
        (state.archived_seq, state.lag_events, state.lag_secs),
        (2, 0, 0)
    );
    assert_eq!(sinks.list().await.unwrap().len(), 2);
    assert!(sinks.disable(&other, SinkType::Local).await.unwrap());
    assert!(!sinks.disable(&other, SinkType::Local).await.unwrap());
    assert!(sinks
        .state(&other, SinkType::Local)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(start_paused = true)]
async fn in_a_cluster_one_replica_archives_and_another_takes_over() {
    let rig = Rig::new(|_| {});
    let c = ch("shared");
    rig.book
        .create(&c, SinkType::Local, EnabledBy::Api)
        .await
        .unwrap();
    log(&*rig.store, &c, &[(1, EIGHT)], 100).await;
    rig.now.store(EIGHT + HOUR, Ordering::SeqCst);
    let table = crate::cluster::MemoryLeaseTable::new();
    let ttl = Duration::from_secs(30);
    let mut a = rig
        .archiver()
        .with_leader(Leader::new(Arc::new(table.replica("a", ttl))));
    let mut b = rig
        .archiver()
        .with_leader(Leader::new(Arc::new(table.replica("b", ttl))));
    assert!(a.pass().await);
    assert!(!b.pass().await, "b stands by while a holds the lease");
    log(&*rig.store, &c, &[(2, EIGHT + HOUR + 1)], 100).await;
    rig.now.store(EIGHT + 3 * HOUR, Ordering::SeqCst);
    assert!(!b.pass().await);
    assert_eq!(
        rig.book
            .get(&c, SinkType::Local)
            .await
            .unwrap()
            .unwrap()
            .archived_seq,
        1
    );
    // a stops renewing (it died): once its lease runs out, b archives.
    tokio::time::advance(ttl * 2).await;
    assert!(b.pass().await);
    assert!(!a.pass().await, "a finds its lease taken");
    assert_eq!(
        rig.book
            .get(&c, SinkType::Local)
            .await
            .unwrap()
            .unwrap()
            .archived_seq,
        2
    );
    let seqs: Vec<u64> = rig
        .objects(&c)
        .await
        .iter()
        .flat_map(|(_, s)| s.clone())
        .collect();
    assert_eq!(seqs, vec![1, 2]);
}

#[tokio::test]
async fn a_channel_that_starts_again_from_seq_one_is_archived_again() {
    let rig = Rig::with_store(
        |_| {},
        MemoryStore::new(1000).with_retention(Some(Duration::from_secs(60))),
    );
    let c = ch("reborn");
    rig.book
        .create(&c, SinkType::Local, EnabledBy::Api)
        .await
        .unwrap();
    log(
        &*rig.store,
        &c,
        &[(1, EIGHT), (2, EIGHT + 1), (3, EIGHT + 2)],
        100,
    )
    .await;
    rig.now.store(EIGHT + HOUR, Ordering::SeqCst);
    rig.archiver().pass().await;
    assert_eq!(
        rig.book
            .get(&c, SinkType::Local)
            .await
            .unwrap()
            .unwrap()
            .archived_seq,
        3
    );
    // Removed by the store's retention, then logged again from seq 1 a day later.
    assert_eq!(
        rig.store
            .sweep(crate::store::unix_now() + 3600, 10)
            .await
            .unwrap(),
        1
    );
    let day = EIGHT + 24 * HOUR;
    log(&*rig.store, &c, &[(1, day), (2, day + 1)], 100).await;
    rig.now.store(day + HOUR, Ordering::SeqCst);
    rig.archiver().pass().await;
    let objects = rig.objects(&c).await;
    assert_eq!(
        objects.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
        vec![vec![1, 2, 3], vec![1, 2]]
    );
    assert_eq!(
        rig.book
            .get(&c, SinkType::Local)
            .await
            .unwrap()
            .unwrap()
            .archived_seq,
        2
    );
}

#[tokio::test]
async fn a_sink_dropped_from_the_settings_is_turned_off_at_the_next_start() {
    let rig = Rig::new(|a| {
        a.sinks = vec![SinkEntry {
            channel: "fixed".into(),
            sink: SinkType::Local,
        }];
    });
    rig.book.ensure_settings().await.unwrap();
    Sinks::new(rig.book.clone())
        .enable(&ch("other"), SinkType::Local)
        .await
        .unwrap();
    // The next start: the same store, settings without the sink.
    let settings = Archive {
        sinks: Vec::new(),
        ..rig.book.settings.clone()
    };
    let book = Arc::new(Book::new(rig.store.clone(), settings));
    book.ensure_settings().await.unwrap();
    let left: Vec<String> = book
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.channel)
        .collect();
    assert_eq!(
        left,
        vec!["other"],
        "the API's sink stays, the settings' one goes"
    );
}
