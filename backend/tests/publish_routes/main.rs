//! The publish API in-process (no Pushpin, no writer behind it): every refusal of the
//! contract, the credential cases (none, bad signature, expired, wrong channel, producer key
//! right / wrong / another channel's), CORS for a publishing page, that a batch passing every
//! check reaches `Publishing` (which answers `unavailable` without a scheduler), and the
//! receipts of a real scheduler's writer (memory store, no Pushpin).
//!
//! - `main.rs`: the app under test (channels, keys, settings) and request helpers;
//! - `credentials.rs`: who may publish, and params and modes checked before the body;
//! - `bodies.rs`: bad bodies refused, good ones of every shape let through;
//! - `cors.rs`: a publishing page of an allowed origin;
//! - `receipts.rs`: answers of a real writer.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServiceResponse;
use actix_web::{test, web, App};
use restream::auth::{Auth, KeySet, LiveKeys, Policy, Rules};
use restream::config::PushSettings;
use restream::demand::Demand;
use restream::edge::{AllowedOrigins, EdgeTrust};
use restream::fetcher::{Fetcher, Registry, SharedRegistry};
use restream::poller::PollerContext;
use restream::push::{Publishing, PushChannel};
use restream::pushpin::grip::PublishItem;
use restream::pushpin::publisher::{PublishError, Publisher};
use restream::routes::{self, AppState};
use restream::scheduler::{Scheduler, SchedulerHandle};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"publish-routes-jwt-secret";
const PHOTON_KEY: &str = "pk-photon-0123456789";
const FEED_KEY: &str = "pk-feed-9876543210";
const ORIGIN: &str = "https://producer.example";
/// The test settings' bounds.
const MAX_BODY: usize = 2048;
const MAX_ITEMS: usize = 3;

/// `photon` (items, param `site`, token access), `feed` (events), `weather` (polled), keys for
/// both push channels and the JWT secret; no scheduler behind `Publishing`.
async fn state() -> (web::Data<AppState>, tempfile::TempDir) {
    state_with(None).await
}

/// What a real scheduler publishes (no Pushpin): the `type` and `seq` of each message.
#[derive(Default)]
struct Sent(std::sync::Mutex<Vec<(String, String, u64)>>);

#[async_trait::async_trait]
impl Publisher for Sent {
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError> {
        let mut sent = self.0.lock().unwrap();
        for item in items {
            let ws = item
                .formats
                .ws_message
                .as_ref()
                .expect("a WebSocket message");
            let m: Value = serde_json::from_str(&ws.content).unwrap();
            sent.push((
                item.channel.clone(),
                m["type"].as_str().unwrap().into(),
                m["seq"].as_u64().unwrap(),
            ));
        }
        Ok(())
    }
}

/// The same, with a real scheduler (memory store, `sent` for Pushpin) until `stop`.
async fn state_with(
    real: Option<(Arc<Sent>, CancellationToken)>,
) -> (web::Data<AppState>, tempfile::TempDir) {
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
    let photon = "kind = \"push\"\nname = \"photon\"\nid_field = \"id\"\naccess = \"token\"\n[params.site]\nrequired = true\n";
    let feed = "kind = \"push\"\nname = \"feed\"\nmode = \"events\"\n";
    for (label, text) in [("photon.toml", photon), ("feed.toml", feed)] {
        fetchers.push(Arc::new(PushChannel::parse(label, text).unwrap()));
    }
    let registry = Registry::load(fetchers, &Default::default()).await;
    for name in ["weather", "photon", "feed"] {
        assert!(registry.get(name).is_some(), "{name} loaded");
    }
    let keys_file = dir.path().join("keys.json");
    std::fs::write(
        &keys_file,
        json!({
            "_restream": {"jwt_secret": String::from_utf8_lossy(SECRET)},
            "photon": {"producer_key": PHOTON_KEY},
            "feed": {"producer_key": FEED_KEY},
            "weather": {"api_key": "not-a-producer-key"},
        })
        .to_string(),
    )
    .unwrap();
    std::fs::set_permissions(&keys_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let registry = Arc::new(SharedRegistry::new(registry));
    let settings = PushSettings {
        max_body_bytes: MAX_BODY,
        max_batch_items: MAX_ITEMS,
        ..Default::default()
    };
    let store = Arc::new(restream::store::MemoryStore::new(100));
    let scheduler = match real {
        None => SchedulerHandle::disconnected(),
        Some((sent, stop)) => {
            let ctx = PollerContext {
                keys: Arc::new(restream::keys::FileKeyStore::new("/nonexistent/keys.json")),
                publisher: sent,
                store: store.clone(),
                max_backoff: Duration::from_secs(60),
                budgets: Default::default(),
                last_polls: Default::default(),
                status: Default::default(),
                retentions: restream::history::Retentions::count_only(100),
                snapshots: Default::default(),
            };
            let demand = Arc::new(Demand::new(Duration::from_secs(60)));
            let (scheduler, handle) = Scheduler::new(registry.clone(), demand, ctx, None);
            tokio::spawn(scheduler.with_push_settings(settings.clone()).run(stop));
            handle
        }
    };
    let state = AppState {
        publishing: Publishing::new(scheduler.clone(), registry.clone(), settings),
        scheduler,
        store,
        registry,
        auth: Arc::new(Auth {
            policy: Policy::default(),
            keys: Arc::new(LiveKeys::fixed(KeySet::new(Some(SECRET), &json!({})))),
            rules: Rules::default(),
            verified: Default::default(),
        }),
        keys: Arc::new(restream::keys::FileKeyStore::open(&keys_file).unwrap()),
        edge: EdgeTrust {
            origins: AllowedOrigins::parse(&[ORIGIN.to_string()]).unwrap(),
            ..Default::default()
        },
        ..restream_testkit::app::state()
    };
    (web::Data::new(state), dir)
}

macro_rules! app {
    ($state:expr) => {
        test::init_service(
            App::new()
                .app_data($state.clone())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found)),
        )
        .await
    };
}

fn token(channels: &[&str], publish: &[&str], exp: u64) -> String {
    let s = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    restream::auth::mint::hs256_with_publish(SECRET, None, &s(channels), &s(publish), exp).unwrap()
}

fn in_an_hour() -> u64 {
    restream::auth::now_unix() + 3600
}

fn post(uri: &str, credential: Option<&str>, body: &str) -> test::TestRequest {
    let mut req = test::TestRequest::post()
        .uri(uri)
        .insert_header(("Content-Type", "application/json"))
        .set_payload(body.to_string());
    if let Some(c) = credential {
        req = req.insert_header(("Authorization", format!("Bearer {c}")));
    }
    req
}

/// The status, the error code ("" when there is none), the body and the headers.
async fn read(resp: ServiceResponse) -> (u16, String, Value, actix_web::http::header::HeaderMap) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = serde_json::from_slice(&test::read_body(resp).await).unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("").to_string();
    (status, code, body, headers)
}

macro_rules! call {
    ($app:expr, $req:expr) => {
        read(test::call_service(&$app, $req.to_request()).await).await
    };
}

/// A batch that passed every check: it reached `Publishing`, whose writer is not there.
fn assert_reached_the_writer(answer: &(u16, String, Value, actix_web::http::header::HeaderMap)) {
    let (status, code, body, headers) = answer;
    assert_eq!((*status, code.as_str()), (503, "unavailable"), "{body}");
    assert_eq!(headers.get("Retry-After").unwrap(), "1");
}

fn publishes(result: &str) -> u64 {
    restream::metrics::get()
        .publishes
        .with_label_values(&[result])
        .get()
}

mod bodies;
mod cors;
mod credentials;
mod receipts;
