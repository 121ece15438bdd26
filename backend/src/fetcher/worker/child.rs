//! One warm worker: a Python process that imported a fetcher's `main.py` once and answers
//! calls one at a time over the framed protocol, in a process group of its own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::OwnedSemaphorePermit;

use super::protocol::{encode, FrameError, FrameReader};
use crate::fetcher::sandbox::{self, GroupKill};

const WORKER: &str = include_str!("worker.py");
/// How much of a worker's stderr (its tail) a call keeps for errors and logs.
const MAX_STDERR: usize = 64 * 1024;

/// What a worker needs to start: the interpreter, the fetcher's folder, its environment.
#[derive(Debug, Clone)]
pub struct Spec {
    pub python: String,
    /// Absolute; the worker runs inside it.
    pub dir: PathBuf,
    pub timeout: Duration,
    /// The allowlisted environment (base list, `fetchers.process_env`, declared names).
    pub env: Vec<(String, OsString)>,
}

/// The files a worker's code comes from, as they were when it started: when one changes, new
/// calls go to a fresh worker (an edited `main.py`, a reinstalled `requirements.txt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources(Vec<Option<(SystemTime, u64)>>);

impl Sources {
    /// `main.py`, `requirements.txt` and `site-packages/` (a package added, removed or
    /// reinstalled changes the folder). Not the fetcher's folder itself: a fetcher that writes
    /// a file beside its code would otherwise lose its worker on every call.
    pub fn read(dir: &Path) -> Sources {
        let stamp = |p: PathBuf| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        };
        Sources(vec![
            stamp(dir.join("main.py")),
            stamp(dir.join("requirements.txt")),
            stamp(dir.join("site-packages")),
        ])
    }
}

/// Why a call left no usable answer; the worker is killed after any of them.
#[derive(Debug)]
pub enum Failure {
    Timeout,
    /// The worker's process ended (crash, `os._exit`, killed from outside).
    Exited(String),
    /// Bytes on the answer pipe that are not the answer to this call.
    Protocol(FrameError),
    /// More than the output limit on stderr (prints included) during one call.
    OutputTooLarge,
}

/// A call's answer (the fetcher's JSON text) or failure, with the tail of its stderr.
pub struct Called {
    pub answer: Result<Vec<u8>, Failure>,
    pub stderr: Vec<u8>,
}

/// A running worker. Dropping it kills its whole process group.
pub struct Worker {
    // Fields drop in order: the group is killed while its leader is unreaped.
    group: GroupKill,
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    stderr: ChildStderr,
    reader: FrameReader,
    pid: i32,
    next_id: u32,
    pub calls: u64,
    pub sources: Sources,
    /// The environment it was started with (a fetcher's declared names may be learnt later).
    pub env: Vec<(String, OsString)>,
    pub idle_since: Instant,
    _live: OwnedSemaphorePermit,
}

impl Worker {
    /// Starts a worker on `spec`, holding `live` (its place under `fetchers.max_workers`)
    /// while it runs.
    pub fn spawn(spec: &Spec, live: OwnedSemaphorePermit) -> std::io::Result<Worker> {
        let sources = Sources::read(&spec.dir);
        let mut command = Command::new(&spec.python);
        command
            .arg("-c")
            .arg(WORKER)
            .arg(spec.dir.join("main.py"))
            .arg(spec.timeout.as_millis().to_string())
            .current_dir(&spec.dir)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches only the child being started.
        // As a subreaper, the worker inherits the orphans of whatever its fetcher starts, so
        // `kill_leftovers` finds every one of them after each call.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        crate::metrics::get().fetcher_workers.inc();
        let group = GroupKill::new(child.id());
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        Ok(Worker {
            group,
            stdin: child.stdin.take().expect("piped stdin"),
            stdout: child.stdout.take().expect("piped stdout"),
            stderr: child.stderr.take().expect("piped stderr"),
            child,
            reader: FrameReader::new(crate::fetcher::process::MAX_OUTPUT),
            pid,
            next_id: 0,
            calls: 0,
            sources,
            env: spec.env.clone(),
            idle_since: Instant::now(),
            _live: live,
        })
    }

    /// Whether it already ended or left bytes behind since its last answer: not to be used.
    /// Read from `/proc` without reaping it, so its group is still killed by its own id.
    pub fn spoiled(&mut self) -> bool {
        if self.reader.has_leftover() {
            return true;
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z'),
            // No /proc: ask the child (this reaps it; its group was emptied after its last call).
            Err(_) => !matches!(self.child.try_wait(), Ok(None)),
        }
    }

    /// Its resident memory, when the platform tells.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// Runs `event` with `timeout`. After a failure the worker must be dropped.
    pub async fn call(&mut self, event: &Value, timeout: Duration) -> Called {
        self.calls += 1;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let request = serde_json::json!({"event": event, "timeout_ms": timeout.as_millis() as u64});
        let frame = encode(id, &serde_json::to_vec(&request).expect("events serialize"));
        let mut stderr = Vec::new();
        let answer =
            match tokio::time::timeout(timeout, self.exchange(id, &frame, &mut stderr)).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(Failure::Protocol(FrameError::Closed))) => {
                    Err(Failure::Exited(self.ended(&mut stderr).await))
                }
                Ok(Err(failure)) => Err(failure),
                Err(_) => Err(Failure::Timeout),
            };
        if answer.is_ok() {
            // Whatever the fetcher wrote before it answered is in the pipe already.
            let mut chunk = [0u8; 8192];
            while let Some(Ok(n @ 1..)) = self.stderr.read(&mut chunk).now_or_never() {
                keep_tail(&mut stderr, &chunk[..n]);
            }
            // As the one-shot runner's group is killed once it answered: nothing the call
            // started outlives it.
            sandbox::kill_leftovers(self.pid).await;
        } else {
            self.group.kill();
        }
        Called { answer, stderr }
    }

    /// Sends the request, then reads stderr until the answer to call `id` arrives.
    async fn exchange(
        &mut self,
        id: u32,
        frame: &[u8],
        stderr: &mut Vec<u8>,
    ) -> Result<Vec<u8>, Failure> {
        if self.stdin.write_all(frame).await.is_err() || self.stdin.flush().await.is_err() {
            return Err(Failure::Protocol(FrameError::Closed));
        }
        let mut chunk = vec![0u8; 8192];
        let mut written = 0usize;
        let mut stderr_open = true;
        loop {
            tokio::select! {
                frame = self.reader.next(&mut self.stdout) => {
                    let frame = frame.map_err(Failure::Protocol)?;
                    if frame.id != id || self.reader.has_leftover() {
                        return Err(Failure::Protocol(FrameError::WrongCall));
                    }
                    return Ok(frame.payload);
                }
                read = self.stderr.read(&mut chunk), if stderr_open => match read {
                    Ok(n @ 1..) => {
                        written += n;
                        if written > crate::fetcher::process::MAX_OUTPUT {
                            return Err(Failure::OutputTooLarge);
                        }
                        keep_tail(stderr, &chunk[..n]);
                    }
                    _ => stderr_open = false,
                },
            }
        }
    }

    /// How the worker ended, once its answer pipe closed; the rest of its stderr is read.
    async fn ended(&mut self, stderr: &mut Vec<u8>) -> String {
        // Its group first, while the leader is unreaped (a zombie keeps its exit status).
        self.group.kill();
        let status = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        let rest = async {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = self.stderr.read(&mut chunk).await {
                keep_tail(stderr, &chunk[..n]);
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), rest).await;
        match status {
            Ok(Ok(status)) => describe(status),
            _ => "did not exit after closing its answer pipe".into(),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        crate::metrics::get().fetcher_workers.dec();
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (_, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Appends `chunk`, keeping the last [`MAX_STDERR`] bytes.
fn keep_tail(kept: &mut Vec<u8>, chunk: &[u8]) {
    kept.extend_from_slice(chunk);
    if kept.len() > 2 * MAX_STDERR {
        kept.drain(..kept.len() - MAX_STDERR);
    }
}

/// The last [`MAX_STDERR`] bytes of `kept`.
pub fn stderr_tail(mut kept: Vec<u8>) -> Vec<u8> {
    let excess = kept.len().saturating_sub(MAX_STDERR);
    kept.drain(..excess);
    kept
}
