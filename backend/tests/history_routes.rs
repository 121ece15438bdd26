//! The history routes in-process (no Pushpin): pages and cursors of one channel and of many,
//! and every refusal of the contract with its status and code.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{test, web, App};
use restream::channel::ChannelId;
use restream::fetcher::{Fetcher, Registry, SharedRegistry};
use restream::push::PushChannel;
use restream::routes::{self, AppState};
use restream::store::{ChannelMeta, Commit, ItemStore, LoggedEvent, MemoryStore};
use serde_json::Value;

/// `feed` (events, param `site`), `board` (items, token access), `weather` (polled); `n`
/// events in `feed?site=a` and `feed?site=b`, 10 ms apart, interleaved.
async fn state(n: u64) -> (web::Data<AppState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("weather.toml"),
        "name = \"weather\"\nurl = \"http://127.0.0.1:9/x\"\nitems = \"\"\nid_field = \"id\"\n",
    )
    .unwrap();
    let mut fetchers: Vec<Arc<dyn Fetcher>> =
        restream::fetcher::http::discover(dir.path(), Duration::from_secs(1))
            .into_iter()
            .map(|f| Arc::new(f) as Arc<dyn Fetcher>)
            .collect();
    let feed =
        "kind = \"push\"\nname = \"feed\"\nmode = \"events\"\n[params.site]\nrequired = true\n";
    let board = "kind = \"push\"\nname = \"board\"\nid_field = \"id\"\naccess = \"token\"\n";
    for (label, text) in [("feed.toml", feed), ("board.toml", board)] {
        fetchers.push(Arc::new(PushChannel::parse(label, text).unwrap()));
    }
    let registry = Registry::load(fetchers, &Default::default()).await;
    let store = Arc::new(MemoryStore::new(1000));
    for (offset, site) in [(0, "a"), (5, "b")] {
        let id = ChannelId::parse(&format!("feed?site={site}")).unwrap();
        let events: Vec<LoggedEvent> = (0..n)
            .map(|i| {
                let seq = i + 2;
                LoggedEvent::new(
                    seq,
                    format!(r#"{{"type":"new","channel":"feed","params":{{"site":"{site}"}},"seq":{seq}}}"#),
                    1_764_662_400_000 + i * 10 + offset,
                )
            })
            .collect();
        store
            .commit(Commit {
                meta: ChannelMeta {
                    seq: n + 1,
                    log_floor: 1,
                    ..Default::default()
                },
                events,
                ..Commit::new(id)
            })
            .await
            .unwrap();
    }
    let mut history = restream::history::HistoryService::new(Default::default());
    history.settings.max_channels = 3;
    history.settings.page_max = 50;
    let state = AppState {
        registry: Arc::new(SharedRegistry::new(registry)),
        store,
        history,
        ..restream_testkit::app::state()
    };
    (web::Data::new(state), dir)
}

async fn get(state: &web::Data<AppState>, uri: &str) -> (u16, Value) {
    let app = test::init_service(
        App::new()
            .app_data(state.clone())
            .configure(routes::configure),
    )
    .await;
    let resp = test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
    let status = resp.status().as_u16();
    let body = test::read_body(resp).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn seqs(body: &Value) -> Vec<(String, u64)> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["params"]["site"].as_str().unwrap().to_string(),
                e["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[actix_web::test]
async fn one_channel_pages_by_cursor_in_time_order() {
    let (state, _dir) = state(7).await;
    let (status, first) = get(&state, "/channels/feed/history?site=a&limit=3").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["channel"], "feed?site=a");
    assert_eq!(first["more"], true);
    assert_eq!(first["events"][0]["time"], "2025-12-02T08:00:00.000Z");
    assert_eq!(
        seqs(&first),
        [("a".into(), 2), ("a".into(), 3), ("a".into(), 4)]
    );
    let cursor = first["cursor"].as_str().unwrap();
    let (_, second) = get(
        &state,
        &format!("/channels/feed/history?site=a&limit=3&cursor={cursor}"),
    )
    .await;
    assert_eq!(
        seqs(&second).iter().map(|s| s.1).collect::<Vec<_>>(),
        [5, 6, 7]
    );
    // from inclusive, to exclusive: events 3..=5 of site a (times +10, +20, +30).
    let (_, range) = get(
        &state,
        "/channels/feed/history?site=a&from=2025-12-02T08:00:00.010Z&to=2025-12-02T08:00:00.040Z",
    )
    .await;
    assert_eq!(
        seqs(&range).iter().map(|s| s.1).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert_eq!(range["more"], false);
}

#[actix_web::test]
async fn many_channels_merge_by_time_with_one_cursor() {
    let (state, _dir) = state(4).await;
    let uri = "/history?channel=feed%3Fsite%3Db&channel=feed%3Fsite%3Da&limit=3";
    let (status, first) = get(&state, uri).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["channels"],
        serde_json::json!(["feed?site=b", "feed?site=a"])
    );
    let mut all = seqs(&first);
    let first_cursor = first["cursor"].as_str().unwrap().to_string();
    let mut cursor = first_cursor.clone();
    for _ in 0..2 {
        let (_, next) = get(&state, &format!("{uri}&cursor={cursor}")).await;
        all.extend(seqs(&next));
        cursor = next["cursor"].as_str().unwrap().to_string();
    }
    let (_, last) = get(&state, &format!("{uri}&cursor={cursor}")).await;
    assert_eq!((seqs(&last).len(), &last["more"]), (0, &Value::Bool(false)));
    let want: Vec<(String, u64)> = (2..6)
        .flat_map(|s| [("a".to_string(), s), ("b".to_string(), s)])
        .collect();
    assert_eq!(
        all, want,
        "merged by time (a's events come 5 ms before b's)"
    );
    // The cursor belongs to that channel set.
    let (status, body) = get(
        &state,
        &format!("/history?channel=feed%3Fsite%3Da&cursor={cursor}"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_cursor"))
    );
}

#[actix_web::test]
async fn bad_requests_get_their_codes() {
    let (state, _dir) = state(2).await;
    let cases = [
        ("/channels/nope/history", 404, "unknown_channel"),
        ("/channels/feed/history", 400, "invalid_params"),
        (
            "/channels/feed/history?site=a&cursor=garbage!",
            400,
            "invalid_cursor",
        ),
        (
            "/channels/feed/history?site=a&cursor=AQ",
            400,
            "invalid_cursor",
        ),
        (
            "/channels/feed/history?site=a&from=yesterday",
            400,
            "invalid_time",
        ),
        (
            "/channels/feed/history?site=a&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            400,
            "invalid_range",
        ),
        ("/channels/feed/history?site=a&limit=0", 400, "bad_limit"),
        ("/channels/feed/history?site=a&limit=51", 400, "bad_limit"),
        ("/channels/feed/history?site=a&limit=ten", 400, "bad_limit"),
        ("/channels/feed/history?site=a&since=3", 400, "bad_query"),
        (
            "/channels/feed/history?site=a&limit=1&limit=2",
            400,
            "bad_query",
        ),
        ("/channels/board/history", 401, "unauthorized"),
        ("/history", 400, "no_channels"),
        (
            "/history?channel=a&channel=b&channel=c&channel=d",
            400,
            "too_many_channels",
        ),
        ("/history?channel=nope", 404, "unknown_channel"),
        ("/history?channel=feed", 400, "invalid_params"),
        (
            "/history?channel=feed%3Fsite%3Da%26limit%3D3",
            400,
            "invalid_params",
        ),
        (
            "/history?channel=feed%3Fsite%3Da&channel=feed%3Fsite%3Da",
            400,
            "bad_query",
        ),
        ("/history?channel=feed%3Fsite%3Da&site=a", 400, "bad_query"),
        ("/history?channel=board", 401, "unauthorized"),
    ];
    for (uri, status, code) in cases {
        let (got, body) = get(&state, uri).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{uri}: {body}"
        );
    }
}
