//! The `process` fetcher kind: runs `functions/<dir>/main.py` locally, exactly as it would run
//! on Lambda: on warm workers (`worker`, the default) or one Python process per call.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::process::Command;

use super::sandbox::{self, GroupKill, ProcessSlots};
use super::worker::{self, ProcessMode, Refused, WorkerCap, WorkerPool, WorkerSettings};
use super::{parse_fetch_response, redact, FetchError, FetchOutcome, FetchRequest, Fetcher, Keys};

const RUNNER: &str = include_str!("runner.py");
/// Largest response accepted from a fetcher; the process group is killed when stdout exceeds it.
pub const MAX_OUTPUT: usize = 16 * 1024 * 1024;
/// How much of a fetcher's stderr (its tail) is kept for error messages and logs.
const MAX_STDERR: usize = 64 * 1024;

/// How process fetchers run; one value shared by every process fetcher, so they share the cap.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    pub python: String,
    /// How long a process may run (waiting for a slot is bounded by the same duration, apart).
    pub timeout: Duration,
    /// Variable names passed beside the base list and the fetcher's declared ones
    /// (`fetchers.process_env`).
    pub env: Vec<String>,
    pub slots: ProcessSlots,
    /// Warm workers (the default) or a process per call (`fetchers.process_mode`).
    pub mode: ProcessMode,
    /// Per fetcher: how many warm workers, when they are replaced.
    pub workers: WorkerSettings,
    /// The cap on live warm workers, shared by every process fetcher (`fetchers.max_workers`).
    pub cap: WorkerCap,
}

impl ProcessRuntime {
    /// `python` with `timeout`, no extra variables, warm workers and the default caps.
    pub fn new(python: &str, timeout: Duration) -> ProcessRuntime {
        ProcessRuntime {
            python: python.to_string(),
            timeout,
            env: Vec::new(),
            slots: ProcessSlots::default(),
            mode: ProcessMode::Warm,
            workers: WorkerSettings::default(),
            cap: WorkerCap::default(),
        }
    }
}

/// A fetcher that is a `main.py` in a folder of `functions/`.
#[derive(Debug, Clone)]
pub struct ProcessFetcher {
    dir: PathBuf,
    label: String,
    runtime: ProcessRuntime,
    /// The variable names its metadata declares (`"env"`), learnt from its `metadata` answer.
    declared_env: Arc<RwLock<Vec<String>>>,
    /// Its warm workers; `None` in one-shot mode.
    pool: Option<Arc<WorkerPool>>,
}

impl ProcessFetcher {
    /// `dir` is made absolute: the process runs inside it, so a relative path would not resolve.
    pub fn new(dir: &Path, runtime: ProcessRuntime) -> ProcessFetcher {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let label = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pool = (runtime.mode == ProcessMode::Warm).then(|| {
            Arc::new(WorkerPool::new(
                &label,
                &runtime.python,
                &dir,
                runtime.timeout,
                runtime.workers.clone(),
                runtime.slots.clone(),
                runtime.cap.clone(),
            ))
        });
        ProcessFetcher {
            dir,
            label,
            runtime,
            declared_env: Arc::default(),
            pool,
        }
    }

    async fn call(&self, event: Value, keys: &Keys) -> Result<Value, FetchError> {
        if let Some(pool) = &self.pool {
            return self.call_warm(pool, &event, keys).await;
        }
        let finished = self.run(&event).await?;
        self.answer(finished, keys)
    }

    /// A call on one of the fetcher's warm workers.
    async fn call_warm(
        &self,
        pool: &WorkerPool,
        event: &Value,
        keys: &Keys,
    ) -> Result<Value, FetchError> {
        let declared = self.declared_env.read().expect("env lock").clone();
        let env = sandbox::environment(&self.runtime.env, &declared);
        let called = pool
            .call(event, &env)
            .await
            .map_err(|refused| match refused {
                Refused::Busy(detail) => FetchError::Throttled {
                    fetcher: self.label.clone(),
                    detail,
                    retry_after: None,
                },
                Refused::Spawn(source) => FetchError::Spawn {
                    fetcher: self.label.clone(),
                    source,
                },
            })?;
        let stderr_text = redact(
            &String::from_utf8_lossy(&worker::stderr_tail(called.stderr)),
            keys,
        );
        if !stderr_text.trim().is_empty() {
            tracing::debug!(fetcher = %self.label, stderr = %tail(&stderr_text, 2000), "fetcher wrote to stderr");
        }
        let invalid = |detail: String| FetchError::InvalidResponse {
            fetcher: self.label.clone(),
            detail,
        };
        match called.answer {
            Ok(out) => serde_json::from_slice(&out)
                .map_err(|e| invalid(format!("answer is not JSON ({e})"))),
            Err(worker::Failure::Timeout) => {
                crate::metrics::get()
                    .fetcher_process_kills
                    .with_label_values(&["timeout"])
                    .inc();
                Err(self.timeout())
            }
            Err(worker::Failure::Exited(how)) => Err(FetchError::Crashed {
                fetcher: self.label.clone(),
                detail: format!(
                    "worker {how} without answering; stderr: {}",
                    tail(&stderr_text, 300)
                ),
            }),
            Err(worker::Failure::Protocol(e)) => {
                crate::metrics::get()
                    .fetcher_process_kills
                    .with_label_values(&["protocol"])
                    .inc();
                Err(invalid(format!(
                    "worker's answer unusable ({e}); worker killed"
                )))
            }
            Err(worker::Failure::OutputTooLarge) => {
                count_output_too_large();
                Err(invalid(format!(
                    "output larger than {MAX_OUTPUT} bytes; process killed"
                )))
            }
        }
    }

    fn timeout(&self) -> FetchError {
        FetchError::Timeout {
            fetcher: self.label.clone(),
            seconds: self.runtime.timeout.as_secs_f64(),
        }
    }

    /// The fetcher's process: the runner on its `main.py`, inside its folder, in a process group
    /// of its own, with only the allowlisted environment.
    fn command(&self) -> Command {
        let declared = self.declared_env.read().expect("env lock").clone();
        let mut command = Command::new(&self.runtime.python);
        command
            .arg("-c")
            .arg(RUNNER)
            .arg(self.dir.join("main.py"))
            .arg(self.runtime.timeout.as_millis().to_string())
            .current_dir(&self.dir)
            .env_clear()
            .envs(sandbox::environment(&self.runtime.env, &declared))
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs the fetcher on `event` in a slot of the cap, in its own process group, with the
    /// allowlisted environment, until it exits or the timeout; then nothing of its group is left.
    async fn run(&self, event: &Value) -> Result<Finished, FetchError> {
        let timeout = self.runtime.timeout;
        let Some(_slot) = self.runtime.slots.acquire(timeout).await else {
            return Err(FetchError::Throttled {
                fetcher: self.label.clone(),
                detail: format!(
                    "all {} fetcher process slots stayed busy for {:.1}s (fetchers.max_processes)",
                    self.runtime.slots.max(),
                    timeout.as_secs_f64()
                ),
                retry_after: None,
            });
        };
        let mut child = self.command().spawn().map_err(|source| FetchError::Spawn {
            fetcher: self.label.clone(),
            source,
        })?;
        // Declared after `child`, so on cancellation it is dropped first: the group is killed
        // while its leader is unreaped and its id cannot name another group.
        let mut group = GroupKill::new(child.id());
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
            let out = async {
                let out = read_bounded(&mut stdout, MAX_OUTPUT).await;
                // The runner writes its answer last: whatever of the group is still running
                // now (a leftover child holding stderr, an oversized writer) is killed.
                group.kill();
                out
            };
            let (_, out, err) = tokio::join!(write, out, read_tail(&mut stderr, MAX_STDERR));
            (out, err)
        };
        let Ok((out, err)) = tokio::time::timeout(timeout, run).await else {
            group.kill();
            crate::metrics::get()
                .fetcher_process_kills
                .with_label_values(&["timeout"])
                .inc();
            let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            return Err(self.timeout());
        };
        if matches!(out, Output::TooLarge) {
            count_output_too_large();
        }
        let status = tokio::time::timeout(Duration::from_secs(2), child.wait())
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("did not exit after SIGKILL")));
        Ok(Finished { out, err, status })
    }

    /// The fetcher's answer, or why its output is not one.
    fn answer(&self, finished: Finished, keys: &Keys) -> Result<Value, FetchError> {
        let Finished { out, err, status } = finished;
        let stderr_text = redact(&String::from_utf8_lossy(&err), keys);
        if !stderr_text.trim().is_empty() {
            tracing::debug!(fetcher = %self.label, stderr = %tail(&stderr_text, 2000), "fetcher wrote to stderr");
        }
        let crashed = |detail: String| FetchError::Crashed {
            fetcher: self.label.clone(),
            detail,
        };
        let out = match out {
            Output::Complete(out) => out,
            Output::TooLarge => {
                return Err(FetchError::InvalidResponse {
                    fetcher: self.label.clone(),
                    detail: format!("output larger than {MAX_OUTPUT} bytes; process killed"),
                })
            }
            Output::Unreadable => {
                return Err(FetchError::InvalidResponse {
                    fetcher: self.label.clone(),
                    detail: "output unreadable".into(),
                })
            }
        };
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
    out: Output,
    /// The tail of its stderr.
    err: Vec<u8>,
    status: std::io::Result<std::process::ExitStatus>,
}

/// A fetcher's stdout, read up to its limit.
enum Output {
    Complete(Vec<u8>),
    /// More than the limit: reading stopped there.
    TooLarge,
    Unreadable,
}

#[async_trait]
impl Fetcher for ProcessFetcher {
    fn label(&self) -> &str {
        &self.label
    }

    /// Also learns the variable names the fetcher declares (`"env"`), for its later calls.
    async fn metadata(&self) -> Result<Value, FetchError> {
        let answer = self.call(json!({"call": "metadata"}), &Keys::new()).await?;
        *self.declared_env.write().expect("env lock") = super::metadata::declared_env(&answer);
        Ok(answer)
    }

    async fn fetch(&self, request: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        let raw = self.call(request.event(), request.keys).await?;
        parse_fetch_response(&self.label, raw)
    }
}

/// A process killed for an answer over [`MAX_OUTPUT`], in both metrics that count it.
fn count_output_too_large() {
    let metrics = crate::metrics::get();
    metrics
        .fetcher_process_kills
        .with_label_values(&["output_too_large"])
        .inc();
    metrics
        .bodies_too_large
        .with_label_values(&["process_stdout"])
        .inc();
}

/// Reads a pipe to its end, or stops once it holds more than `cap` bytes.
async fn read_bounded(pipe: &mut (impl tokio::io::AsyncRead + Unpin), cap: usize) -> Output {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => return Output::Complete(kept),
            Ok(n) if kept.len() + n > cap => return Output::TooLarge,
            Ok(n) => kept.extend_from_slice(&chunk[..n]),
            Err(_) => return Output::Unreadable,
        }
    }
}

/// Reads a pipe to its end (so the child never blocks on a full pipe), keeping the last
/// `keep` bytes: the end of a traceback is the part that says what went wrong.
async fn read_tail(pipe: &mut (impl tokio::io::AsyncRead + Unpin), keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n @ 1..) = pipe.read(&mut chunk).await {
        kept.extend_from_slice(&chunk[..n]);
        if kept.len() > 2 * keep {
            kept.drain(..kept.len() - keep);
        }
    }
    let excess = kept.len().saturating_sub(keep);
    kept.drain(..excess);
    kept
}

fn tail(s: &str, max_chars: usize) -> String {
    let n = s.chars().count();
    s.chars()
        .skip(n.saturating_sub(max_chars))
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stdout_reading_stops_past_the_limit() {
        let mut endless = tokio::io::repeat(b'x');
        assert!(matches!(
            read_bounded(&mut endless, 100_000).await,
            Output::TooLarge
        ));
        let mut exact: &[u8] = &[b'y'; 100];
        match read_bounded(&mut exact, 100).await {
            Output::Complete(out) => assert_eq!(out.len(), 100),
            _ => panic!("100 bytes fit a limit of 100"),
        }
    }

    #[tokio::test]
    async fn stderr_keeps_its_tail() {
        let text: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut pipe: &[u8] = &text;
        let kept = read_tail(&mut pipe, 1000).await;
        assert_eq!(kept, text[text.len() - 1000..]);
    }
}
