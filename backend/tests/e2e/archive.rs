//! Issue 20, archive sinks through a real Pushpin: a push channel whose log keeps 5 events,
//! with a local sink from the settings; every event published ends up in the archive exactly
//! once, and the history API serves the whole history, the trimmed part from the archive.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use restream::archive::SinkType;
use restream::config::{KindRetention, Settings, SinkEntry, StoreKind};
use restream::history::ChannelKind;
use serde_json::{json, Value};

use crate::push::*;
use crate::support::*;

const CHANNEL: &str = "e2e-feed?site=arch";

fn archive_dir(store: &Path) -> PathBuf {
    store.parent().expect("the stack folder").join("archive")
}

fn archived(settings: &mut Settings) {
    let StoreKind::Embedded { path } = &settings.store.kind else {
        panic!("the embedded store")
    };
    settings.archive.local_dir = archive_dir(path);
    settings.archive.flush_secs = 1;
    settings.archive.sinks = vec![SinkEntry {
        channel: CHANNEL.into(),
        sink: SinkType::Local,
    }];
    settings.history.retention.insert(
        ChannelKind::Push,
        KindRetention {
            max_events: Some(5),
            max_age_secs: None,
        },
    );
}

/// Every seq in the channel's archive files.
fn archived_seqs(root: &Path) -> Vec<u64> {
    let mut files = Vec::new();
    let mut dirs = vec![root.join(restream::archive::layout::channel_dir(
        &restream::channel::ChannelId::parse(CHANNEL).unwrap(),
    ))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.path().is_dir() {
                true => dirs.push(entry.path()),
                false if entry.file_name().to_string_lossy().ends_with(".ndjson") => {
                    files.push(entry.path())
                }
                false => {}
            }
        }
    }
    files.sort();
    let mut seqs = Vec::new();
    for file in files {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            seqs.push(restream::history::from_line(line).unwrap().seq);
        }
    }
    seqs
}

async fn history(stack: &Stack, query: &str) -> Value {
    let url = format!(
        "{}/channels/e2e-feed/history?site=arch{query}",
        stack.http_url
    );
    let (status, body) = get_json(&url).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn seqs(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_sink_archives_every_event_once_and_history_reads_past_the_log() {
    let stack = push_stack(Some(archived)).await;
    let root = archive_dir(&stack.dir().join("items.redb"));
    let mut published = Vec::new();
    // Batches no larger than the log, each archived before the next (or the log would trim
    // events the sink has not written yet).
    for batch in 0..4 {
        let values: Vec<Value> = (0..5).map(|i| json!({"batch": batch, "i": i})).collect();
        let answer = Publish::post(FEED, "site=arch")
            .bearer(FEED_KEY)
            .json(&json!(values))
            .send(&stack.http_url)
            .await;
        let last = answer.seq();
        published.extend(last - 4..=last);
        let start = Instant::now();
        while archived_seqs(&root).last() != Some(&last) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "batch {batch} never archived: {:?}",
                archived_seqs(&root)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        archived_seqs(&root),
        published,
        "every event once, in order"
    );

    // The log holds the last 5; history serves all 20, the first 15 from the archive.
    let all = history(&stack, "&limit=100").await;
    assert_eq!(seqs(&all), published, "{all}");
    assert_eq!(all["more"], false);
    assert_eq!(
        all["events"][0]["item"]["data"],
        json!({"batch": 0, "i": 0})
    );
    let (mut pages, mut cursor) = (Vec::new(), String::new());
    loop {
        let query = match cursor.as_str() {
            "" => "&limit=4".to_string(),
            c => format!("&limit=4&cursor={}", restream::channel::encode_component(c)),
        };
        let page = history(&stack, &query).await;
        pages.extend(seqs(&page));
        cursor = page["cursor"].as_str().unwrap().to_string();
        if page["more"] == false {
            break;
        }
        assert!(pages.len() <= published.len(), "pages never end");
    }
    assert_eq!(pages, published, "pages of 4: no duplicate, no gap");

    let backend = format!("http://{}", stack.backend.addr);
    let (_, ready) = get_json(&format!("{backend}/readyz")).await;
    assert_eq!(ready["checks"]["archive"]["ok"], true, "{ready}");
    let metrics = reqwest::get(format!("{backend}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("restream_archive_events_total{sink=\"local\"} 20"),
        "{metrics}"
    );
    assert!(
        metrics.contains("restream_archive_lag_events{sink=\"local\"} 0"),
        "{metrics}"
    );
}
