//! Child processes of a test or benchmark: spawned with their output in a log file, waited for
//! until an HTTP path on loopback answers 200, stopped by PID, their log quoted when they fail.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// How a process is stopped when its handle is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL: no drain, no goodbye.
    Kill,
    /// SIGTERM, then SIGKILL if it is still running after the grace period.
    Terminate(Duration),
}

/// Everything needed to start (and restart) one process.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The name used in messages.
    pub what: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub env_remove: Vec<String>,
    /// Stderr (and stdout when `stdout_to_log`) is appended here.
    pub log: PathBuf,
    pub stdout_to_log: bool,
    /// SIGKILL the child when the thread that spawned it ends, so an interrupted run leaves
    /// nothing behind even when `Drop` never runs.
    pub die_with_parent: bool,
    pub stop: Stop,
}

impl Spec {
    /// `program`, output (both streams) to `log`, killed on drop.
    pub fn new(what: &str, program: impl Into<PathBuf>, log: PathBuf) -> Spec {
        Spec {
            what: what.to_string(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            log,
            stdout_to_log: true,
            die_with_parent: false,
            stop: Stop::Kill,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Spec {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Spec {
        self.env.push((key.to_string(), value.into()));
        self
    }
}

/// A running child process; stopped (and reaped) on drop as its [`Spec`] says.
pub struct Process {
    child: Child,
    spec: Spec,
}

impl Process {
    pub fn spawn(spec: &Spec) -> Result<Process, Error> {
        let spawn_error = |source| Error::Spawn {
            what: spec.what.clone(),
            source,
        };
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(spawn_error)?;
        let stdout = if spec.stdout_to_log {
            Stdio::from(log.try_clone().map_err(spawn_error)?)
        } else {
            Stdio::null()
        };
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log);
        for key in &spec.env_remove {
            command.env_remove(key);
        }
        if spec.die_with_parent {
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let child = command.spawn().map_err(spawn_error)?;
        Ok(Process {
            child,
            spec: spec.clone(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.spec.log).unwrap_or_default()
    }

    /// Waits until `GET path` on `addr` answers 200; fails early if the process exits.
    pub async fn wait_ready(
        &mut self,
        addr: SocketAddr,
        path: &str,
        within: Duration,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            self.check_running()?;
            if http_ok(addr, path).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(self.not_ready(within))
    }

    /// [`Process::wait_ready`] for synchronous callers, inside a runtime or not: it waits on a
    /// thread of its own with a runtime of its own.
    pub fn wait_ready_blocking(
        &mut self,
        addr: SocketAddr,
        path: &str,
        within: Duration,
    ) -> Result<(), Error> {
        // Built and dropped on that thread: a runtime may not be dropped inside another one.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(Error::io("a runtime to wait on"))?
                        .block_on(self.wait_ready(addr, path, within))
                })
                .join()
                .expect("waiting does not panic")
        })
    }

    fn check_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(self.exited(status)),
            _ => Ok(()),
        }
    }

    fn exited(&self, status: ExitStatus) -> Error {
        let log = self.log_text();
        let hint = if log.contains("No module named") {
            ": a Python module is not installed; run `bash scripts/install-deps.sh --tests`"
        } else {
            ""
        };
        Error::Exited {
            what: self.spec.what.clone(),
            status,
            hint,
            log: format!("{}{}", error_report(&log), tail(&log)),
        }
    }

    fn not_ready(&self, within: Duration) -> Error {
        Error::NotReady {
            what: self.spec.what.clone(),
            within,
            log: tail(&self.log_text()),
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM by PID; SIGKILL after `grace` if it has not exited by then.
    pub fn terminate(&mut self, grace: Duration) {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        match self.spec.stop {
            Stop::Kill => self.kill(),
            Stop::Terminate(grace) => self.terminate(grace),
        }
    }
}

/// The error a program printed when it exited (`Error: …` and its causes, up to a backtrace),
/// followed by a blank line; empty when there is none. A backtrace can fill the whole tail.
pub fn error_report(log: &str) -> String {
    let report: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.starts_with("Error: "))
        .take_while(|l| !l.starts_with("Stack backtrace:"))
        .take(20)
        .collect();
    if report.is_empty() {
        return String::new();
    }
    format!("{}\n\n", report.join("\n").trim_end())
}

/// The last lines of a log, for error messages.
pub fn tail(log: &str) -> String {
    let lines: Vec<_> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A `GET path` on `addr` that answered 200.
async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_report_is_pulled_out_from_above_a_backtrace() {
        let log = "INFO starting\nError: binding 127.0.0.1:5000\n\nCaused by:\n    Address in use\n\nStack backtrace:\n   0: main\n";
        assert_eq!(
            error_report(log),
            "Error: binding 127.0.0.1:5000\n\nCaused by:\n    Address in use\n\n"
        );
        assert_eq!(error_report("INFO fine\n"), "");
    }
}
