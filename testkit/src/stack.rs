//! Pushpin in front of a backend, with the fake upstream, all on loopback in one temp folder;
//! everything stops on drop. The caller writes the backend's config between [`Layout::new`]
//! (which picks the addresses and Pushpin's options) and [`Layout::start`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use restream::config::{PublishVia, Secret, Settings, SigKey};
use restream::pushpin::{PushpinOptions, PushpinProcess};

use crate::backend::Backend;
use crate::ports::{free_port, try_free_port_block};
use crate::process::Spec;
use crate::upstream::Upstream;
use crate::Error;

/// The folder and addresses of one stack, chosen before anything starts so the backend's
/// config can name them; adjust `pushpin` before [`Layout::start`].
pub struct Layout {
    pub dir: tempfile::TempDir,
    pub backend_addr: SocketAddr,
    /// Pushpin's public listener: WebSocket, HTTP API, SSE.
    pub public: SocketAddr,
    pub pushpin: PushpinOptions,
}

impl Layout {
    /// A fresh folder under `/tmp` named `{prefix}…` (short: Pushpin's IPC socket paths must
    /// fit in 108 bytes) and free ports.
    pub fn new(prefix: &str) -> Result<Layout, Error> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .map_err(Error::io("a temp dir for the stack"))?;
        let backend_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let pushpin = PushpinOptions::new(
            public,
            backend_addr,
            try_free_port_block()?,
            dir.path().join("pp"),
        );
        Ok(Layout {
            dir,
            backend_addr,
            public,
            pushpin,
        })
    }

    /// The built-in settings with the backend's address and this stack's Pushpin endpoints,
    /// publishing `via` ZeroMQ or HTTP; the caller sets the rest and writes `to_toml()`.
    pub fn settings(&self, via: PublishVia) -> Settings {
        let mut settings = Settings::default();
        settings.server.listen = self.backend_addr;
        settings.pushpin = restream::config::Pushpin {
            publish: via,
            zmq_push_specs: vec![self.pushpin.zmq_push_spec()],
            http_publish_urls: vec![self.pushpin.http_publish_url()],
            stats_specs: vec![self.pushpin.stats_spec()],
            // The key generated for this stack's Pushpin.
            sig_key: Some(SigKey::Value(self.pushpin.sig_key.clone())),
            ..Settings::default().pushpin
        };
        settings
    }

    /// Starts Pushpin, then the backend `spec` (waiting for its `/healthz`).
    pub async fn start(self, upstream: Upstream, backend: Spec) -> Result<Stack, Error> {
        let publish_url = format!("{}/publish/", self.pushpin.http_publish_url());
        let sig_key = self.pushpin.sig_key.clone();
        let pushpin_options = self.pushpin.clone();
        let pushpin = start_pushpin(self.pushpin).await?;
        let backend = Backend::start(backend, self.backend_addr).await?;
        Ok(Stack {
            backend,
            upstream,
            pushpin: Some(pushpin),
            pushpin_options,
            ws_url: format!("ws://{}/ws", self.public),
            http_url: format!("http://{}", self.public),
            publish_url,
            sig_key,
            keep_logs: None,
            dir: self.dir,
        })
    }
}

/// Starts Pushpin; when it exits during startup (a free port another process took between
/// the pick and Pushpin's bind — seen under heavy parallel load), tries again a moment later.
async fn start_pushpin(options: PushpinOptions) -> Result<PushpinProcess, Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let opts = options.clone();
        let started = tokio::task::spawn_blocking(move || PushpinProcess::start(opts))
            .await
            .expect("Pushpin's start does not panic");
        match started {
            Err(restream::pushpin::process::PushpinError::Exited { .. }) if attempt < 3 => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Pushpin + backend + fake upstream. Fields drop in order: the backend stops before Pushpin.
pub struct Stack {
    pub backend: Backend,
    pub upstream: Upstream,
    /// Held so Pushpin stops when the stack is dropped; `None` while stopped
    /// ([`Stack::stop_pushpin`]).
    pushpin: Option<PushpinProcess>,
    pushpin_options: PushpinOptions,
    pub ws_url: String,
    /// Pushpin's public port as `http://127.0.0.1:port`: the HTTP API and SSE.
    pub http_url: String,
    /// Pushpin's HTTP publish endpoint (`.../publish/`).
    pub publish_url: String,
    /// The key this stack's Pushpin signs with (and its backend verifies).
    pub sig_key: Secret,
    keep_logs: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl Stack {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops Pushpin (SIGTERM, then SIGKILL): every client connection through it drops.
    pub async fn stop_pushpin(&mut self) {
        let old = self.pushpin.take();
        tokio::task::spawn_blocking(move || drop(old))
            .await
            .expect("Pushpin's stop does not panic");
    }

    /// Starts Pushpin again on the same ports (after [`Stack::stop_pushpin`]).
    pub async fn start_pushpin(&mut self) -> Result<(), Error> {
        assert!(self.pushpin.is_none(), "Pushpin is running");
        self.pushpin = Some(start_pushpin(self.pushpin_options.clone()).await?);
        Ok(())
    }

    /// A `Grip-Sig` as this stack's Pushpin would send it, for requests straight to the
    /// backend that stand in for Pushpin.
    pub fn grip_sig(&self) -> String {
        grip_sig(&self.sig_key)
    }

    /// On drop, copies the backend's and Pushpin's logs into `dir` (named by the backend's
    /// PID) before the temp folder goes.
    pub fn keep_logs_in(&mut self, dir: PathBuf) {
        self.keep_logs = Some(dir);
    }

    fn copy_logs(&self, to: &Path) {
        let pid = self.backend.pid().unwrap_or(0);
        let _ = std::fs::copy(
            self.backend.log_path(),
            to.join(format!("backend-{pid}.log")),
        );
        if let Ok(logs) = std::fs::read_dir(self.dir.path().join("pp/log")) {
            for log in logs.flatten() {
                let name = format!("pushpin-{pid}-{}", log.file_name().to_string_lossy());
                let _ = std::fs::copy(log.path(), to.join(name));
            }
        }
    }
}

/// A `Grip-Sig` signed with `key`, valid for an hour, as Pushpin makes them.
pub fn grip_sig(key: &Secret) -> String {
    restream::edge::grip_sig::sign(key, std::time::Duration::from_secs(3600))
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(dir) = &self.keep_logs {
            self.copy_logs(dir);
        }
    }
}

/// Abuse bounds out of the way of harnesses where every client shares one address (loopback)
/// and channels poll fast: the limits stay on (their cost is still paid), far above what a
/// test or benchmark sends. A test of a limit sets it after this.
pub fn lift_abuse_limits(settings: &mut Settings) {
    let l = &mut settings.limits;
    (l.address_subscribe_burst, l.address_subscribes_per_sec) = (1_000_000, 1_000_000.0);
    (
        l.connection_subscribe_burst,
        l.connection_subscribes_per_sec,
    ) = (1_000_000, 1_000_000.0);
    (l.sse_open_burst, l.sse_opens_per_sec) = (1_000_000, 1_000_000.0);
    (l.max_channels, l.default_max_channels_per_fetcher) = (1_000_000, 1_000_000);
    l.snapshot_resend_secs = 0.0;
    settings.fetchers.default_rate_limit = vec![(std::time::Duration::from_secs(1), 1000)];
    // Every declarative channel of a harness calls the same loopback upstream.
    settings.declarative.host_calls_per_minute = 1_000_000;
}
