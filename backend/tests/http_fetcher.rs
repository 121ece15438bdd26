//! Declarative `http` fetchers (channels/*.toml) against a local server replaying the recorded
//! upstream responses in channels/testdata/.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use restream::fetcher::{
    FetchError, FetchOutcome, FetchRequest, Fetcher, HttpFetcher, Keys, Registry,
};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One canned answer: status line, extra headers, body.
#[derive(Clone)]
struct Answer(&'static str, Vec<(&'static str, String)>, String);

#[derive(Clone, Default)]
struct Server {
    answers: Arc<Mutex<Vec<Answer>>>,
    /// Raw request heads, in arrival order.
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start(answers: Vec<Answer>) -> (Server, String) {
        let server = Server {
            answers: Arc::new(Mutex::new(answers)),
            ..Server::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = vec![0u8; 16384];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                s.seen
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).to_string());
                let Answer(status, headers, body) = {
                    let mut a = s.answers.lock().unwrap();
                    if a.len() > 1 {
                        a.remove(0)
                    } else {
                        a[0].clone()
                    }
                };
                let mut head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                let _ = sock.write_all(format!("{head}\r\n{body}").as_bytes()).await;
            }
        });
        (server, base)
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn recorded(name: &str) -> String {
    std::fs::read_to_string(repo("channels/testdata").join(name)).unwrap()
}

fn ok(body: String) -> Answer {
    Answer("200 OK", vec![], body)
}

/// Loads `channels/<file>` with `{base}` pointed at `base` through its env var.
fn load(file: &str, env: &str, base: &str) -> HttpFetcher {
    std::env::set_var(env, base);
    HttpFetcher::load(&repo("channels").join(file), Duration::from_secs(2)).unwrap()
}

async fn fetch(
    f: &HttpFetcher,
    params: &[(&str, &str)],
    keys: &Keys,
    state: Option<&Value>,
) -> Result<FetchOutcome, FetchError> {
    let params: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    f.fetch(FetchRequest {
        channel: "t",
        params: &params,
        keys,
        state,
    })
    .await
}

/// What the contract's `status_code` says of a fetch: 200 for items, 304 for "not modified",
/// else the upstream's status.
fn status(r: &Result<FetchOutcome, FetchError>) -> u64 {
    match r {
        Ok(o) if o.not_modified => 304,
        Ok(_) => 200,
        Err(FetchError::Upstream { status, .. }) => u64::from(*status),
        Err(e) => panic!("not an upstream answer: {e}"),
    }
}

/// The status, message and `retry_after` of an upstream error.
fn refused(r: &Result<FetchOutcome, FetchError>) -> (Option<u64>, &str, Option<u64>) {
    match r {
        Err(FetchError::Upstream {
            status,
            message,
            retry_after,
            ..
        }) => (
            Some(u64::from(*status)),
            message.as_str(),
            retry_after.map(|s| s as u64),
        ),
        other => panic!("expected an upstream error, got {other:?}"),
    }
}

/// Every file in `channels/` loads, as a declarative channel or a push channel, none twice.
#[tokio::test]
async fn shipped_channels_have_valid_metadata() {
    let dir = repo("channels");
    let declarative = restream::fetcher::http::discover(&dir, Duration::from_secs(2));
    let push = restream::push::spec::discover(&dir);
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "toml")
        })
        .count();
    assert_eq!(
        declarative.len() + push.len(),
        files,
        "a channel file did not load"
    );
    let fetchers: Vec<Arc<dyn Fetcher>> = declarative
        .into_iter()
        .map(|f| Arc::new(f) as Arc<dyn Fetcher>)
        .chain(push.into_iter().map(|p| Arc::new(p) as Arc<dyn Fetcher>))
        .collect();
    let registry = Registry::load(fetchers, &HashMap::new()).await;
    assert_eq!(registry.len(), files);
    let usgs = &registry.get("usgs-earthquakes").unwrap().metadata;
    assert_eq!(usgs.id_field, "id");
    assert_eq!(usgs.params["feed"].default.as_deref(), Some("all_hour"));
    assert_eq!(
        registry.get("hn-top").unwrap().metadata.poll_interval,
        Duration::from_secs(60)
    );

    use restream::push::PushMode;
    let photon = registry.get("photon").unwrap();
    let spec = photon.fetcher.push().expect("photon is a push channel");
    assert_eq!((spec.mode, spec.keep), (PushMode::Events, 50));
    assert!(photon.metadata.params["site"].required);
    let board = registry.get("board").unwrap();
    let spec = board.fetcher.push().expect("board is a push channel");
    assert_eq!((spec.mode, spec.id_field.as_str()), (PushMode::Items, "id"));
    assert_eq!(
        board.metadata.params["board"].default.as_deref(),
        Some("main")
    );
}

/// photon.toml's `[queue]` is commented out (it has no URL until PHOTON_QUEUE_URL is set);
/// uncommented, it is the datastreamer mapping and loads.
#[test]
fn photon_queue_section_is_valid_when_uncommented() {
    let text = std::fs::read_to_string(repo("channels/photon.toml")).unwrap();
    let start = text
        .find("# [queue]")
        .expect("photon.toml has a commented [queue]");
    let queue: String = text[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let uncommented = format!("{}{queue}\n", &text[..start]);
    let channel = restream::push::PushChannel::parse("photon.toml", &uncommented).unwrap();
    let q = channel.spec().queue.clone().expect("a [queue] section");
    assert_eq!(q.url_env.as_deref(), Some("PHOTON_QUEUE_URL"));
    assert_eq!(q.params.get("site").map(String::as_str), Some("/site"));
    assert_eq!(q.item, "/data");
    assert_eq!(
        q.dead_letter_url_env.as_deref(),
        Some("PHOTON_DEAD_LETTER_URL")
    );
}

#[tokio::test]
async fn usgs_items_errors_and_conditional_requests() {
    let (server, base) = Server::start(vec![
        Answer(
            "200 OK",
            vec![("ETag", "\"v1\"".into())],
            recorded("usgs-all_hour.json"),
        ),
        Answer("304 Not Modified", vec![], String::new()),
        Answer("500 Internal Server Error", vec![], "oops".into()),
        Answer(
            "429 Too Many Requests",
            vec![("Retry-After", "7".into())],
            "slow".into(),
        ),
        ok("{not json".into()),
        ok(json!({"type": "FeatureCollection"}).to_string()),
    ])
    .await;
    let f = load("usgs-earthquakes.toml", "USGS_BASE_URL", &base);
    let keys = Keys::new();

    let outcome = fetch(&f, &[("feed", "all_hour")], &keys, None)
        .await
        .unwrap();
    assert!(!outcome.items.is_empty() && outcome.items.iter().all(|i| i["id"].is_string()));
    assert!(outcome.complete);
    assert_eq!(outcome.state, Some(json!({"etag": "\"v1\""})));
    assert!(
        server.requests()[0].starts_with("GET /earthquakes/feed/v1.0/summary/all_hour.geojson ")
    );

    let second = fetch(&f, &[("feed", "all_hour")], &keys, outcome.state.as_ref()).await;
    assert!(server.requests()[1]
        .to_lowercase()
        .contains("if-none-match: \"v1\""));
    assert!(second.unwrap().not_modified);

    assert_eq!(
        status(&fetch(&f, &[("feed", "all_hour")], &keys, None).await),
        500
    );
    let limited = fetch(&f, &[("feed", "all_hour")], &keys, None).await;
    let (limited_status, _, limited_retry_after) = refused(&limited);
    assert_eq!((limited_status, limited_retry_after), (Some(429), Some(7)));
    assert_eq!(
        status(&fetch(&f, &[("feed", "all_hour")], &keys, None).await),
        502,
        "invalid JSON"
    );
    let shape = fetch(&f, &[("feed", "all_hour")], &keys, None).await;
    assert_eq!(status(&shape), 502);
    assert!(refused(&shape).1.contains("/features"));

    let before = server.requests().len();
    let bad = fetch(&f, &[("feed", "../etc")], &keys, None).await;
    assert_eq!(status(&bad), 400);
    assert_eq!(
        server.requests().len(),
        before,
        "an invalid feed never reaches the upstream"
    );
}

#[tokio::test]
async fn hn_front_page_in_one_request() {
    let (server, base) = Server::start(vec![ok(recorded("hn-front_page.json"))]).await;
    let f = load("hn-top.toml", "HN_BASE_URL", &base);
    let outcome = fetch(&f, &[("hits", "5")], &Keys::new(), None)
        .await
        .unwrap();
    assert!(!outcome.items.is_empty() && outcome.items.iter().all(|i| i["objectID"].is_string()));
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].starts_with("GET /api/v1/search?tags=front_page&hitsPerPage=5 "),
        "{}",
        requests[0]
    );
}

fn keyed_channel(dir: &Path, location: &str, name: &str, format: &str) -> HttpFetcher {
    let path = dir.join(format!("{location}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"keyed\"\nurl = \"{{base}}/v1/list\"\nbase_url_env = \"KEYED_BASE_URL_{location}\"\nitems = \"\"\nid_field = \"id\"\n\
             [keys.token]\nin = \"{location}\"\nname = \"{name}\"\nformat = \"{format}\"\n"
        ),
    )
    .unwrap();
    HttpFetcher::load(&path, Duration::from_secs(2)).unwrap()
}

#[tokio::test]
async fn keys_go_where_declared_and_never_into_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = Server::start(vec![ok("[{\"id\": 1}]".into())]).await;
    let mut keys = Keys::new();
    keys.insert("token".into(), SecretString::from("s3cr3t value"));

    std::env::set_var("KEYED_BASE_URL_query", &base);
    let q = keyed_channel(dir.path(), "query", "api-key", "{value}");
    assert_eq!(status(&fetch(&q, &[], &keys, None).await), 200);
    assert!(
        server.requests()[0].starts_with("GET /v1/list?api-key=s3cr3t%20value "),
        "{}",
        server.requests()[0]
    );

    std::env::set_var("KEYED_BASE_URL_header", &base);
    let h = keyed_channel(dir.path(), "header", "Authorization", "Bearer {value}");
    assert_eq!(status(&fetch(&h, &[], &keys, None).await), 200);
    assert!(
        server.requests()[1].contains("authorization: Bearer s3cr3t value"),
        "{}",
        server.requests()[1]
    );

    let missing = fetch(&q, &[], &Keys::new(), None).await;
    assert_eq!(
        (refused(&missing).0, Some(refused(&missing).1)),
        (Some(401), Some("missing key token"))
    );

    // Unreachable upstream with the key in the URL: the error must not carry it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::env::set_var("KEYED_BASE_URL_query", format!("http://127.0.0.1:{port}"));
    let unreachable = fetch(&q, &[], &keys, None).await;
    assert_eq!(status(&unreachable), 502);
    let text = unreachable.unwrap_err().to_string();
    assert!(
        !text.contains("s3cr3t") && !text.contains("api-key="),
        "{text}"
    );
}

/// Answers every request with 200 and a chunked body that never ends; returns its base URL
/// and a count of the bytes it managed to send.
async fn endless_upstream() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let _ = sock.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let data = "[".to_string() + &"{\"id\": 1},".repeat(6000);
                let chunk = format!("{:x}\r\n{data}\r\n", data.len());
                // Until the client hangs up, at most 1 GiB so a broken client cannot hang the test.
                for _ in 0..(1 << 30) / chunk.len() {
                    if sock.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    (base, sent)
}

#[tokio::test]
async fn an_endless_chunked_body_is_refused_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (base, sent) = endless_upstream().await;
    let path = dir.path().join("endless.toml");
    std::fs::write(
        &path,
        format!("name = \"endless\"\nurl = \"{base}/feed\"\nitems = \"\"\nid_field = \"id\"\n"),
    )
    .unwrap();
    // A timeout far beyond what reading 16 MiB over loopback takes: the limit ends the read.
    let f = HttpFetcher::load(&path, Duration::from_secs(300)).unwrap();
    let r = fetch(&f, &[], &Keys::new(), None).await;
    let (status, message, _) = refused(&r);
    assert_eq!(status, Some(502));
    assert_eq!(
        message,
        format!(
            "upstream response larger than {} bytes",
            restream::fetcher::http::MAX_BODY
        )
    );
    let read = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(read < 64 << 20, "read {read} bytes of an endless body");
}
