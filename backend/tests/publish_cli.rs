//! `restream publish` as an operator runs it: the real binary against a local HTTP responder
//! that records each request and answers what the test scripts (the full stack is e2e's).

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the responder read it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Answers every request with `status` and `body`, recording it.
struct Responder {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Responder {
    async fn start(status: &'static str, body: Value) -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let Some(request) = read_request(&mut sock).await else {
                    continue;
                };
                record.lock().unwrap().push(request);
                let body = body.to_string();
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(answer.as_bytes()).await;
            }
        });
        Responder { url, seen, task }
    }

    fn only_request(&self) -> Seen {
        let seen = self.seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        seen[0].clone()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        method,
        target,
        headers,
        body,
    })
}

struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `restream publish <args>` with `stdin` (nothing: stdin closed) and `env`.
async fn publish(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_restream"))
        .arg("publish")
        .args(args)
        .env_remove("RESTREAM_PUBLISH_TOKEN")
        .env("RESTREAM_LOG__FILTER", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A delete does not read stdin; the write may then fail, which is fine.
    let _ = input.write_all(stdin.as_bytes()).await;
    drop(input);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("restream publish finishes")
        .unwrap();
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const SECRET: &str = "pk-secret-0123456789";

fn receipt() -> Value {
    json!({"channel": "photon?site=t%20st", "seq": 7, "new": 2, "updated": 0, "removed": 0,
           "unchanged": 0, "replayed": false})
}

#[tokio::test]
async fn posts_the_batch_with_the_token_from_the_environment_and_prints_the_receipt() {
    let api = Responder::start("200 OK", receipt()).await;
    let body = r#"[{"n":1},{"n":2}]"#;
    let run = publish(
        &[
            "photon",
            "-p",
            "site=t st",
            "--url",
            &api.url,
            "--idempotency-key",
            "k-1",
        ],
        body,
        &[("RESTREAM_PUBLISH_TOKEN", SECRET)],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let printed: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(printed, receipt());
    let seen = api.only_request();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("POST", "/channels/photon/items?site=t%20st")
    );
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("idempotency-key"), Some("k-1"));
    assert_eq!(seen.body, body.as_bytes());
    assert!(!run.stdout.contains(SECRET) && !run.stderr.contains(SECRET));
}

#[tokio::test]
async fn ndjson_replace_sends_a_put_with_the_token_option() {
    let api = Responder::start("200 OK", receipt()).await;
    let body = "{\"id\":\"a\"}\n{\"id\":\"b\"}\n";
    let run = publish(
        &[
            "board",
            "--ndjson",
            "--replace",
            "--url",
            &api.url,
            "--token",
            SECRET,
        ],
        body,
        &[],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let seen = api.only_request();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("PUT", "/channels/board/items")
    );
    assert_eq!(seen.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(seen.header("idempotency-key"), None);
    assert_eq!(seen.body, body.as_bytes());
}

#[tokio::test]
async fn a_delete_sends_no_body() {
    let api = Responder::start("200 OK", receipt()).await;
    let run = publish(
        &[
            "board", "--delete", "a/1", "-p", "board=x", "--url", &api.url,
        ],
        "",
        &[("RESTREAM_PUBLISH_TOKEN", SECRET)],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let seen = api.only_request();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("DELETE", "/channels/board/items/a%2F1?board=x")
    );
    assert!(seen.body.is_empty() && seen.header("content-type").is_none());
}

#[tokio::test]
async fn an_error_answer_is_printed_with_its_code_and_exits_1() {
    let api = Responder::start(
        "403 Forbidden",
        json!({"error": {"code": "forbidden", "message": "this credential may not publish to board"}}),
    )
    .await;
    let run = publish(
        &["board", "--url", &api.url, "--token", SECRET],
        "{\"id\":1}",
        &[],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr.trim(),
        "error: forbidden: this credential may not publish to board"
    );
    assert!(!run.stderr.contains(SECRET));
}

#[tokio::test]
async fn an_answer_that_is_not_the_apis_says_so() {
    let api = Responder::start("502 Bad Gateway", json!("upstream down")).await;
    let run = publish(&["board", "--url", &api.url], "{}", &[]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("HTTP 502") && run.stderr.contains(&api.url),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_refused_connection_names_the_url() {
    // A port that was free a moment ago: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}");
    let run = publish(&["board", "--url", &url, "--token", SECRET], "{}", &[]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("cannot connect") && run.stderr.contains(&url),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(SECRET));
}
