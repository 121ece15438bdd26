//! Issue 17: subscriber tokens through a real Pushpin: refusals (none, expired, forged, wrong
//! channel) start nothing upstream; valid tokens on the WebSocket URL, per subscribe, on SSE
//! (`?token=` and `Authorization: Bearer`) and the HTTP API; expiry during a live
//! subscription; JWKS rotation; `restream token`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use restream::auth::mint;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::*;

const SECRET: &str = "e2e-jwt-secret-0123456789";
/// Token-access channel (settings override) in these tests; `nyt-top` stays public.
const PRIVATE: &str = "usgs-earthquakes";

fn now() -> u64 {
    restream::auth::now_unix()
}

fn hs(channels: &[&str], exp: u64) -> String {
    let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
    mint::hs256(SECRET.as_bytes(), Some("e2e"), &channels, exp).unwrap()
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/auth/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

fn signed(alg: Algorithm, kid: &str, channels: &[&str], exp: u64) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let pem = fixture(&format!("{kid}.pem"));
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    };
    mint::sign(&header, &json!({"exp": exp, "channels": channels}), &key).unwrap()
}

fn jwks(kids: &[&str]) -> String {
    let keys: Vec<Value> = kids
        .iter()
        .map(|k| serde_json::from_str(&fixture(&format!("{k}.jwk.json"))).unwrap())
        .collect();
    json!({ "keys": keys }).to_string()
}

/// A loopback JWKS endpoint whose document the test replaces; counts its requests.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    hits: Arc<Mutex<usize>>,
}

impl JwksServer {
    async fn start(initial: String) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(initial));
        let hits = Arc::new(Mutex::new(0));
        let (b, h) = (body.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                *h.lock().unwrap() += 1;
                let text = b.lock().unwrap().clone();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            }
        });
        JwksServer { url, body, hits }
    }

    fn serve(&self, text: String) {
        *self.body.lock().unwrap() = text;
    }

    fn hits(&self) -> usize {
        *self.hits.lock().unwrap()
    }
}

async fn stack(extra_env: Vec<(String, String)>) -> Stack {
    let mut env = vec![(
        "RESTREAM_AUTH__ACCESS".to_string(),
        format!("{{\"{PRIVATE}\" = \"token\"}}"),
    )];
    env.extend(extra_env);
    Stack::start_with(StackOptions {
        keys: Some(json!({"_restream": {"jwt_secret": SECRET}}).to_string()),
        env,
        ..StackOptions::default()
    })
    .await
}

fn subscribe(feed: &str, token: Option<&str>) -> Value {
    let mut m =
        json!({"action": "subscribe", "channel": PRIVATE, "params": {"feed": feed}, "ref": feed});
    if let Some(t) = token {
        m["token"] = json!(t);
    }
    m
}

async fn refusals(stack: &Stack, reason: &str) -> f64 {
    let m = scrape(&format!("http://{}/metrics", stack.backend.addr)).await;
    value(&m, "restream_auth_refusals_total", &[("reason", reason)])
}

/// Opens an SSE stream with `Authorization: Bearer`; the response, unread.
async fn sse_bearer(stack: &Stack, path: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path}", stack.http_url))
        .header("Accept", "text/event-stream")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Reads a streaming response until `needle` shows up.
async fn read_until(response: &mut reqwest::Response, needle: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(needle) {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("no {needle:?} in the stream ({other:?}): {seen}"),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_who_subscribes_and_refusals_cost_nothing() {
    let stack = stack(Vec::new()).await;
    let refused_feed = "4.5_week";

    // No token, expired, forged, another channel's: refused, nothing polled.
    let mut anonymous = Client::connect(&stack.ws_url).await;
    let e = anonymous.request(subscribe(refused_feed, None)).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("unauthorized")),
        "{e}"
    );
    assert_eq!(e["message"], "a valid token is required for this channel");
    assert_eq!(e["ref"], refused_feed);
    let expired = hs(&[PRIVATE], now() - 5);
    let e = anonymous
        .request(subscribe(refused_feed, Some(&expired)))
        .await;
    assert_eq!(e["code"], "unauthorized", "{e}");
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
    let forged = mint::hs256(b"guessed", None, &[PRIVATE.into()], now() + 600).unwrap();
    let mut with_forged = Client::connect(&format!("{}?token={forged}", stack.ws_url)).await;
    let e = with_forged.request(subscribe(refused_feed, None)).await;
    assert_eq!(e["code"], "unauthorized", "{e}");
    assert_eq!(e["message"], "a valid token is required for this channel");
    let other = hs(&["nyt-top"], now() + 600);
    let mut wrong_channel = Client::connect(&format!("{}?token={other}", stack.ws_url)).await;
    let e = wrong_channel.request(subscribe(refused_feed, None)).await;
    assert_eq!(e["code"], "unauthorized", "{e}");
    // A public channel needs nothing.
    anonymous.subscribe("nyt-top", json!({})).await;

    // The connection's token (the WebSocket URL's query, replayed by Pushpin on every WOH
    // request) and a subscribe's own token both work.
    let valid = hs(&["usgs-*"], now() + 600);
    let mut holder = Client::connect(&format!("{}?token={valid}", stack.ws_url)).await;
    holder.subscribe(PRIVATE, json!({"feed": "1.0_day"})).await;
    holder.recv_type("snapshot", Duration::from_secs(10)).await;
    let channel_token = hs(&[&format!("{PRIVATE}?feed=2.5_day")], now() + 600);
    let r = anonymous
        .request(subscribe("2.5_day", Some(&channel_token)))
        .await;
    assert_eq!(r["type"], "subscribed", "{r}");
    anonymous
        .recv_type("snapshot", Duration::from_secs(10))
        .await;
    // The channel token names one feed only.
    let e = anonymous
        .request(subscribe(refused_feed, Some(&channel_token)))
        .await;
    assert_eq!(e["code"], "unauthorized", "{e}");

    // A client that can set headers may send the connection's token as a Bearer header.
    let mut request = stack.ws_url.as_str().into_client_request().unwrap();
    let value = format!("Bearer {valid}").parse().unwrap();
    request.headers_mut().insert("Authorization", value);
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut with_header = Client { ws };
    let ready = with_header.recv(Duration::from_secs(10)).await.unwrap();
    assert_eq!(ready["type"], "ready");
    with_header
        .subscribe(PRIVATE, json!({"feed": "1.0_day"}))
        .await;

    // The HTTP API: a token channel's status and items need a token too.
    let items = format!("{}/channels/{PRIVATE}/items?feed=1.0_day", stack.http_url);
    let (status, body) = get_json(&items).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let (status, body) = get_json(&format!("{items}&token={valid}")).await;
    assert_eq!(status, 200, "{body}");
    let bearer = reqwest::Client::new()
        .get(format!(
            "{}/channels/{PRIVATE}?feed=1.0_day",
            stack.http_url
        ))
        .bearer_auth(&valid)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let (status, _) = get_json(&format!(
        "{}/channels/{PRIVATE}?feed=1.0_day&token={other}",
        stack.http_url
    ))
    .await;
    assert_eq!(status, 401);
    let (_, catalog) = get_json(&format!("{}/channels", stack.http_url)).await;
    let access = |name: &str| {
        catalog["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["access"]
            .clone()
    };
    assert_eq!(
        (access(PRIVATE), access("nyt-top")),
        (json!("token"), json!("public"))
    );

    // SSE: refused without a token, streamed with `?token=` or `Authorization: Bearer`.
    let events = format!("/channels/{PRIVATE}/events?feed=1.0_day");
    let (status, body) = get_json(&format!(
        "{}/channels/{PRIVATE}/events?feed={refused_feed}",
        stack.http_url
    ))
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let mut sse =
        SseClient::connect(&stack.http_url, &format!("{events}&token={valid}"), None).await;
    sse.next_of("snapshot", Duration::from_secs(10)).await;
    let mut streamed = sse_bearer(&stack, &events, &valid).await;
    assert_eq!(streamed.status(), 200);
    read_until(&mut streamed, "event: snapshot").await;
    assert_eq!(sse_bearer(&stack, &events, &forged).await.status(), 401);

    // Refusals are counted by reason, and not one of them reached the upstream.
    tokio::time::sleep(Duration::from_secs_f64(POLL_INTERVAL * 1.5)).await;
    assert!(
        stack.upstream.requests(refused_feed).is_empty(),
        "a refused subscribe was polled"
    );
    assert!(!stack.upstream.requests("1.0_day").is_empty());
    assert!(!stack.upstream.requests("2.5_day").is_empty());
    for reason in ["missing", "expired", "bad_signature", "wrong_channel"] {
        assert!(refusals(&stack, reason).await >= 1.0, "{reason} counted");
    }

    // `restream token` mints with the key store's secret.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_restream"))
        .arg("--config")
        .arg(stack.dir().join("restream.toml"))
        .args([
            "token",
            "--channel",
            PRIVATE,
            "--sub",
            "cli",
            "--ttl",
            "10m",
        ])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let minted = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(
        minted.split('.').count(),
        3,
        "only the token is printed: {minted}"
    );
    let mut cli = Client::connect(&format!("{}?token={minted}", stack.ws_url)).await;
    cli.subscribe(PRIVATE, json!({"feed": "1.0_day"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_ends_its_subscriptions_within_a_keep_alive() {
    let stack = stack(Vec::new()).await;
    let exp = now() + 4;
    let short = hs(&[PRIVATE], exp);
    let mut by_url = Client::connect(&format!("{}?token={short}", stack.ws_url)).await;
    by_url.subscribe(PRIVATE, json!({"feed": "1.0_day"})).await;
    by_url.subscribe("nyt-top", json!({})).await;
    let mut by_subscribe = Client::connect(&stack.ws_url).await;
    let r = by_subscribe
        .request(subscribe("2.5_day", Some(&short)))
        .await;
    assert_eq!(r["type"], "subscribed", "{r}");
    let mut sse = reqwest::Client::new()
        .get(format!(
            "{}/channels/{PRIVATE}/events?feed=1.0_day&token={short}",
            stack.http_url
        ))
        .send()
        .await
        .unwrap();
    read_until(&mut sse, "event: snapshot").await;

    // Pushpin's keep-alive (every 20 s, the minimum) carries the URL and the grants meta again.
    let started = Instant::now();
    for (client, feed) in [(&mut by_url, "1.0_day"), (&mut by_subscribe, "2.5_day")] {
        let (gone, _) = client
            .recv_type("unsubscribed", Duration::from_secs(35))
            .await;
        assert_eq!(
            (gone["channel"].as_str(), gone["params"]["feed"].as_str()),
            (Some(PRIVATE), Some(feed))
        );
        let (e, _) = client.recv_type("error", Duration::from_secs(5)).await;
        assert_eq!(e["code"], "unauthorized", "{e}");
        assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
    }
    assert!(now() >= exp, "nothing ended before the token expired");
    assert!(
        started.elapsed() < Duration::from_secs(4 + 20 + 5),
        "{:?}",
        started.elapsed()
    );
    // The public channel stays; the expired one is gone from the connection's meta.
    let r = by_url
        .request(
            json!({"action": "unsubscribe", "channel": PRIVATE, "params": {"feed": "1.0_day"}}),
        )
        .await;
    assert_eq!(r["code"], "not_subscribed", "{r}");
    let r = by_url
        .request(json!({"action": "unsubscribe", "channel": "nyt-top"}))
        .await;
    assert_eq!(r["type"], "unsubscribed", "{r}");
    // The SSE stream was closed at expiry (a GRIP close to its private channel).
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = sse.chunk().await {}
    })
    .await;
    assert!(
        end.is_ok(),
        "the SSE stream is still open after its token expired"
    );
    assert!(refusals(&stack, "expired").await >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_jwks_key_is_picked_up_when_a_token_names_it() {
    let jwks_server = JwksServer::start(jwks(&["rsa-a", "ec-a"])).await;
    let stack = stack(vec![
        ("RESTREAM_AUTH__JWKS_URL".into(), jwks_server.url.clone()),
        ("RESTREAM_AUTH__MIN_REFRESH_SECS".into(), "1".into()),
        ("RESTREAM_AUTH__REFRESH_SECS".into(), "3600".into()),
    ])
    .await;
    let exp = now() + 600;
    let mut c = Client::connect(&stack.ws_url).await;
    for (alg, kid) in [(Algorithm::RS256, "rsa-a"), (Algorithm::ES256, "ec-a")] {
        let r = c
            .request(subscribe(
                "1.0_day",
                Some(&signed(alg, kid, &[PRIVATE], exp)),
            ))
            .await;
        assert_eq!(r["type"], "subscribed", "{kid}: {r}");
    }
    // A key the JWKS does not have yet: refused (after one refresh attempt).
    let rotated = signed(Algorithm::RS256, "rsa-b", &[PRIVATE], exp);
    let e = c.request(subscribe("2.5_day", Some(&rotated))).await;
    assert_eq!(e["code"], "unauthorized", "{e}");
    // The issuer rotates: the next token naming the new key makes the backend refresh.
    jwks_server.serve(jwks(&["rsa-b"]));
    let before = jwks_server.hits();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut fresh = Client::connect(&format!("{}?token={rotated}", stack.ws_url)).await;
    fresh.subscribe(PRIVATE, json!({"feed": "2.5_day"})).await;
    assert!(jwks_server.hits() > before, "the JWKS was fetched again");
    // Refreshes are rate-limited: a burst of unknown kids costs at most one fetch a second.
    let unknown = signed(Algorithm::RS256, "rsa-a", &[PRIVATE], exp);
    let hits = jwks_server.hits();
    for _ in 0..5 {
        let e = c.request(subscribe("4.5_day", Some(&unknown))).await;
        assert_eq!(e["code"], "unauthorized", "the old key is gone: {e}");
    }
    assert!(
        jwks_server.hits() <= hits + 2,
        "{} fetches",
        jwks_server.hits() - hits
    );
    assert!(refusals(&stack, "unknown_key").await >= 1.0);
}
