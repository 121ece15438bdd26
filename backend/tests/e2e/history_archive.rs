//! Issue 20 through a real Pushpin: a channel with a local archive sink (`archive.sinks`)
//! writes its events as NDJSON objects laid out `channel=…/date=…/hour=…/<first seq>.ndjson`
//! under `archive.local_dir`, and a history range older than the store keeps (a tiny
//! `max_events`) is served from them (503 `archive_unavailable` when it cannot be read); a
//! burst beyond what the log keeps is held until archived. Also the stack the admin API
//! tests use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use restream::channel::encode_component;
use restream::config::{KindRetention, Settings};
use restream::history::{from_line, rfc3339_ms, ChannelKind};
use serde_json::{json, Value};

use crate::history_support::*;
use crate::push::*;
use crate::support::{scrape, value, Stack};

pub(crate) const ADMIN: &str = "admin-token-e2e-7b41c9d2e0f35a86";
pub(crate) const ARCHIVED: &str = "e2e-feed?site=ar";
const KEPT: u64 = 5;

fn keep_five(settings: &mut Settings) {
    settings.history.retention.insert(
        ChannelKind::Push,
        KindRetention {
            max_events: Some(KEPT),
            max_age_secs: None,
        },
    );
}

/// A push stack archiving [`ARCHIVED`] into `dir` (objects flushed after a second), with
/// the admin API on.
pub(crate) async fn archive_stack(dir: &Path) -> Stack {
    let mut options = push_options(Some(keep_five));
    options.env.extend([
        (
            "RESTREAM_ARCHIVE__LOCAL_DIR".into(),
            dir.display().to_string(),
        ),
        ("RESTREAM_ARCHIVE__FLUSH_SECS".into(), "1".into()),
        (
            "RESTREAM_ARCHIVE__SINKS".into(),
            format!("[{{channel = \"{ARCHIVED}\", type = \"local\"}}]"),
        ),
        ("RESTREAM_ADMIN__TOKEN".into(), ADMIN.into()),
    ]);
    Stack::start_with(options).await
}

/// A request to the backend's own port (not through Pushpin) with the admin token.
pub(crate) async fn admin(
    stack: &Stack,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> Reply {
    let url = format!("http://{}{path}", stack.backend.addr);
    let mut request = reqwest::Client::new()
        .request(method.clone(), &url)
        .timeout(Duration::from_secs(10));
    if let Some(t) = token {
        request = request.header("Authorization", format!("Bearer {t}"));
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        body,
        retry_after: None,
    }
}

/// Waits until the channel's local sink reports `seq` archived; its state then.
pub(crate) async fn archived_up_to(stack: &Stack, name: &str, query: &str, seq: u64) -> Value {
    let path = format!("/admin/channels/{name}/sinks/local?{query}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = admin(stack, reqwest::Method::GET, &path, Some(ADMIN)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        if r.body["archived_seq"].as_u64() >= Some(seq) {
            return r.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not archived to {seq}: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every object under `dir/channel=<id>/`: its path and its lines as JSON.
pub(crate) fn objects(dir: &Path, id: &str) -> BTreeMap<PathBuf, Vec<Value>> {
    let root = dir.join(format!("channel={}", encode_component(id)));
    let mut out = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<Value> = text
                .lines()
                .map(|l| {
                    from_line(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display()));
                    serde_json::from_str(l).unwrap()
                })
                .collect();
            out.insert(path.strip_prefix(&root).unwrap().to_path_buf(), lines);
        }
    }
    out
}

/// Checks one object's key: `date=YYYY-MM-DD/hour=HH/<first seq, 20 digits>.ndjson`, every
/// line of that UTC hour, in seq order.
fn check_object(key: &Path, lines: &[Value]) {
    let parts: Vec<&str> = key.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(parts.len(), 3, "{}", key.display());
    assert!(!lines.is_empty(), "{}", key.display());
    assert_eq!(
        parts[2],
        format!("{:020}.ndjson", seq(&lines[0])),
        "{}",
        key.display()
    );
    for line in lines {
        let time = rfc3339_ms(time_ms(line));
        assert_eq!(parts[0], format!("date={}", &time[..10]), "{line}");
        assert_eq!(parts[1], format!("hour={}", &time[11..13]), "{line}");
    }
    check_channel_order(lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_sink_archives_events_and_history_reads_older_ranges_from_it() {
    let dir = tempfile::Builder::new()
        .prefix("arch")
        .tempdir_in("/tmp")
        .unwrap();
    let stack = archive_stack(dir.path()).await;
    let q = "site=ar";
    let mut sub = Sub::ws(&stack, FEED, json!({"site": "ar"}), None).await;
    let mut mirror = Mirror::default();
    mirror
        .follow(&mut sub, 1, Duration::from_secs(10), "sub")
        .await;
    let mut last = 0;
    // Batches no larger than the log keeps, each archived before the next (a burst beyond
    // it is the test below).
    for b in 0..4 {
        let values: Vec<Value> = (0..4).map(|i| json!({"b": b, "i": i})).collect();
        last = publish(&stack.http_url, FEED, q, FEED_KEY, &values).await;
        archived_up_to(&stack, FEED, q, last).await;
    }
    assert_eq!(last, 17);
    mirror
        .follow(&mut sub, last, Duration::from_secs(10), "sub")
        .await;
    let live_msgs: Vec<Value> = mirror.log[1..].to_vec();

    // The sink catches up; its objects hold every event once, as history lines.
    let state = archived_up_to(&stack, FEED, q, last).await;
    assert_eq!(state["channel"], ARCHIVED);
    assert_eq!(
        (state["sink"].as_str(), state["enabled_by"].as_str()),
        (Some("local"), Some("settings"))
    );
    assert_eq!(
        (state["channel_seq"].as_u64(), state["lag_events"].as_u64()),
        (Some(last), Some(0))
    );
    assert_eq!(state["last_error"], Value::Null);
    let objects = objects(dir.path(), ARCHIVED);
    let mut archived: Vec<Value> = Vec::new();
    for (key, lines) in &objects {
        check_object(key, lines);
        archived.extend(lines.iter().cloned());
    }
    archived.sort_by_key(seq);
    assert_eq!(
        seqs(&archived),
        (2..=last).collect::<Vec<_>>(),
        "every event once: {objects:?}"
    );
    assert_eq!(archived.iter().map(live).collect::<Vec<_>>(), live_msgs);

    // The store keeps the last KEPT; the whole history comes from the archive then the store.
    let store_only = format!(
        "{q}&from={}",
        encode_component(&rfc3339_ms(time_ms(&archived[12])))
    );
    let (recent, _) = read_all(&stack.http_url, &channel_path(FEED, &store_only), None).await;
    assert_eq!(recent, archived[12..]);
    for query in [
        format!("{q}&limit=3"),
        format!("{q}&from=2020-01-01T00%3A00%3A00Z&limit=4"),
    ] {
        let (events, _) = read_all(&stack.http_url, &channel_path(FEED, &query), None).await;
        assert_eq!(events, archived, "{query}");
    }
    // A range that lies wholly in the archive: exactly its events.
    let (from, to) = (time_ms(&archived[2]), time_ms(&archived[9]));
    let ranged = format!(
        "{q}&from={}&to={}&limit=2",
        encode_component(&rfc3339_ms(from)),
        encode_component(&rfc3339_ms(to))
    );
    let (events, _) = read_all(&stack.http_url, &channel_path(FEED, &ranged), None).await;
    let expected: Vec<Value> = archived
        .iter()
        .filter(|e| (from..to).contains(&time_ms(e)))
        .cloned()
        .collect();
    assert!(expected.len() >= 4, "{expected:?}");
    assert_eq!(events, expected);
    let m = scrape(&format!("http://{}/metrics", stack.backend.addr)).await;
    let read = |source| {
        value(
            &m,
            "restream_history_events_read_total",
            &[("source", source)],
        )
    };
    assert!(
        read("archive") >= (last - 1 - KEPT) as f64,
        "{}",
        read("archive")
    );
    assert!(read("store") > 0.0);
    // A coalesced read over the archived channel and another one reads the archive too.
    publish(&stack.http_url, FEED, "site=other", FEED_KEY, &[json!("x")]).await;
    let set = coalesced_path(&[ARCHIVED, "e2e-feed?site=other"], "limit=6");
    let (merged, _) = read_all(&stack.http_url, &set, None).await;
    let (other, _) = read_all(&stack.http_url, &channel_path(FEED, "site=other"), None).await;
    assert_eq!(
        merged,
        merge(&[
            (ARCHIVED.into(), archived.clone()),
            ("e2e-feed?site=other".into(), other)
        ])
    );

    // The archive unreadable (the channel's folder replaced by a file): a range below the
    // log's floor is 503 archive_unavailable with Retry-After, on both routes; the part the
    // store keeps still reads, and subscribers go on.
    let folder = dir
        .path()
        .join(format!("channel={}", encode_component(ARCHIVED)));
    std::fs::rename(&folder, dir.path().join("moved-away")).unwrap();
    std::fs::write(&folder, "not a folder").unwrap();
    for path in [channel_path(FEED, &format!("{q}&limit=3")), set.clone()] {
        let r = get(&stack.http_url, &path, None).await;
        assert_eq!(
            (r.status, r.code()),
            (503, "archive_unavailable"),
            "{path}: {}",
            r.body
        );
        assert!(r.retry_after.is_some(), "{path}: Retry-After");
        assert!(
            !r.body.to_string().contains("/tmp"),
            "no path shown: {}",
            r.body
        );
    }
    let (recent, _) = read_all(&stack.http_url, &channel_path(FEED, &store_only), None).await;
    assert_eq!(recent, archived[12..]);
    let next = publish(&stack.http_url, FEED, q, FEED_KEY, &[json!("after")]).await;
    mirror
        .follow(&mut sub, next, Duration::from_secs(10), "sub")
        .await;

    // Last (bugs20.md): nothing is counted lost, since every event was archived.
    let m = scrape(&format!("http://{}/metrics", stack.backend.addr)).await;
    let lost = value(&m, "restream_archive_lost_events_total", &[]);
    assert_eq!(lost, 0.0, "nothing left the log unarchived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_what_the_log_keeps_is_held_until_archived() {
    let dir = tempfile::Builder::new()
        .prefix("held")
        .tempdir_in("/tmp")
        .unwrap();
    let stack = archive_stack(dir.path()).await;
    let q = "site=ar";
    let mut sub = Sub::ws(&stack, FEED, json!({"site": "ar"}), None).await;
    let mut mirror = Mirror::default();
    mirror
        .follow(&mut sub, 1, Duration::from_secs(10), "sub")
        .await;
    // The sink exists, and every replica has read its checkpoint (every 5 s).
    archived_up_to(&stack, FEED, q, 0).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    // 20 events at once, four times what the log keeps, faster than the archiver passes.
    let mut last = 0;
    for b in 0..4 {
        let values: Vec<Value> = (0..5).map(|i| json!({"b": b, "i": i})).collect();
        last = publish(&stack.http_url, FEED, q, FEED_KEY, &values).await;
    }
    assert_eq!(last, 21);
    archived_up_to(&stack, FEED, q, last).await;
    let mut archived: Vec<Value> = objects(dir.path(), ARCHIVED)
        .into_values()
        .flatten()
        .collect();
    archived.sort_by_key(seq);
    assert_eq!(
        seqs(&archived),
        (2..=last).collect::<Vec<_>>(),
        "every event once"
    );
    let (events, _) = read_all(
        &stack.http_url,
        &channel_path(FEED, &format!("{q}&limit=6")),
        None,
    )
    .await;
    assert_eq!(events, archived);
    mirror
        .follow(&mut sub, last, Duration::from_secs(10), "sub")
        .await;
    assert_eq!(
        events.iter().map(live).collect::<Vec<_>>(),
        mirror.log[1..].to_vec()
    );
    let m = scrape(&format!("http://{}/metrics", stack.backend.addr)).await;
    let lost = value(&m, "restream_archive_lost_events_total", &[]);
    assert_eq!(lost, 0.0, "nothing left the log unarchived");
}
