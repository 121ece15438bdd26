//! The `process` fetcher kind: runs `functions/<dir>/main.py` locally, one Python process per
//! call, exactly as it would run on Lambda.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::process::Command;

use super::{parse_fetch_response, redact, FetchError, FetchOutcome, FetchRequest, Fetcher, Keys};

const RUNNER: &str = include_str!("runner.py");
/// Largest response accepted from a fetcher.
const MAX_OUTPUT: u64 = 16 * 1024 * 1024;
/// How much of a fetcher's stderr is kept for error messages and logs.
const MAX_STDERR: u64 = 64 * 1024;

/// A fetcher that is a `main.py` in a folder of `functions/`.
#[derive(Debug, Clone)]
pub struct ProcessFetcher {
    dir: PathBuf,
    label: String,
    python: String,
    timeout: Duration,
}

impl ProcessFetcher {
    /// `dir` is made absolute: the process runs inside it, so a relative path would not resolve.
    pub fn new(dir: &Path, python: &str, timeout: Duration) -> ProcessFetcher {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let label = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        ProcessFetcher {
            dir,
            label,
            python: python.to_string(),
            timeout,
        }
    }

    async fn call(&self, event: Value, keys: &Keys) -> Result<Value, FetchError> {
        let finished = self.run(&event).await?;
        self.answer(finished, keys)
    }

    /// Runs the fetcher on `event` until it exits, within the timeout.
    async fn run(&self, event: &Value) -> Result<Finished, FetchError> {
        let mut child = Command::new(&self.python)
            .arg("-c")
            .arg(RUNNER)
            .arg(self.dir.join("main.py"))
            .arg(self.timeout.as_millis().to_string())
            .current_dir(&self.dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| FetchError::Spawn {
                fetcher: self.label.clone(),
                source,
            })?;
        let input = serde_json::to_vec(event).expect("events serialize");
        let mut stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let run = async {
            let write = async {
                // A fetcher that exits without reading its input is reported by its output.
                let _ = stdin.write_all(&input).await;
                drop(stdin);
            };
            let (_, out, err) = tokio::join!(
                write,
                read_capped(&mut stdout, MAX_OUTPUT + 1),
                read_capped(&mut stderr, MAX_STDERR)
            );
            let status = child.wait().await;
            Finished {
                read: out.0,
                out: out.1,
                err: err.1,
                status,
            }
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| FetchError::Timeout {
                fetcher: self.label.clone(),
                seconds: self.timeout.as_secs_f64(),
            })
    }

    /// The fetcher's answer, or why its output is not one.
    fn answer(&self, finished: Finished, keys: &Keys) -> Result<Value, FetchError> {
        let Finished {
            read,
            out,
            err,
            status,
        } = finished;
        let stderr_text = redact(&String::from_utf8_lossy(&err), keys);
        if !stderr_text.trim().is_empty() {
            tracing::debug!(fetcher = %self.label, stderr = %tail(&stderr_text, 2000), "fetcher wrote to stderr");
        }
        let crashed = |detail: String| FetchError::Crashed {
            fetcher: self.label.clone(),
            detail,
        };
        if !read || out.len() as u64 > MAX_OUTPUT {
            return Err(FetchError::InvalidResponse {
                fetcher: self.label.clone(),
                detail: format!("output missing or larger than {MAX_OUTPUT} bytes"),
            });
        }
        let status = status.map_err(|e| crashed(e.to_string()))?;
        if out.is_empty() {
            return Err(crashed(format!(
                "{status}, no output; stderr: {}",
                tail(&stderr_text, 300)
            )));
        }
        serde_json::from_slice(&out).map_err(|e| FetchError::InvalidResponse {
            fetcher: self.label.clone(),
            detail: format!(
                "output is not JSON ({e}); stderr: {}",
                tail(&stderr_text, 300)
            ),
        })
    }
}

/// What a fetcher process left when it exited.
struct Finished {
    /// Whether stdout was read to its end (within `MAX_OUTPUT`).
    read: bool,
    out: Vec<u8>,
    err: Vec<u8>,
    status: std::io::Result<std::process::ExitStatus>,
}

#[async_trait]
impl Fetcher for ProcessFetcher {
    fn label(&self) -> &str {
        &self.label
    }

    async fn metadata(&self) -> Result<Value, FetchError> {
        self.call(json!({"call": "metadata"}), &Keys::new()).await
    }

    async fn fetch(&self, request: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        let raw = self.call(request.event(), request.keys).await?;
        parse_fetch_response(&self.label, raw)
    }
}

/// Reads a pipe to its end (so the child never blocks on a full pipe) but keeps at most `cap`
/// bytes. Returns whether reading succeeded.
async fn read_capped(pipe: &mut (impl tokio::io::AsyncRead + Unpin), cap: u64) -> (bool, Vec<u8>) {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => return (true, kept),
            Ok(n) => {
                let room = (cap as usize).saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(_) => return (false, kept),
        }
    }
}

fn tail(s: &str, max_chars: usize) -> String {
    let n = s.chars().count();
    s.chars()
        .skip(n.saturating_sub(max_chars))
        .collect::<String>()
        .trim()
        .to_string()
}
