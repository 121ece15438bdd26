//! Issue 19, the SQS queue source through a real Pushpin, against moto's SQS: datastreamer
//! messages fan out to their site's channel, exactly once, in seq order; malformed ones land
//! in the dead-letter queue; a message whose commit landed but whose delete failed is
//! delivered again and replayed, not published twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use serde_json::{json, Value};

use crate::emulators::{self, Server};
use crate::support::*;

const SITES: usize = 10;
const PER_SITE: usize = 100;

async fn sqs(endpoint: &str) -> aws_sdk_sqs::Client {
    let settings = emulators::aws_settings(endpoint);
    let sdk = emulators::sdk_config(&settings).await;
    restream::aws::sqs(&sdk, &settings)
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, prefix: &str) -> String {
    let out = sqs
        .create_queue()
        .queue_name(emulators::unique(prefix))
        .send()
        .await
        .unwrap();
    out.queue_url.unwrap()
}

/// The push channel `photon`: datastreamer's `{site, topic, data}` → `photon?site=<site>`.
/// moto serves one request at a time, so the consumer does not long-poll it (`wait_secs = 0`).
fn photon(queue: &str, dlq: &str, visibility_secs: u32) -> String {
    format!(
        r#"
kind = "push"
name = "photon"
description = "datastreamer photons, by site"
mode = "events"
keep = 1000
[params.site]
required = true
[queue]
url = "{queue}"
params = {{ site = "/site" }}
item = "/data"
dead_letter_url = "{dlq}"
wait_secs = 0
visibility_timeout_secs = {visibility_secs}
"#
    )
}

async fn stack(sqs_endpoint: &str, channel: String) -> Stack {
    let mut env = emulators::aws_env();
    env.push((
        "RESTREAM_AWS__SQS_ENDPOINT_URL".into(),
        sqs_endpoint.to_string(),
    ));
    Stack::start_with(StackOptions {
        extra_channels: vec![("photon.toml", channel)],
        env,
        ..StackOptions::default()
    })
    .await
}

fn site(i: usize) -> String {
    format!("site{i}")
}

/// Sends `bodies` ten per SendMessageBatch, in order.
async fn send_all(sqs: &aws_sdk_sqs::Client, url: &str, bodies: &[String]) {
    for chunk in bodies.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .unwrap()
            })
            .collect();
        let out = sqs
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        assert!(out.failed.is_empty(), "{:?}", out.failed);
    }
}

/// Visible plus in-flight messages of a queue.
async fn messages_left(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attrs = out.attributes.unwrap_or_default();
    [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|a| attrs.get(a).map_or(0, |v| v.parse::<u64>().unwrap()))
    .sum()
}

async fn wait_empty(sqs: &aws_sdk_sqs::Client, url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left = messages_left(sqs, url).await;
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} messages left in the queue"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every message of the queue (body, `restream_error` attribute), received once each.
async fn drain_queue(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            return out;
        }
        for m in got {
            let error = m
                .message_attributes()
                .and_then(|a| a.get("restream_error"))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_string();
            out.push((m.body().unwrap_or_default().to_string(), error));
        }
    }
}

/// Subscribes to `photon?site=<site>` and waits for the (empty) snapshot.
async fn subscriber(stack: &Stack, site: &str) -> Client {
    let mut c = Client::connect(&stack.ws_url).await;
    c.subscribe("photon", json!({"site": site})).await;
    let (snap, _) = c.recv_type("snapshot", Duration::from_secs(20)).await;
    assert_eq!(snap["items"], json!([]), "{snap}");
    c
}

/// `new` events until `want` have come (or `within` passes), then until `quiet` passes
/// without another: (seq, data) in arrival order.
async fn events(
    c: &mut Client,
    want: usize,
    within: Duration,
    quiet: Duration,
) -> Vec<(u64, Value)> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    loop {
        let wait = if out.len() < want {
            deadline.saturating_duration_since(Instant::now())
        } else {
            quiet
        };
        match c.recv(wait).await {
            Some(m) if m["type"] == "new" => {
                out.push((m["seq"].as_u64().unwrap(), m["item"]["data"].clone()));
            }
            Some(m) => panic!("unexpected message {m}"),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datastreamer_messages_reach_their_site_once_in_order() {
    let moto = emulators::start_moto();
    let sqs = sqs(&moto.url).await;
    let queue = create_queue(&sqs, "photons").await;
    let dlq = create_queue(&sqs, "photons-dlq").await;
    let stack = stack(&moto.url, photon(&queue, &dlq, 30)).await;
    let mut clients = Vec::new();
    for i in 0..SITES {
        clients.push(subscriber(&stack, &site(i)).await);
    }

    let mut bodies = Vec::new();
    let mut malformed = BTreeSet::new();
    for n in 0..SITES * PER_SITE {
        let s = site(n % SITES);
        let data = json!({"n": n, "site": s, "value": n as f64 / 4.0});
        bodies.push(json!({"site": s, "topic": format!("photon/{s}"), "data": data}).to_string());
        if n % 97 == 0 {
            let bad = match n % 2 {
                0 => format!("not json {n}"),
                _ => json!({"topic": "photon/none", "data": {"n": n}}).to_string(),
            };
            malformed.insert(bad.clone());
            bodies.push(bad);
        }
    }
    send_all(&sqs, &queue, &bodies).await;

    for (i, c) in clients.iter_mut().enumerate() {
        let got = events(
            c,
            PER_SITE,
            Duration::from_secs(180),
            Duration::from_secs(2),
        )
        .await;
        let seqs: Vec<u64> = got.iter().map(|(seq, _)| *seq).collect();
        let expected_seqs: Vec<u64> = (2..2 + PER_SITE as u64).collect();
        assert_eq!(
            seqs, expected_seqs,
            "site {i}: every event once, in seq order"
        );
        let ns: BTreeSet<u64> = got.iter().map(|(_, d)| d["n"].as_u64().unwrap()).collect();
        let expected: BTreeSet<u64> = (0..SITES * PER_SITE)
            .filter(|n| n % SITES == i)
            .map(|n| n as u64)
            .collect();
        assert_eq!(ns, expected, "site {i}: exactly its own messages");
        assert!(got.iter().all(|(_, d)| d["site"] == site(i)));
    }

    wait_empty(&sqs, &queue, Duration::from_secs(30)).await;
    let dead = drain_queue(&sqs, &dlq).await;
    let dead_bodies: BTreeSet<String> = dead.iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(dead.len(), malformed.len(), "each malformed message once");
    assert_eq!(dead_bodies, malformed);
    let reasons: BTreeMap<&str, usize> = dead.iter().fold(BTreeMap::new(), |mut m, (_, e)| {
        *m.entry(e.as_str()).or_default() += 1;
        m
    });
    assert_eq!(
        reasons.keys().copied().collect::<Vec<_>>(),
        ["missing_param", "not_json"],
        "{reasons:?}"
    );

    let metrics = scrape(&format!("http://{}/metrics", stack.backend.addr)).await;
    let count = |result| {
        value(
            &metrics,
            "restream_queue_messages_total",
            &[("channel", "photon"), ("result", result)],
        )
    };
    assert_eq!(count("committed"), (SITES * PER_SITE) as f64);
    assert_eq!(count("dead_lettered"), malformed.len() as f64);
    drop(moto);
}

/// An SQS endpoint in front of moto that answers 500 to deletes while `refuse` is set.
struct FlakyDeletes {
    refuse: Arc<AtomicBool>,
    refused: Arc<AtomicU32>,
    url: String,
    server: actix_web::dev::ServerHandle,
}

impl FlakyDeletes {
    async fn start(moto: &Server) -> FlakyDeletes {
        use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
        let refuse = Arc::new(AtomicBool::new(true));
        let refused = Arc::new(AtomicU32::new(0));
        let (r, n, target) = (refuse.clone(), refused.clone(), moto.url.clone());
        let forward = move |req: HttpRequest, body: web::Bytes| {
            let (r, n, target) = (r.clone(), n.clone(), target.clone());
            async move {
                let action = req
                    .headers()
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let query_delete = String::from_utf8_lossy(&body).contains("Action=DeleteMessage");
                if r.load(Ordering::SeqCst) && (action.contains("DeleteMessage") || query_delete) {
                    n.fetch_add(1, Ordering::SeqCst);
                    return HttpResponse::InternalServerError()
                        .content_type("application/x-amz-json-1.0")
                        .body(r#"{"__type":"InternalError","message":"test"}"#);
                }
                let mut upstream = reqwest::Client::new()
                    .request(
                        reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap(),
                        format!("{target}{}", req.uri()),
                    )
                    .body(body.to_vec());
                for (k, v) in req.headers() {
                    if k != "host" {
                        upstream = upstream.header(k.as_str(), v.as_bytes());
                    }
                }
                let answer = upstream.send().await.unwrap();
                let status = answer.status().as_u16();
                let mut out =
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
                for (k, v) in answer.headers() {
                    if k != "content-length" && k != "transfer-encoding" {
                        out.insert_header((k.as_str(), v.as_bytes()));
                    }
                }
                out.body(answer.bytes().await.unwrap())
            }
        };
        let port = free_port();
        let server = HttpServer::new(move || App::new().default_service(web::to(forward.clone())))
            .workers(1)
            .bind(("127.0.0.1", port))
            .unwrap()
            .run();
        let handle = server.handle();
        tokio::spawn(server);
        FlakyDeletes {
            refuse,
            refused,
            url: format!("http://127.0.0.1:{port}"),
            server: handle,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_committed_but_not_deleted_is_replayed_not_repeated() {
    let moto = emulators::start_moto();
    let sqs = sqs(&moto.url).await;
    let queue = create_queue(&sqs, "photons").await;
    let dlq = create_queue(&sqs, "photons-dlq").await;
    let flaky = FlakyDeletes::start(&moto).await;
    let stack = stack(&flaky.url, photon(&queue, &dlq, 1)).await;
    let mut c = subscriber(&stack, "tst").await;

    let body = json!({"site": "tst", "topic": "photon/tst", "data": {"n": 1}}).to_string();
    send_all(&sqs, &queue, &[body]).await;
    let first = events(
        &mut c,
        1,
        Duration::from_secs(30),
        Duration::from_millis(10),
    )
    .await;
    assert_eq!(first, [(2, json!({"n": 1}))]);
    // The commit landed; its delete is refused, so the message comes back after 1 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    while flaky.refused.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the consumer never tried to delete"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let replayed = |stack: &Stack| {
        let url = format!("http://{}/metrics", stack.backend.addr);
        async move {
            value(
                &scrape(&url).await,
                "restream_queue_messages_total",
                &[("channel", "photon"), ("result", "replayed")],
            )
        }
    };
    while replayed(&stack).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the message was not delivered again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    flaky.refuse.store(false, Ordering::SeqCst);
    wait_empty(&sqs, &queue, Duration::from_secs(60)).await;
    let again = events(&mut c, 0, Duration::ZERO, Duration::from_secs(3)).await;
    assert_eq!(again, [], "a redelivered message is not published twice");
    assert!(drain_queue(&sqs, &dlq).await.is_empty());
    flaky.server.stop(false).await;
}
