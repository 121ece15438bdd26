//! The WOH endpoint's HTTP contract with Pushpin, without Pushpin: headers, meta, errors; and
//! `/readyz` when Pushpin and the fetchers are missing.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{test, web, App};
use restream::fetcher::{Registry, SharedRegistry};
use restream::routes::{self, AppState};
use restream_testkit::stack::grip_sig;

/// The key the app's Pushpin would sign with.
fn sig_key() -> restream::config::Secret {
    restream::config::Secret::new("woh-endpoint-test-sig-key")
}

fn state() -> web::Data<AppState> {
    state_checking(Vec::new())
}

/// State whose `/readyz` checks Pushpin at `pushpin_control_urls`.
fn state_checking(pushpin_control_urls: Vec<String>) -> web::Data<AppState> {
    state_with(
        Registry::default(),
        restream::auth::Auth::public(),
        pushpin_control_urls,
    )
}

fn state_with(
    registry: Registry,
    auth: restream::auth::Auth,
    pushpin_control_urls: Vec<String>,
) -> web::Data<AppState> {
    web::Data::new(AppState {
        registry: Arc::new(SharedRegistry::new(registry)),
        pushpin_control_urls,
        edge: restream::edge::EdgeTrust {
            grip_sig: Some(restream::edge::GripSigKey::new(&sig_key())),
            ..Default::default()
        },
        auth: Arc::new(auth),
        ..restream_testkit::app::state()
    })
}

#[actix_web::test]
async fn open_negotiates_grip_and_keep_alive() {
    let app = test::init_service(App::new().app_data(state()).configure(routes::configure)).await;
    let req = test::TestRequest::post()
        .uri("/ws")
        .insert_header(("Content-Type", "application/websocket-events"))
        .insert_header(("Connection-Id", "c1"))
        .insert_header(("Grip-Sig", grip_sig(&sig_key())))
        .set_payload("OPEN\r\n")
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(
        h.get("Content-Type").unwrap(),
        "application/websocket-events"
    );
    assert_eq!(
        h.get("Sec-WebSocket-Extensions").unwrap(),
        "grip; message-prefix=\"\""
    );
    // 25 s configured: this connection's own period, within its last quarter (at least 20).
    let keep_alive: u64 = h
        .get("Keep-Alive-Interval")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((20..=25).contains(&keep_alive), "{keep_alive}");
    assert_eq!(
        keep_alive,
        restream::pushpin::woh::keep_alive_secs("c1", std::time::Duration::from_secs(25))
    );
    let body = test::read_body(resp).await;
    assert_eq!(
        &body[..],
        &b"OPEN\r\nTEXT 2b\r\nc:{\"channel\":\"_conn:c1\",\"type\":\"subscribe\"}\r\nTEXT 1d\r\n{\"type\":\"ready\",\"protocol\":1}\r\n"[..]
    );
}

#[actix_web::test]
async fn keep_alive_requests_get_an_empty_answer() {
    let app = test::init_service(App::new().app_data(state()).configure(routes::configure)).await;
    let req = test::TestRequest::post()
        .uri("/channels")
        .insert_header(("Content-Type", "application/websocket-events"))
        .insert_header(("Connection-Id", "c1"))
        .insert_header(("Grip-Sig", grip_sig(&sig_key())))
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("Set-Meta-Restream-Subs").is_none());
    assert!(test::read_body(resp).await.is_empty());
}

#[actix_web::test]
async fn bad_requests_get_clear_errors() {
    let app = test::init_service(App::new().app_data(state()).configure(routes::configure)).await;
    let cases = [
        (
            Some("text/plain"),
            Some("c"),
            "OPEN\r\n",
            415,
            "connect through Pushpin",
        ),
        (
            Some("application/websocket-events"),
            None,
            "OPEN\r\n",
            400,
            "Connection-Id",
        ),
        (
            Some("application/websocket-events"),
            Some("c"),
            "TEXT 99\r\nx\r\n",
            400,
            "malformed body",
        ),
    ];
    for (ct, cid, body, status, needle) in cases {
        let mut req = test::TestRequest::post()
            .uri("/ws")
            .insert_header(("Grip-Sig", grip_sig(&sig_key())))
            .set_payload(body);
        if let Some(ct) = ct {
            req = req.insert_header(("Content-Type", ct));
        }
        if let Some(cid) = cid {
            req = req.insert_header(("Connection-Id", cid));
        }
        let resp = test::call_service(&app, req.to_request()).await;
        assert_eq!(resp.status(), status);
        let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
        assert!(text.contains(needle), "{text}");
    }
}

#[actix_web::test]
async fn healthz_answers() {
    let app = test::init_service(App::new().app_data(state()).configure(routes::configure)).await;
    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(resp.status(), 200);
}

#[actix_web::test]
async fn readyz_is_503_and_names_each_failed_check() {
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = nobody.local_addr().unwrap().port();
    drop(nobody);
    let state = state_checking(vec![format!("http://127.0.0.1:{port}")]);
    let app = test::init_service(App::new().app_data(state).configure(routes::configure)).await;
    let response =
        test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = test::read_body_json(response).await;
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["pushpin"]["ok"], false, "{body}");
    assert!(body["checks"]["pushpin"]["detail"]
        .as_str()
        .unwrap()
        .contains(&port.to_string()));
    assert_eq!(body["checks"]["fetchers"]["ok"], false, "{body}");
    assert_eq!(body["checks"]["store"]["ok"], true, "{body}");
    // Liveness does not depend on any of that.
    let health =
        test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(health.status(), 200);
}

#[actix_web::test]
async fn readyz_through_pushpin_says_only_whether_it_is_ready() {
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = nobody.local_addr().unwrap().port();
    drop(nobody);
    let state = state_checking(vec![format!("http://127.0.0.1:{port}")]);
    let app = test::init_service(App::new().app_data(state).configure(routes::configure)).await;
    let proxied = test::TestRequest::get()
        .uri("/readyz")
        .insert_header(("Grip-Sig", grip_sig(&sig_key())))
        .to_request();
    let response = test::call_service(&app, proxied).await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = test::read_body_json(response).await;
    assert_eq!(
        body,
        serde_json::json!({"ready": false}),
        "no internal address or error reaches a stranger"
    );
}

#[actix_web::test]
async fn readyz_fails_while_an_essential_task_is_dead() {
    use restream::supervisor::Essentials;
    let essentials = Essentials::default();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let readyz = |essentials: Essentials| async move {
        let app = test::init_service(
            App::new()
                .app_data(state())
                .app_data(web::Data::new(essentials))
                .configure(routes::configure),
        )
        .await;
        let response =
            test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
        assert_eq!(response.status(), 503);
        let body: serde_json::Value = test::read_body_json(response).await;
        body["checks"]["tasks"].clone()
    };
    assert_eq!(readyz(essentials.clone()).await["ok"], true);

    essentials
        .spawn("scheduler", async { panic!("boom") }, &shutdown)
        .await
        .unwrap();
    let tasks = readyz(essentials).await;
    assert_eq!(tasks["ok"], false, "{tasks}");
    assert_eq!(
        tasks["detail"], "essential task scheduler panicked: boom",
        "{tasks}"
    );
    assert!(shutdown.is_cancelled(), "the process is shutting down");
}

/// A token channel `secret` (declarative, never polled here) and an HS256 secret.
async fn token_state(secret: &[u8]) -> web::Data<AppState> {
    use restream::auth::{Auth, KeySet, LiveKeys, Policy, Rules};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("secret.toml"),
        "name = \"secret\"\nurl = \"http://127.0.0.1:9/x\"\nitems = \"\"\nid_field = \"id\"\naccess = \"token\"\n",
    )
    .unwrap();
    let fetchers = restream::fetcher::http::discover(dir.path(), Duration::from_secs(1))
        .into_iter()
        .map(|f| Arc::new(f) as Arc<dyn restream::fetcher::Fetcher>)
        .collect();
    let registry = Registry::load(fetchers, &Default::default()).await;
    assert!(registry.get("secret").is_some());
    let auth = Auth {
        policy: Policy::default(),
        keys: Arc::new(LiveKeys::fixed(KeySet::new(
            Some(secret),
            &serde_json::json!({}),
        ))),
        rules: Rules::default(),
        verified: Default::default(),
    };
    state_with(registry, auth, Vec::new())
}

fn text_event(s: &str) -> String {
    format!("TEXT {:x}\r\n{s}\r\n", s.len())
}

/// A WOH request from connection `c1` with `meta` headers.
fn woh(uri: &str, meta: &[(&str, &str)], body: String) -> test::TestRequest {
    let mut req = test::TestRequest::post()
        .uri(uri)
        .insert_header(("Content-Type", "application/websocket-events"))
        .insert_header(("Connection-Id", "c1"))
        .insert_header(("Grip-Sig", grip_sig(&sig_key())))
        .set_payload(body);
    for (name, value) in meta {
        req = req.insert_header((*name, *value));
    }
    req
}

async fn answer(
    resp: actix_web::dev::ServiceResponse,
) -> (actix_web::http::header::HeaderMap, String) {
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    let body = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    (headers, body)
}

#[actix_web::test]
async fn tokens_come_from_the_url_or_the_subscribe_and_grants_live_in_the_meta() {
    let secret = b"woh-endpoint-secret";
    let app = test::init_service(
        App::new()
            .app_data(token_state(secret).await)
            .configure(routes::configure),
    )
    .await;
    let now = restream::auth::now_unix();
    let token = restream::auth::mint::hs256(secret, None, &["secret".into()], now + 60).unwrap();
    let subscribe = r#"{"action":"subscribe","channel":"secret"}"#;

    // No token: refused, no meta written.
    let (h, body) =
        answer(test::call_service(&app, woh("/ws", &[], text_event(subscribe)).to_request()).await)
            .await;
    assert!(body.contains(r#""code":"unauthorized""#), "{body}");
    assert!(
        h.get("Set-Meta-Restream-Subs").is_none() && h.get("Set-Meta-Restream-Grants").is_none()
    );

    // The URL's token (as Pushpin forwards the client's URI).
    let (h, body) = answer(
        test::call_service(
            &app,
            woh(&format!("/ws?token={token}"), &[], text_event(subscribe)).to_request(),
        )
        .await,
    )
    .await;
    assert!(body.contains(r#""type":"subscribed""#), "{body}");
    assert_eq!(h.get("Set-Meta-Restream-Subs").unwrap(), "secret");
    assert!(h.get("Set-Meta-Restream-Grants").is_none());

    // A subscribe's own token: its expiry goes into the grants meta.
    let own = format!(r#"{{"action":"subscribe","channel":"secret","token":"{token}"}}"#);
    let (h, body) =
        answer(test::call_service(&app, woh("/ws", &[], text_event(&own)).to_request()).await)
            .await;
    assert!(body.contains(r#""type":"subscribed""#), "{body}");
    let grants = h
        .get("Set-Meta-Restream-Grants")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(grants.ends_with(&format!("={}", now + 60)), "{grants}");

    // Keep-alives replay the meta: fine until the grant expires, then the subscription ends.
    let meta = [
        ("Meta-Restream-Subs", "secret"),
        ("Meta-Restream-Grants", grants.as_str()),
    ];
    let (h, body) =
        answer(test::call_service(&app, woh("/ws", &meta, String::new()).to_request()).await).await;
    assert!(
        body.is_empty() && h.get("Set-Meta-Restream-Subs").is_none(),
        "{body}"
    );
    let expired = grants.replace(&format!("={}", now + 60), "=1");
    let meta = [
        ("Meta-Restream-Subs", "secret"),
        ("Meta-Restream-Grants", expired.as_str()),
    ];
    let (h, body) =
        answer(test::call_service(&app, woh("/ws", &meta, String::new()).to_request()).await).await;
    assert!(body.contains(r#""type":"unsubscribed""#), "{body}");
    assert!(body.contains(r#""code":"unauthorized""#), "{body}");
    assert_eq!(h.get("Set-Meta-Restream-Subs").unwrap(), "");
    assert_eq!(h.get("Set-Meta-Restream-Grants").unwrap(), "");
}
