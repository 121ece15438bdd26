//! The publish API in-process (no Pushpin, no writer behind it): every refusal of the
//! contract, the credential cases (none, bad signature, expired, wrong channel, producer key
//! right / wrong / another channel's), CORS for a publishing page, and that a batch passing
//! every check reaches `Publishing` (which answers `unavailable` without a scheduler).

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServiceResponse;
use actix_web::{test, web, App};
use restream::auth::{Auth, KeySet, LiveKeys, Policy, Rules};
use restream::config::PushSettings;
use restream::edge::{AllowedOrigins, EdgeTrust};
use restream::fetcher::{Fetcher, Registry, SharedRegistry};
use restream::push::{Publishing, PushChannel};
use restream::routes::{self, AppState};
use restream::scheduler::SchedulerHandle;
use serde_json::{json, Value};

const SECRET: &[u8] = b"publish-routes-jwt-secret";
const PHOTON_KEY: &str = "pk-photon-0123456789";
const FEED_KEY: &str = "pk-feed-9876543210";
const ORIGIN: &str = "https://producer.example";
/// The test settings' bounds.
const MAX_BODY: usize = 2048;
const MAX_ITEMS: usize = 3;

/// `photon` (items, param `site`, token access), `feed` (events), `weather` (polled), keys for
/// both push channels and the JWT secret.
async fn state() -> (web::Data<AppState>, tempfile::TempDir) {
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
    let state = AppState {
        publishing: Publishing::new(SchedulerHandle::disconnected(), registry.clone(), settings),
        registry,
        auth: Arc::new(Auth {
            policy: Policy::default(),
            keys: Arc::new(LiveKeys::fixed(KeySet::new(Some(SECRET), &json!({})))),
            rules: Rules::default(),
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

#[actix_web::test]
async fn credentials_decide_who_may_publish() {
    let (state, _dir) = state().await;
    let app = app!(state);
    let uri = "/channels/photon/items?site=tst";
    let item = r#"{"id": "a", "v": 1}"#;
    let refused_before = publishes("unauthorized");

    // None, or not a bearer: 401 unauthorized with a challenge; `?token=` is no credential.
    let valid = token(&[], &["photon"], in_an_hour());
    for req in [
        post(uri, None, item),
        post(uri, None, item).insert_header(("Authorization", format!("Basic {PHOTON_KEY}"))),
        post(&format!("{uri}&token={valid}"), None, item),
    ] {
        let (status, code, body, headers) = call!(app, req).await;
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{body}");
        assert_eq!(headers.get("WWW-Authenticate").unwrap(), "Bearer");
    }
    assert!(publishes("unauthorized") >= refused_before + 3);

    // A bad signature, an expired token, an unknown producer key: 401 invalid_credential.
    let forged = restream::auth::mint::hs256_with_publish(
        b"another-secret",
        None,
        &[],
        &["*".into()],
        in_an_hour(),
    )
    .unwrap();
    let expired = token(&[], &["photon"], restream::auth::now_unix() - 10);
    for (credential, says) in [
        (forged.as_str(), "not valid"),
        (expired.as_str(), "expired"),
        ("pk-photon-guess", "not valid"),
        ("a.b", "not valid"),
    ] {
        let (status, code, body, _) = call!(app, post(uri, Some(credential), item)).await;
        assert_eq!(
            (status, code.as_str()),
            (401, "invalid_credential"),
            "{body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
        assert!(!body.to_string().contains(credential), "never echoed");
    }

    // Valid, but not for this channel: 403 forbidden.
    for credential in [
        token(&["photon"], &[], in_an_hour()), // subscribe rights only
        token(&[], &["feed"], in_an_hour()),
        token(&[], &["photon?site=other"], in_an_hour()),
        FEED_KEY.to_string(), // another push channel's producer key
    ] {
        let (status, code, body, _) = call!(app, post(uri, Some(&credential), item)).await;
        assert_eq!((status, code.as_str()), (403, "forbidden"), "{body}");
        assert!(!body.to_string().contains(&credential));
    }

    // The channel's own producer key, or a token whose `publish` matches the canonical id.
    for credential in [
        PHOTON_KEY.to_string(),
        token(&[], &["photon"], in_an_hour()),
        token(&[], &["photon?site=tst"], in_an_hour()),
        token(&[], &["photon?site=*"], in_an_hour()),
        token(&[], &["*"], in_an_hour()),
    ] {
        assert_reached_the_writer(&call!(app, post(uri, Some(&credential), item)).await);
    }
}

#[actix_web::test]
async fn publish_and_subscribe_rights_stay_apart() {
    let (state, _dir) = state().await;
    let app = app!(state);
    let items = "/channels/photon/items?site=tst";
    let get = |credential: String| {
        test::TestRequest::get()
            .uri(items)
            .insert_header(("Authorization", format!("Bearer {credential}")))
    };
    // `photon` needs a token to read: a publish right or a producer key is not one.
    for credential in [
        token(&[], &["photon"], in_an_hour()),
        PHOTON_KEY.to_string(),
    ] {
        let (status, code, body, _) = call!(app, get(credential)).await;
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{body}");
    }
    let (status, _, body, _) = call!(app, get(token(&["photon"], &[], in_an_hour()))).await;
    assert_eq!(status, 200, "{body}");
}

#[actix_web::test]
async fn channels_params_and_modes_are_checked_first() {
    let (state, _dir) = state().await;
    let app = app!(state);
    let any = token(&[], &["*"], in_an_hour());
    let cases = [
        ("/channels/nope/items", 404, "unknown_channel"),
        ("/channels/weather/items", 405, "not_a_push_channel"),
        ("/channels/photon/items", 400, "invalid_params"),
        (
            "/channels/photon/items?site=tst&color=red",
            400,
            "invalid_params",
        ),
        ("/channels/photon/items?site=tst&limit=3", 400, "bad_query"),
    ];
    for (uri, status, code) in cases {
        let answer = call!(app, post(uri, Some(&any), r#"{"id": 1}"#)).await;
        assert_eq!(
            (answer.0, answer.1.as_str()),
            (status, code),
            "{uri}: {}",
            answer.2
        );
    }
    let (_, _, _, headers) = call!(app, post("/channels/weather/items", Some(&any), "{}")).await;
    assert_eq!(headers.get("Allow").unwrap(), "GET, HEAD");
    let delete = test::TestRequest::delete()
        .uri("/channels/weather/items/1")
        .insert_header(("Authorization", format!("Bearer {any}")));
    assert_eq!(call!(app, delete).await.1, "not_a_push_channel");
}

#[actix_web::test]
async fn bad_bodies_are_refused_with_what_is_wrong() {
    let (state, _dir) = state().await;
    let app = app!(state);
    let photon = "/channels/photon/items?site=tst";
    let feed = "/channels/feed/items";
    let any = token(&[], &["*"], in_an_hour());
    let too_large_before = publishes("too_large");

    let with_type = |uri: &str, content_type: &str, body: &str| {
        post(uri, Some(&any), body).insert_header(("Content-Type", content_type.to_string()))
    };
    let cases: Vec<(test::TestRequest, &str, &str)> = vec![
        (
            post(photon, Some(&any), "{\"id\": "),
            "invalid_json",
            "not valid JSON",
        ),
        (post(photon, Some(&any), ""), "invalid_json", "empty"),
        (
            with_type(photon, "application/x-ndjson", "{\"id\":1}\n{\"id\":\n"),
            "invalid_json",
            "line 2",
        ),
        (
            with_type(photon, "text/plain", "{\"id\":1}"),
            "invalid_json",
            "Content-Type",
        ),
        (
            post(photon, Some(&any), &"x".repeat(MAX_BODY + 1)),
            "too_large",
            "bytes",
        ),
        (
            post(
                photon,
                Some(&any),
                r#"[{"id":1},{"id":2},{"id":3},{"id":4}]"#,
            ),
            "too_many_items",
            "3 entries",
        ),
        (
            with_type(photon, "application/x-ndjson", "1\n2\n3\n4\n"),
            "too_many_items",
            "3 entries",
        ),
        (
            post(photon, Some(&any), r#"[{"id":1},{"v":2}]"#),
            "invalid_items",
            "entry 1",
        ),
        (
            post(photon, Some(&any), r#"[{"id":1}, 7]"#),
            "invalid_items",
            "entry 1",
        ),
        (post(photon, Some(&any), "[]"), "invalid_items", "no items"),
        (
            test::TestRequest::put()
                .uri(feed)
                .insert_header(("Authorization", format!("Bearer {any}")))
                .set_payload("[1]"),
            "invalid_items",
            "append-only",
        ),
        (
            post(photon, Some(&any), r#"{"id":1}"#)
                .insert_header(("Idempotency-Key", "k".repeat(257))),
            "invalid_items",
            "Idempotency-Key",
        ),
        (
            test::TestRequest::delete()
                .uri("/channels/feed/items/00000000000000000002")
                .insert_header(("Authorization", format!("Bearer {any}"))),
            "invalid_items",
            "events channel",
        ),
    ];
    for (req, code, says) in cases {
        let (status, got, body, _) = call!(app, req).await;
        assert_eq!((status, got.as_str()), (400, code), "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{code}: {message}");
    }
    assert!(publishes("too_large") > too_large_before);

    // A body over the bound without a Content-Length is cut off while it streams.
    let mut req = post(photon, Some(&any), &"[1]".repeat(MAX_BODY)).to_request();
    req.headers_mut().remove("Content-Length");
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 400);
    let body: Value = serde_json::from_slice(&test::read_body(resp).await).unwrap();
    assert_eq!(body["error"]["code"], "too_large");
}

#[actix_web::test]
async fn good_batches_of_every_shape_reach_the_writer() {
    let (state, _dir) = state().await;
    let app = app!(state);
    let photon = "/channels/photon/items?site=tst";
    let key = Some(PHOTON_KEY);
    let feed_key = Some(FEED_KEY);
    let requests = [
        post(photon, key, r#"{"id": "a"}"#),
        post(photon, key, r#"[{"id": "a"}, {"id": 2}]"#).insert_header(("Idempotency-Key", "k1")),
        post(photon, key, "{\"id\":\"a\"}\n\n{\"id\":\"b\"}\n")
            .insert_header(("Content-Type", "application/x-ndjson")),
        test::TestRequest::put()
            .uri(photon)
            .insert_header(("Authorization", format!("Bearer {PHOTON_KEY}")))
            .set_payload("[]"),
        test::TestRequest::delete()
            .uri("/channels/photon/items/a%20b?site=tst")
            .insert_header(("Authorization", format!("Bearer {PHOTON_KEY}"))),
        post(
            "/channels/feed/items",
            feed_key,
            r#"[1, "two", {"three": 3}, null]"#,
        ),
        post("/channels/feed/items", feed_key, "[[1, 2]]"),
    ];
    for req in requests {
        assert_reached_the_writer(&call!(app, req).await);
    }
}

#[actix_web::test]
async fn a_page_of_an_allowed_origin_may_publish() {
    let (state, _dir) = state().await;
    let app = app!(state);
    let uri = "/channels/photon/items?site=tst";
    let preflight = |origin: &str, method: &str| {
        test::TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri(uri)
            .insert_header(("Origin", origin.to_string()))
            .insert_header(("Access-Control-Request-Method", method.to_string()))
            .insert_header((
                "Access-Control-Request-Headers",
                "authorization, content-type, idempotency-key",
            ))
    };
    for method in ["POST", "PUT", "DELETE"] {
        let (status, _, _, headers) = call!(app, preflight(ORIGIN, method)).await;
        assert_eq!(status, 204);
        assert_eq!(headers.get("Access-Control-Allow-Origin").unwrap(), ORIGIN);
        let methods = headers.get("Access-Control-Allow-Methods").unwrap();
        assert!(methods.to_str().unwrap().contains(method));
        let allowed = headers.get("Access-Control-Allow-Headers").unwrap();
        let allowed = allowed.to_str().unwrap().to_ascii_lowercase();
        for h in ["authorization", "content-type", "idempotency-key"] {
            assert!(allowed.contains(h), "{allowed}");
        }
    }
    // Elsewhere the API stays read-only over CORS.
    let other = test::TestRequest::default()
        .method(actix_web::http::Method::OPTIONS)
        .uri("/channels/photon?site=tst")
        .insert_header(("Origin", ORIGIN))
        .insert_header(("Access-Control-Request-Method", "GET"));
    let (_, _, _, headers) = call!(app, other).await;
    let methods = headers.get("Access-Control-Allow-Methods").unwrap();
    assert!(!methods.to_str().unwrap().contains("POST"));

    let (status, code, _, _) = call!(app, preflight("https://evil.example", "POST")).await;
    assert_eq!((status, code.as_str()), (403, "origin_not_allowed"));

    // The publish itself carries the CORS headers (the browser reads its answer).
    let publish = post(uri, Some(PHOTON_KEY), r#"{"id": 1}"#).insert_header(("Origin", ORIGIN));
    let answer = call!(app, publish).await;
    assert_reached_the_writer(&answer);
    assert_eq!(answer.3.get("Access-Control-Allow-Origin").unwrap(), ORIGIN);
    assert_eq!(
        answer.3.get("Access-Control-Expose-Headers").unwrap(),
        "Retry-After"
    );
    let foreign = post(uri, Some(PHOTON_KEY), r#"{"id": 1}"#)
        .insert_header(("Origin", "https://evil.example"));
    let (status, code, _, _) = call!(app, foreign).await;
    assert_eq!((status, code.as_str()), (403, "origin_not_allowed"));
}
