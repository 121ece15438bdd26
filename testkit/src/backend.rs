//! The backend behind Pushpin as a child process: the `restream` binary, or any other
//! WebSocket-over-HTTP responder, started and then waited for until `/healthz` answers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::process::{Process, Spec};
use crate::Error;
/// How long a backend may take to answer `/healthz`.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

/// A backend process listening on `addr`; stopped on drop as its [`Spec`] says.
pub struct Backend {
    process: Option<Process>,
    spec: Spec,
    pub addr: SocketAddr,
}

impl Backend {
    /// Starts `spec` and waits until `addr` answers `/healthz`.
    pub async fn start(spec: Spec, addr: SocketAddr) -> Result<Backend, Error> {
        let mut backend = Backend {
            process: None,
            spec,
            addr,
        };
        backend.spawn().await?;
        Ok(backend)
    }

    async fn spawn(&mut self) -> Result<(), Error> {
        let mut process = Process::spawn(&self.spec)?;
        let ready = process
            .wait_ready(self.addr, "/healthz", HEALTHY_WITHIN)
            .await;
        self.process = Some(process);
        ready
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// SIGKILL: no drain, no goodbye.
    pub async fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// SIGTERM (a graceful stop: it drains, gives its leases back and leaves the cluster),
    /// waiting up to `grace` for it to exit before SIGKILL.
    pub async fn terminate(&mut self, grace: Duration) {
        if let Some(mut p) = self.process.take() {
            let _ = tokio::task::spawn_blocking(move || p.terminate(grace)).await;
        }
    }

    /// Kills and starts it again (its log goes on in the same file); panics if it does not
    /// come back.
    pub async fn restart(&mut self) {
        self.kill().await;
        if let Err(e) = self.spawn().await {
            panic!("backend did not become healthy: {e}");
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.spec.log).unwrap_or_default()
    }

    pub fn log_path(&self) -> &PathBuf {
        &self.spec.log
    }
}
