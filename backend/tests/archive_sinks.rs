//! Archive sinks for real: the S3 sink through aws-sdk-s3 against moto and the local sink on
//! a temp dir. A crash between an upload and its checkpoint duplicates nothing; a sink that
//! is unavailable for a while delays archiving, says so, and loses nothing; archived events
//! read back page by page across objects and hours.

mod archive_rig;
mod emulators;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use archive_rig::*;
use restream::archive::book::Book;
use restream::archive::control::Sinks;
use restream::archive::local::LocalTarget;
use restream::archive::reader::ArchiveReader;
use restream::archive::s3::S3Target;
use restream::archive::{EnabledBy, SinkControl, SinkTarget, SinkType};
use restream::history::{ArchiveRead, Position};

struct S3 {
    moto: emulators::Server,
    bucket: String,
    /// On moto directly (for checks and planted objects).
    client: aws_sdk_s3::Client,
}

impl S3 {
    async fn start() -> S3 {
        let moto = emulators::start_moto();
        let (client, bucket) = emulators::s3_bucket(&moto).await;
        S3 {
            moto,
            bucket,
            client,
        }
    }

    /// An S3 target at `url` (moto, or a proxy to it), one attempt per request.
    async fn target(&self, url: &str) -> Arc<dyn SinkTarget> {
        let mut settings = emulators::aws_settings(url);
        settings.max_attempts = 1;
        let sdk = emulators::sdk_config(&settings).await;
        let client = restream::aws::s3(&sdk, &settings);
        Arc::new(S3Target::new(client, &self.bucket, "arch/"))
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.moto.url.trim_start_matches("http://").parse().unwrap()
    }
}

fn flat(objects: &[Vec<u64>]) -> Vec<u64> {
    objects.iter().flatten().copied().collect()
}

/// Crashes (the checkpoint write fails) right after an upload, twice, and checks that the
/// next archiver replaces the object rather than adding one.
async fn crash_between_upload_and_checkpoint(
    sink: SinkType,
    root: &str,
    target: Arc<dyn SinkTarget>,
    store: Flaky,
) {
    let store = Arc::new(store);
    let book = Arc::new(Book::new(store.clone(), settings(sink, root)));
    let c = ch("quakes?min=2.5");
    book.create(&c, sink, EnabledBy::Api).await.unwrap();
    let now = Arc::new(AtomicU64::new(EIGHT + 2 * 60_000));
    log(
        &*store,
        &c,
        &[(1, EIGHT + 1), (2, EIGHT + 2), (3, EIGHT + 3)],
    )
    .await;
    store.failures.store(1, Ordering::SeqCst);
    archiver(&book, &target, &now).pass().await;
    assert_eq!(
        archived(&*target, &c).await,
        vec![vec![1, 2, 3]],
        "uploaded"
    );
    let record = book.get(&c, sink).await.unwrap().unwrap();
    assert_eq!(record.archived_seq, 0, "but not checkpointed");
    assert!(record.last_error.is_some());

    // More events of the same hour meanwhile; a fresh archiver (the restarted process).
    log(&*store, &c, &[(4, EIGHT + 4), (5, EIGHT + 5)]).await;
    archiver(&book, &target, &now).pass().await;
    assert_eq!(
        archived(&*target, &c).await,
        vec![vec![1, 2, 3, 4, 5]],
        "replaced, not added"
    );
    let record = book.get(&c, sink).await.unwrap().unwrap();
    assert_eq!((record.archived_seq, record.last_error), (5, None));

    // Again in the next hour.
    log(&*store, &c, &[(6, EIGHT + HOUR + 1), (7, EIGHT + HOUR + 2)]).await;
    now.store(EIGHT + 3 * HOUR, Ordering::SeqCst);
    store.failures.store(1, Ordering::SeqCst);
    archiver(&book, &target, &now).pass().await;
    archiver(&book, &target, &now).pass().await;
    let objects = archived(&*target, &c).await;
    assert_eq!(objects, vec![vec![1, 2, 3, 4, 5], vec![6, 7]]);
    assert_eq!(
        flat(&objects),
        (1..=7).collect::<Vec<_>>(),
        "every seq exactly once"
    );
    assert_eq!(book.get(&c, sink).await.unwrap().unwrap().archived_seq, 7);
}

/// Archives, loses the sink (`down(true)`) while events keep coming, checks that the failure
/// shows, brings it back and checks that every event is archived exactly once.
async fn outage_then_recovery(
    sink: SinkType,
    root: &str,
    target: Arc<dyn SinkTarget>,
    down: impl Fn(bool),
) {
    let store = Arc::new(Flaky::new());
    let book = Arc::new(Book::new(store.clone(), settings(sink, root)));
    let control = Sinks::new(book.clone());
    let (c, d) = (ch("feed"), ch("feed2"));
    let now = Arc::new(AtomicU64::new(EIGHT + HOUR));
    for channel in [&c, &d] {
        control.enable(channel, sink).await.unwrap();
        let events: Vec<(u64, u64)> = (1..=5).map(|s| (s, EIGHT + s)).collect();
        log(&*store, channel, &events).await;
    }
    let mut a = archiver(&book, &target, &now);
    a.pass().await;
    for channel in [&c, &d] {
        let state = control.state(channel, sink).await.unwrap().unwrap();
        assert_eq!(state.archived_seq, 5);
    }

    down(true);
    for channel in [&c, &d] {
        let events: Vec<(u64, u64)> = (6..=10).map(|s| (s, EIGHT + HOUR + s)).collect();
        log(&*store, channel, &events).await;
    }
    now.store(EIGHT + 3 * HOUR, Ordering::SeqCst);
    let failed = || {
        restream::metrics::get()
            .archive_objects
            .with_label_values(&[sink.as_str(), "failed"])
            .get()
    };
    let before = failed();
    a.pass().await;
    let state = control.state(&c, sink).await.unwrap().unwrap();
    assert_eq!((state.archived_seq, state.lag_events), (5, 5));
    let error = state.last_error.expect("the failure shows");
    assert_eq!(
        error,
        format!("the {} sink cannot write objects", sink.as_str())
    );
    let failing = control.failing();
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].0, sink);
    assert_eq!(
        failed(),
        before + 1,
        "the target failed once: the other channel waits for the next pass"
    );
    // Still down at the next attempt (after the backoff): still failing, nothing lost.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.pass().await;
    assert_eq!(failed(), before + 2);
    for channel in [&c, &d] {
        let state = control.state(channel, sink).await.unwrap().unwrap();
        assert_eq!((state.archived_seq, state.lag_events), (5, 5));
    }

    down(false);
    for attempt in 0.. {
        a.pass().await;
        let mut done = true;
        for channel in [&c, &d] {
            done &= book.get(channel, sink).await.unwrap().unwrap().archived_seq == 10;
        }
        if done {
            break;
        }
        assert!(attempt < 200, "the sink never caught up");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for channel in [&c, &d] {
        let state = control.state(channel, sink).await.unwrap().unwrap();
        assert_eq!((state.lag_events, state.last_error), (0, None));
        let objects = archived(&*target, channel).await;
        assert_eq!(
            flat(&objects),
            (1..=10).collect::<Vec<_>>(),
            "every seq exactly once"
        );
    }
    assert!(control.failing().is_empty());
}

#[tokio::test]
async fn s3_a_crash_between_upload_and_checkpoint_duplicates_nothing() {
    let s3 = S3::start().await;
    let target = s3.target(&s3.moto.url).await;
    crash_between_upload_and_checkpoint(SinkType::S3, &s3.bucket, target, Flaky::new()).await;
}

#[tokio::test]
async fn local_a_crash_between_upload_and_checkpoint_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let target: Arc<dyn SinkTarget> = Arc::new(LocalTarget::new(root));
    crash_between_upload_and_checkpoint(SinkType::Local, root, target, Flaky::new()).await;
}

/// The production profile: sink state in DynamoDB, objects in S3 (both moto).
#[tokio::test]
async fn s3_and_dynamodb_a_crash_between_upload_and_checkpoint_duplicates_nothing() {
    let s3 = S3::start().await;
    let target = s3.target(&s3.moto.url).await;
    let settings = emulators::aws_settings(&s3.moto.url);
    let sdk = emulators::sdk_config(&settings).await;
    let dynamo = restream::store::DynamoItemStore::connect(
        restream::aws::dynamodb(&sdk, &settings),
        &emulators::unique("archive"),
        10_000,
        Duration::from_secs(3600),
        true,
    )
    .await
    .unwrap();
    let store = Flaky::over(Arc::new(dynamo));
    crash_between_upload_and_checkpoint(SinkType::S3, &s3.bucket, target, store).await;
}

#[tokio::test]
async fn s3_unavailable_for_a_while_delays_archiving_and_loses_nothing() {
    let s3 = S3::start().await;
    let proxy = Proxy::start(s3.addr()).await;
    let target = s3.target(&proxy.url).await;
    outage_then_recovery(SinkType::S3, &s3.bucket, target, |down| {
        proxy.set_down(down)
    })
    .await;
}

#[tokio::test]
async fn local_unwritable_for_a_while_delays_archiving_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (parent, away) = (dir.path().join("disk"), dir.path().join("disk.away"));
    let root = parent.join("archive");
    let target: Arc<dyn SinkTarget> = Arc::new(LocalTarget::new(&root));
    // Down: the folder is gone and a file stands where it was (nothing can be created).
    let down = |down: bool| match down {
        true => {
            std::fs::rename(&parent, &away).unwrap();
            std::fs::write(&parent, b"not a folder").unwrap();
        }
        false => {
            std::fs::remove_file(&parent).unwrap();
            std::fs::rename(&away, &parent).unwrap();
        }
    };
    outage_then_recovery(SinkType::Local, root.to_str().unwrap(), target, down).await;
}

#[tokio::test]
async fn s3_archived_events_read_back_in_pages_across_objects_and_hours() {
    let s3 = S3::start().await;
    let target = s3.target(&s3.moto.url).await;
    let store = Arc::new(Flaky::new());
    let mut archive = settings(SinkType::S3, &s3.bucket);
    archive.max_object_bytes = 1024;
    let book = Arc::new(Book::new(store.clone(), archive));
    let c = ch("quakes?min=2.5");
    book.create(&c, SinkType::S3, EnabledBy::Api).await.unwrap();
    let events: Vec<(u64, u64)> = (1..=120)
        .map(|s| (s, EIGHT + (s - 1) * (3 * HOUR / 120)))
        .collect();
    log(&*store, &c, &events).await;
    let now = Arc::new(AtomicU64::new(EIGHT + 4 * HOUR));
    archiver(&book, &target, &now).pass().await;
    let objects = archived(&*target, &c).await;
    assert!(
        objects.len() > 6,
        "several objects per hour: {}",
        objects.len()
    );
    assert_eq!(flat(&objects), (1..=120).collect::<Vec<_>>());

    // Planted: an object with a bad line, and a key that is no object.
    let hour = restream::archive::layout::hour_dir(&c, EIGHT + 3 * HOUR);
    let good = restream::history::to_line(&restream::store::LoggedEvent::new(
        1000,
        r#"{"type":"new","seq":1000}"#,
        EIGHT + 3 * HOUR,
    ));
    for (key, body) in [
        (
            format!("{hour}{:020}.ndjson", 1000),
            format!("not json\n{{\"seq\":3}}\n{good}\n"),
        ),
        (format!("{hour}notes.txt"), "hello".to_string()),
    ] {
        s3.client
            .put_object()
            .bucket(&s3.bucket)
            .key(format!("arch/{key}"))
            .body(body.into_bytes().into())
            .send()
            .await
            .unwrap();
    }

    let reader = ArchiveReader::new(target.clone());
    let (mut pos, mut seen, mut pages) = (Position::default(), Vec::new(), 0);
    loop {
        let page = reader.read_after(&c, pos, 7, 3).await.unwrap();
        assert!(page.events.len() <= 7);
        pages += 1;
        seen.extend(page.events.iter().map(|e| e.seq));
        if let Some(last) = page.events.last() {
            pos = Position::of(last);
        }
        if !page.more {
            break;
        }
        assert!(pages < 200);
    }
    let mut want: Vec<u64> = (1..=120).collect();
    want.push(1000);
    assert_eq!(seen, want, "no duplicate, no gap, the bad line skipped");
    assert!(pages > 120 / 7);

    // From the middle: only that hour on is listed, the position's own object included.
    let middle = &events[59];
    let page = reader
        .read_after(
            &c,
            Position {
                time_ms: middle.1,
                seq: middle.0,
            },
            5,
            24,
        )
        .await
        .unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![61, 62, 63, 64, 65]
    );
    assert!(page.more);
    let event = &page.events[0];
    assert_eq!(event.time_ms, events[60].1);
    let message: serde_json::Value = serde_json::from_str(&event.message).unwrap();
    assert_eq!(message["item"]["id"], "i61");
}
