//! The edge checks on the backend port, without Pushpin: a `Grip-Sig` that does not verify,
//! WOH requests without one, CORS answers and refusals, the WebSocket `Origin` check, and the
//! cluster secret on `/internal/snapshot`. (Through a real Pushpin: tests/e2e/edge.rs.)

use std::time::Duration;

use actix_web::{test, web, App};
use restream::config::Secret;
use restream::edge::{AllowedOrigins, ClusterSecret, EdgeTrust, GripSigKey};
use restream::routes::{self, AppState};
use restream_testkit::stack::grip_sig;

fn key() -> Secret {
    Secret::new("edge-checks-test-sig-key")
}

fn cluster_secret() -> Secret {
    Secret::new("edge-checks-cluster-secret")
}

fn state(origins: &[&str]) -> web::Data<AppState> {
    web::Data::new(AppState {
        edge: EdgeTrust {
            origins: AllowedOrigins::parse(
                &origins.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
            )
            .unwrap(),
            grip_sig: Some(GripSigKey::new(&key())),
            cluster_secret: Some(ClusterSecret::new(cluster_secret())),
        },
        ..restream_testkit::app::state()
    })
}

macro_rules! app {
    ($origins:expr) => {
        test::init_service(
            App::new()
                .app_data(state($origins))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found)),
        )
        .await
    };
}

fn header(resp: &actix_web::dev::ServiceResponse, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

fn woh_open() -> test::TestRequest {
    test::TestRequest::post()
        .uri("/ws")
        .insert_header(("Content-Type", "application/websocket-events"))
        .insert_header(("Connection-Id", "c1"))
        .set_payload("OPEN\r\n")
}

#[actix_web::test]
async fn a_grip_sig_that_does_not_verify_is_refused_on_every_route() {
    let app = app!(&[]);
    let forged = grip_sig(&Secret::new("not-the-pushpin-key-at-all"));
    for req in [
        woh_open().insert_header(("Grip-Sig", forged.clone())),
        test::TestRequest::get()
            .uri("/channels")
            .insert_header(("Grip-Sig", "signed-by-pushpin")),
        test::TestRequest::get()
            .uri("/metrics")
            .insert_header(("Grip-Sig", forged.clone())),
        test::TestRequest::get()
            .uri("/nowhere")
            .insert_header(("Grip-Sig", forged.clone())),
    ] {
        let resp = test::call_service(&app, req.to_request()).await;
        assert_eq!(resp.status(), 401);
        let body: serde_json::Value = test::read_body_json(resp).await;
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }
    // Pushpin's own signature passes; no signature at all is the operator on the backend port.
    let signed = test::TestRequest::get()
        .uri("/channels")
        .insert_header(("Grip-Sig", grip_sig(&key())));
    assert_eq!(
        test::call_service(&app, signed.to_request()).await.status(),
        200
    );
    let direct = test::TestRequest::get().uri("/metrics");
    assert_eq!(
        test::call_service(&app, direct.to_request()).await.status(),
        200
    );
}

#[actix_web::test]
async fn the_websocket_endpoint_requires_pushpins_signature() {
    let app = app!(&[]);
    // Forged Connection-Id and Meta-* straight at the backend port: refused, nothing read.
    let forged = woh_open()
        .insert_header(("Meta-Restream-Subs", "usgs-earthquakes"))
        .set_payload(
            "OPEN\r\nTEXT 3d\r\n{\"action\":\"subscribe\",\"channel\":\"usgs-earthquakes\"}\r\n",
        );
    let resp = test::call_service(&app, forged.to_request()).await;
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "Set-Meta-Restream-Subs").is_none());
    let body = test::read_body(resp).await;
    assert_eq!(&body[..], b"connect through Pushpin\n");
    let signed = woh_open().insert_header(("Grip-Sig", grip_sig(&key())));
    assert_eq!(
        test::call_service(&app, signed.to_request()).await.status(),
        200
    );
}

#[actix_web::test]
async fn without_origins_configured_nothing_changes() {
    let app = app!(&[]);
    let req = test::TestRequest::get()
        .uri("/channels")
        .insert_header(("Origin", "https://elsewhere.example"));
    let resp = test::call_service(&app, req.to_request()).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "Access-Control-Allow-Origin").is_none());
    assert!(header(&resp, "Vary").is_none());
    let ws = woh_open()
        .insert_header(("Grip-Sig", grip_sig(&key())))
        .insert_header(("Origin", "https://elsewhere.example"));
    assert_eq!(
        test::call_service(&app, ws.to_request()).await.status(),
        200
    );
}

#[actix_web::test]
async fn cors_answers_allowed_origins_and_refuses_others() {
    let app = app!(&["https://app.example"]);
    let preflight = |origin: &str| {
        test::TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri("/channels/usgs-earthquakes/events")
            .insert_header(("Host", "api.example"))
            .insert_header(("Origin", origin.to_string()))
            .insert_header(("Access-Control-Request-Method", "GET"))
            .insert_header(("Access-Control-Request-Headers", "last-event-id"))
            .to_request()
    };
    let resp = test::call_service(&app, preflight("https://app.example")).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        header(&resp, "Access-Control-Allow-Origin").unwrap(),
        "https://app.example"
    );
    assert_eq!(
        header(&resp, "Access-Control-Allow-Headers").unwrap(),
        "Authorization, Last-Event-ID"
    );
    assert_eq!(header(&resp, "Access-Control-Max-Age").unwrap(), "3600");
    assert_eq!(header(&resp, "Vary").unwrap(), "Origin");
    let resp = test::call_service(&app, preflight("https://evil.example")).await;
    assert_eq!(resp.status(), 403);
    assert!(header(&resp, "Access-Control-Allow-Origin").is_none());

    let get = |origin: Option<&str>| {
        let mut r = test::TestRequest::get()
            .uri("/channels")
            .insert_header(("Host", "api.example"));
        if let Some(o) = origin {
            r = r.insert_header(("Origin", o.to_string()));
        }
        r.to_request()
    };
    let resp = test::call_service(&app, get(Some("https://app.example"))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "Access-Control-Allow-Origin").unwrap(),
        "https://app.example"
    );
    assert_eq!(header(&resp, "Vary").unwrap(), "Origin");
    let resp = test::call_service(&app, get(Some("https://evil.example"))).await;
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = test::read_body_json(resp).await;
    assert_eq!(body["error"]["code"], "origin_not_allowed");
    // The API's own host (the demo page), and no Origin at all, are served.
    let resp = test::call_service(&app, get(Some("http://api.example"))).await;
    assert_eq!(resp.status(), 200);
    let resp = test::call_service(&app, get(None)).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "Access-Control-Allow-Origin").is_none());
    // An error answer carries the header too, so the page can read it.
    let missing = test::TestRequest::get()
        .uri("/channels/no-such-channel")
        .insert_header(("Origin", "https://app.example"))
        .to_request();
    let resp = test::call_service(&app, missing).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        header(&resp, "Access-Control-Allow-Origin").unwrap(),
        "https://app.example"
    );
}

#[actix_web::test]
async fn a_wildcard_allows_every_origin() {
    let app = app!(&["*"]);
    let req = test::TestRequest::get()
        .uri("/channels")
        .insert_header(("Origin", "null"));
    let resp = test::call_service(&app, req.to_request()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "Access-Control-Allow-Origin").unwrap(), "*");
}

#[actix_web::test]
async fn a_websocket_from_a_refused_origin_gets_403_at_the_handshake() {
    let app = app!(&["https://app.example"]);
    let open = |origin: &str| {
        woh_open()
            .insert_header(("Grip-Sig", grip_sig(&key())))
            .insert_header(("Host", "api.example"))
            .insert_header(("Origin", origin.to_string()))
            .to_request()
    };
    let resp = test::call_service(&app, open("https://evil.example")).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(&test::read_body(resp).await[..], b"origin not allowed\n");
    assert_eq!(
        test::call_service(&app, open("https://app.example"))
            .await
            .status(),
        200
    );
    assert_eq!(
        test::call_service(&app, open("http://api.example"))
            .await
            .status(),
        200
    );
    // No Origin: a non-browser client, which could have sent any.
    let plain = woh_open().insert_header(("Grip-Sig", grip_sig(&key())));
    assert_eq!(
        test::call_service(&app, plain.to_request()).await.status(),
        200
    );
}

#[actix_web::test]
async fn internal_routes_need_the_cluster_secret_and_never_come_through_pushpin() {
    let app = app!(&[]);
    let batch = serde_json::json!({"channel": "usgs-earthquakes", "requests": []});
    let post = |secret: Option<&str>, via_pushpin: bool| {
        let mut r = test::TestRequest::post()
            .uri("/internal/snapshot")
            .set_json(&batch);
        if let Some(s) = secret {
            r = r.insert_header(("Restream-Cluster-Secret", s.to_string()));
        }
        if via_pushpin {
            r = r.insert_header(("Grip-Sig", grip_sig(&key())));
        }
        r.to_request()
    };
    let right = cluster_secret();
    for (secret, via) in [
        (None, false),
        (Some("wrong"), false),
        (Some(right.expose()), true),
    ] {
        let resp = test::call_service(&app, post(secret, via)).await;
        assert_eq!(resp.status(), 403, "{secret:?} {via}");
    }
    let resp = test::call_service(&app, post(Some(right.expose()), false)).await;
    assert_eq!(resp.status(), 202);
}

/// Both sides of a hand-over over real HTTP: `DynamoLeases` sends its cluster secret, and a
/// replica with another secret refuses the batch.
#[actix_web::test]
async fn a_replica_hands_over_with_the_cluster_secret() {
    use restream::cluster::{DynamoLeases, ForwardedSnapshots, HandOverError, Leases, Member};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let app_state = state(&[]);
    let server = actix_web::HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .configure(routes::configure)
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build(),
    );
    let leases = |secret: Secret| {
        DynamoLeases::new(dynamodb.clone(), "t", "r0", Duration::from_secs(10), secret)
    };
    let to = Member::new("r1", &format!("http://{addr}"));
    let channel = restream::channel::ChannelId::parse("usgs-earthquakes").unwrap();
    let batch = ForwardedSnapshots::new(&channel, Vec::new());
    leases(cluster_secret())
        .hand_over(&to, &batch)
        .await
        .expect("the replica takes it");
    let refused = leases(Secret::new("another-cluster-secret-entirely"))
        .hand_over(&to, &batch)
        .await;
    assert!(
        matches!(refused, Err(HandOverError::Refused { status: 403, .. })),
        "{refused:?}"
    );
    handle.stop(true).await;
}
