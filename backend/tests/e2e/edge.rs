//! Issue 17, the edge: CORS and the WebSocket `Origin` check through a real Pushpin, routes
//! that are not for the public port, and forged Pushpin headers sent straight to the backend
//! (or by a client through Pushpin) changing nothing.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::support::*;

const ALLOWED: &str = "http://app.test:8000";
const REFUSED: &str = "http://evil.test";

async fn stack_allowing(origin: &str) -> Stack {
    Stack::start_with(StackOptions {
        env: vec![(
            "RESTREAM_SERVER__CORS_ORIGINS".into(),
            format!("[\"{origin}\"]"),
        )],
        ..StackOptions::default()
    })
    .await
}

/// Opens a WebSocket through Pushpin with extra handshake headers; the HTTP status of a
/// refused handshake, or the first message of an accepted one.
async fn open_ws(url: &str, headers: &[(&str, &str)]) -> Result<serde_json::Value, u16> {
    let mut request = url.to_string().into_client_request().unwrap();
    for (name, value) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes());
        request
            .headers_mut()
            .insert(name.unwrap(), HeaderValue::from_str(value).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut ws, _)) => {
            let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("a first message")
                .expect("open")
                .expect("no error");
            Ok(serde_json::from_str(first.to_text().unwrap()).unwrap())
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("unexpected handshake failure: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_and_origin_checks_through_pushpin() {
    let stack = stack_allowing(ALLOWED).await;
    let http = reqwest::Client::new();
    let events = |feed: &str| {
        format!(
            "{}/channels/usgs-earthquakes/events?feed={feed}",
            stack.http_url
        )
    };

    // Preflight: answered for the allowed origin, refused for another.
    let preflight = |origin: &str| {
        http.request(reqwest::Method::OPTIONS, events("1.0_day"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "last-event-id")
            .send()
    };
    let ok = preflight(ALLOWED).await.unwrap();
    assert_eq!(ok.status(), 204);
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], ALLOWED);
    assert_eq!(
        h["access-control-allow-headers"],
        "Authorization, Last-Event-ID"
    );
    assert_eq!(h["access-control-max-age"], "3600");
    let refused = preflight(REFUSED).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(!refused
        .headers()
        .contains_key("access-control-allow-origin"));

    // The HTTP API.
    let catalog = http
        .get(format!("{}/channels", stack.http_url))
        .header("Origin", ALLOWED)
        .send()
        .await
        .unwrap();
    assert_eq!(catalog.status(), 200);
    assert_eq!(catalog.headers()["access-control-allow-origin"], ALLOWED);
    let items = http
        .get(format!(
            "{}/channels/usgs-earthquakes/items?feed=all_day",
            stack.http_url
        ))
        .header("Origin", REFUSED)
        .send()
        .await
        .unwrap();
    assert_eq!(items.status(), 403);
    let body: serde_json::Value = items.json().await.unwrap();
    assert_eq!(body["error"]["code"], "origin_not_allowed");

    // SSE: a held GRIP stream's headers reach the client through Pushpin.
    let response = http
        .get(events("1.0_day"))
        .header("Origin", ALLOWED)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["access-control-allow-origin"], ALLOWED);
    assert!(response
        .headers()
        .get_all("vary")
        .iter()
        .any(|v| v.to_str().unwrap().contains("Origin")));
    let mut sse = SseClient::from_response(response);
    let (snapshot, _) = sse.next_of("snapshot", Duration::from_secs(10)).await;
    assert_eq!(snapshot.data["type"], "snapshot");
    // From a refused origin: refused before any demand, so never polled.
    let refused = http
        .get(events("2.5_week"))
        .header("Origin", REFUSED)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // WebSocket: refused at the handshake with the backend's 403; allowed and same-host work.
    assert_eq!(
        open_ws(&stack.ws_url, &[("Origin", REFUSED)]).await,
        Err(403)
    );
    let ready = open_ws(&stack.ws_url, &[("Origin", ALLOWED)])
        .await
        .unwrap();
    assert_eq!(ready["type"], "ready");
    let own = format!("http://{}", stack.http_url.trim_start_matches("http://"));
    let ready = open_ws(&stack.ws_url, &[("Origin", &own)]).await.unwrap();
    assert_eq!(
        ready["type"], "ready",
        "a page served by the API's own host"
    );
    let ready = open_ws(&stack.ws_url, &[]).await.unwrap();
    assert_eq!(ready["type"], "ready", "no Origin: not a browser");

    tokio::time::sleep(Duration::from_secs_f64(POLL_INTERVAL * 1.5)).await;
    assert!(stack.upstream.requests("summary/2.5_week").is_empty());
    let m = scrape(&format!("http://{}/metrics", stack.backend.addr)).await;
    for kind in ["preflight", "http", "websocket"] {
        assert!(
            value(&m, "restream_origin_refusals_total", &[("kind", kind)]) >= 1.0,
            "{kind}"
        );
    }
}

/// `OPEN` and one subscribe, as WOH events.
fn open_and_subscribe(feed: &str) -> String {
    let msg =
        json!({"action": "subscribe", "channel": "usgs-earthquakes", "params": {"feed": feed}})
            .to_string();
    format!("OPEN\r\nTEXT {:x}\r\n{msg}\r\n", msg.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_pushpin_headers_change_nothing() {
    let stack = Stack::start().await;
    let http = reqwest::Client::new();

    // Not for the public port.
    let metrics = http
        .get(format!("{}/metrics", stack.http_url))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 404);
    let internal = http
        .post(format!("{}/internal/snapshot", stack.http_url))
        .header("Restream-Cluster-Secret", "a-guess-at-the-cluster-secret")
        .json(&json!({"channel": "usgs-earthquakes", "requests": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(internal.status(), 403);

    // Straight at the backend port, pretending to be Pushpin.
    let woh = |sig: Option<String>, body: String| {
        let mut r = http
            .post(format!("http://{}/ws", stack.backend.addr))
            .header("Content-Type", "application/websocket-events")
            .header("Connection-Id", "forged-connection")
            .header(
                "Meta-Restream-Subs",
                "usgs-earthquakes?feed=significant_week",
            )
            .body(body);
        if let Some(sig) = sig {
            r = r.header("Grip-Sig", sig);
        }
        r.send()
    };
    let wrong_key = restream_testkit::stack::grip_sig(&restream::config::Secret::generate());
    let forged = woh(Some(wrong_key), open_and_subscribe("significant_week"))
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert!(!forged.headers().contains_key("set-meta-restream-subs"));
    let unsigned = woh(None, open_and_subscribe("significant_week"))
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let keep_alive = woh(None, String::new()).await.unwrap();
    assert_eq!(keep_alive.status(), 401);
    // The harness's own signature is Pushpin's: accepted (the refusals above were the key).
    let signed = http
        .post(format!("http://{}/ws", stack.backend.addr))
        .header("Content-Type", "application/websocket-events")
        .header("Connection-Id", "harness-connection")
        .header("Grip-Sig", stack.grip_sig())
        .body("OPEN\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);

    // The same headers from a client through Pushpin: stripped or replaced by Pushpin's own.
    let mut request = stack.ws_url.clone().into_client_request().unwrap();
    for (name, value) in [
        (
            "Meta-Restream-Subs",
            "usgs-earthquakes?feed=significant_month",
        ),
        ("Connection-Id", "forged-connection"),
        ("Grip-Sig", "a-client-made-this-up"),
    ] {
        request
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut client = Client { ws };
    let (ready, _) = client.recv_type("ready", Duration::from_secs(10)).await;
    assert_eq!(ready["type"], "ready");
    let reply = client
        .request(
            json!({"action": "unsubscribe", "channel": "usgs-earthquakes",
                        "params": {"feed": "significant_month"}, "ref": "u"}),
        )
        .await;
    assert_eq!(reply["code"], "not_subscribed", "{reply}");

    tokio::time::sleep(Duration::from_secs_f64(POLL_INTERVAL * 1.5)).await;
    for feed in ["significant_week", "significant_month"] {
        assert!(
            stack
                .upstream
                .requests(&format!("summary/{feed}"))
                .is_empty(),
            "{feed} was polled"
        );
    }
    let m = scrape(&format!("http://{}/metrics", stack.backend.addr)).await;
    assert!(
        value(
            &m,
            "restream_grip_sig_refusals_total",
            &[("reason", "invalid")]
        ) >= 1.0
    );
    assert!(
        value(
            &m,
            "restream_grip_sig_refusals_total",
            &[("reason", "missing")]
        ) >= 2.0
    );
    assert!(value(&m, "restream_cluster_secret_refusals_total", &[]) >= 1.0);
}
