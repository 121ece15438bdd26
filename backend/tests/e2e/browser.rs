//! Issue 8, the real-browser test: headless Chromium (Debian's `chromium`, driven by
//! playwright-core in `tests/browser/demo.mjs`) loads the demo page through Pushpin, subscribes
//! over WebSocket and EventSource, and both panes render the event an upstream change causes.
//! The screenshot is kept in `target/tmp/browser/demo.png`. Issue 22: the page is built on the
//! client library (`clients/js`), and both panes reconnect and resume after a Pushpin restart. Issue 17: a page on a second
//! loopback origin (`tests/browser/cross-origin.mjs`) uses the API across origins.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::support::*;

pub(crate) struct Driver {
    pub(crate) child: Child,
    stdin: ChildStdin,
    pub(crate) stdout: Lines<BufReader<ChildStdout>>,
}

impl Driver {
    fn start(demo_url: &str, screenshot: &std::path::Path) -> Driver {
        Driver::spawn(
            "demo.mjs",
            &[
                ("DEMO_URL", demo_url.to_string()),
                ("SCREENSHOT", screenshot.display().to_string()),
                ("TIMEOUT_MS", "20000".to_string()),
            ],
        )
    }

    /// Runs `tests/browser/<script>` under node with `env`, its stdin and stdout piped.
    pub(crate) fn spawn(script: &str, env: &[(&str, String)]) -> Driver {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
        assert!(
            dir.join("node_modules/playwright-core").is_dir(),
            "playwright-core is not installed: run `bash scripts/install-deps.sh --tests` (npm ci in tests/browser)"
        );
        let mut command = tokio::process::Command::new("node");
        command.arg(script).current_dir(&dir);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (Node 20 is required)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Driver {
            child,
            stdin,
            stdout,
        }
    }

    /// The next line starting with `tag`, parsed after it; the driver's report on `FAIL`.
    pub(crate) async fn expect(&mut self, tag: &str) -> String {
        let mut report = Vec::new();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {tag} line within 60 s"))
                .unwrap();
            match line {
                Some(l) if l.starts_with(tag) => return l[tag.len()..].trim().to_string(),
                Some(l) => report.push(l),
                None => panic!("driver ended before {tag}:\n{}", report.join("\n")),
            }
            if report.iter().any(|l| l.starts_with("FAIL")) {
                while let Ok(Ok(Some(l))) =
                    tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line()).await
                {
                    report.push(l);
                }
                panic!("browser driver failed:\n{}", report.join("\n"));
            }
        }
    }

    pub(crate) async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_shows_live_events_over_websocket_and_sse() {
    let mut stack = Stack::start().await;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    let screenshot = dir.join("demo.png");
    let _ = std::fs::remove_file(&screenshot);
    let url = format!(
        "{}/demo?channel=usgs-earthquakes&feed=1.0_day",
        stack.http_url
    );
    let mut driver = Driver::start(&url, &screenshot);

    let snapshot: Value = serde_json::from_str(&driver.expect("SNAPSHOT").await).unwrap();
    for pane in ["ws", "sse"] {
        assert_eq!(snapshot[pane]["seq"], 1, "{snapshot}");
        assert_eq!(snapshot[pane]["count"], 1, "{snapshot}");
    }
    // The upstream changes; both transports render the new item with the same seq.
    let g = stack.upstream.bump();
    let id = format!("1.0_day-g{g}");
    driver.send(&format!("EXPECT new {id}")).await;
    let seen = driver.expect(&format!("SEEN new {id}")).await;
    let seen: Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(
        (&seen["ws_seq"], &seen["sse_seq"]),
        (&Value::from(2), &Value::from(2))
    );
    assert_eq!(
        (&seen["ws_rows"], &seen["sse_rows"]),
        (&2.into(), &2.into())
    );
    // One upstream request per interval while two browser transports listen.
    let (min_gap, _) = gaps(&stack.upstream.requests("summary/1.0_day"));
    assert!(
        min_gap >= Duration::from_secs_f64(POLL_INTERVAL * 0.9),
        "{min_gap:?}"
    );

    // Issue 22: Pushpin restarts; both panes (the client library over WebSocket and over SSE)
    // show the reconnect, resume, and render the next change with the next seq.
    stack.stop_pushpin().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.start_pushpin().await.expect("Pushpin starts again");
    driver.send("RECONNECTED").await;
    driver.expect("RECONNECTED").await;
    let g = stack.upstream.bump();
    let id = format!("1.0_day-g{g}");
    driver.send(&format!("EXPECT new {id}")).await;
    let seen: Value =
        serde_json::from_str(&driver.expect(&format!("SEEN new {id}")).await).unwrap();
    assert_eq!((&seen["ws_seq"], &seen["sse_seq"]), (&3.into(), &3.into()));
    assert_eq!(
        (&seen["ws_rows"], &seen["sse_rows"]),
        (&3.into(), &3.into())
    );

    driver.send("SCREENSHOT").await;
    let shot = PathBuf::from(driver.expect("SHOT").await);
    assert_eq!(shot, screenshot);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    driver.send("QUIT").await;
    let status = tokio::time::timeout(Duration::from_secs(20), driver.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    eprintln!("screenshot: {}", shot.display());
}

/// One run of `tests/browser/cross-origin.mjs`: a page served on `http://127.0.0.1:page_port`
/// using the API at `api` with EventSource, fetch and WebSocket; what each got.
async fn cross_origin_page(api: &str, page_port: u16, feed: &str) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    let output = tokio::process::Command::new("node")
        .arg("cross-origin.mjs")
        .current_dir(&dir)
        .env("API_URL", api)
        .env("PAGE_PORT", page_port.to_string())
        .env("FEED", feed)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), output)
        .await
        .expect("the cross-origin page finishes")
        .expect("node runs (Node 20 is required)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "no RESULT:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    serde_json::from_str(result).unwrap()
}

/// Issue 17: a page on another origin uses the API in a real browser when its origin is in
/// `server.cors_origins`, and gets nothing (and starts no poll) when it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_an_allowed_origin_uses_the_api_and_others_cannot() {
    let (allowed, refused) = (free_port(), free_port());
    let stack = Stack::start_with(StackOptions {
        env: vec![(
            "RESTREAM_SERVER__CORS_ORIGINS".into(),
            format!("[\"http://127.0.0.1:{allowed}\"]"),
        )],
        ..StackOptions::default()
    })
    .await;
    let ok = cross_origin_page(&stack.http_url, allowed, "1.0_day").await;
    assert_eq!(ok["sse"], 1, "{ok}");
    assert!(ok["fetch"].as_u64().unwrap() >= 1, "{ok}");
    assert_eq!(ok["ws"], "ready", "{ok}");

    let no = cross_origin_page(&stack.http_url, refused, "significant_day").await;
    assert_eq!(
        no,
        serde_json::json!({"sse": "error", "fetch": "error", "ws": "error"})
    );
    tokio::time::sleep(Duration::from_secs_f64(POLL_INTERVAL * 1.5)).await;
    assert!(stack
        .upstream
        .requests("summary/significant_day")
        .is_empty());
}
