//! One benchmark stack: an isolated Pushpin on loopback, the `restream` backend binary (or the
//! no-op WOH responder) behind it, and the fake upstream read by a declarative channel `bench`
//! (`GET /feed/{n}.json`, param `n`). Everything stops on drop.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use restream::config::{FetcherKind, KeysSettings, PublishVia, Settings, StoreKind};
use restream::pushpin::{PushpinOptions, PushpinProcess};

use crate::upstream::Upstream;

/// What answers Pushpin's WebSocket-over-HTTP requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behind {
    Restream,
    /// `restream-bench null-woh`: protocol-shaped replies, no work.
    NullResponder,
}

pub struct Options {
    pub behind: Behind,
    /// Poll interval of the `bench` channel, seconds.
    pub interval: f64,
    /// Pushpin's delivery rate limit (messages/s).
    pub message_rate: u32,
}

pub struct Stack {
    pub upstream: Upstream,
    pub ws_url: String,
    /// Pushpin's HTTP publish endpoint (`.../publish/`).
    pub publish_url: String,
    pub backend_pid: u32,
    backend: Child,
    _pushpin: PushpinProcess,
    dir: tempfile::TempDir,
}

/// The `restream` binary: `$RESTREAM_BIN`, else next to this executable (`cargo build
/// --release -p restream -p restream-bench` puts both in `target/release/`).
pub fn restream_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("RESTREAM_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable has no folder")?;
    for candidate in [dir.join("restream"), dir.join("../restream")] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "no restream binary next to {}: build both with `cargo build --release -p restream -p restream-bench` (or set RESTREAM_BIN)",
        exe.display()
    )
}

fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Five consecutive free ports below the ephemeral range, for Pushpin's sockets.
fn free_port_block() -> anyhow::Result<u16> {
    let seed = std::process::id() as u64 ^ crate::measure::now_us();
    for i in 0..500u64 {
        let base = 20000 + ((seed.wrapping_mul(2654435761).wrapping_add(i * 7919)) % 12000) as u16;
        if (0..5).all(|k| StdListener::bind(("127.0.0.1", base + k)).is_ok()) {
            return Ok(base);
        }
    }
    anyhow::bail!("no block of 5 free ports")
}

fn channel_toml(interval: f64) -> String {
    format!(
        r#"name = "bench"
description = "the benchmark's fake upstream"
url = "{{base}}/feed/{{n}}.json"
base_url_env = "BENCH_BASE_URL"
items = ""
id_field = "id"
poll_interval = {interval}
complete = true
[params.n]
required = true
"#
    )
}

impl Stack {
    pub async fn start(options: Options) -> anyhow::Result<Stack> {
        let dir = tempfile::Builder::new().prefix("rb").tempdir_in("/tmp")?;
        let upstream = Upstream::start().await?;
        let backend_addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let public: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let mut pp = PushpinOptions::new(
            public,
            backend_addr,
            free_port_block()?,
            dir.path().join("pp"),
        );
        pp.message_rate = options.message_rate;
        let publish_url = format!("{}/publish/", pp.http_publish_url());
        let channels = dir.path().join("channels");
        std::fs::create_dir_all(&channels)?;
        std::fs::create_dir_all(dir.path().join("functions"))?;
        std::fs::write(channels.join("bench.toml"), channel_toml(options.interval))?;
        let config = dir.path().join("restream.toml");
        let mut settings = Settings {
            pushpin: restream::config::Pushpin {
                publish: PublishVia::Zmq,
                zmq_push_specs: vec![pp.zmq_push_spec()],
                http_publish_urls: vec![pp.http_publish_url()],
                stats_specs: vec![pp.stats_spec()],
            },
            ..Settings::default()
        };
        settings.server.listen = backend_addr;
        settings.fetchers.kinds = vec![FetcherKind::Http];
        settings.fetchers.dir = dir.path().join("functions");
        settings.fetchers.channels_dir = channels.clone();
        settings.store.kind = StoreKind::Embedded {
            path: dir.path().join("items.redb"),
        };
        settings.keys = KeysSettings::File {
            file: dir.path().join("keys.json"),
        };
        settings.log.filter = std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into());
        std::fs::write(&config, settings.to_toml()?)?;
        let pushpin = tokio::task::spawn_blocking(move || PushpinProcess::start(pp)).await??;
        let log = std::fs::File::create(dir.path().join("backend.log"))?;
        let mut command = match options.behind {
            Behind::Restream => {
                let mut c = Command::new(restream_binary()?);
                c.arg("serve").arg("--config").arg(&config);
                c
            }
            Behind::NullResponder => {
                let mut c = Command::new(std::env::current_exe()?);
                c.arg("null-woh")
                    .arg("--listen")
                    .arg(backend_addr.to_string());
                c
            }
        };
        let backend = command
            .env("BENCH_BASE_URL", format!("http://{}", upstream.addr))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start the backend")?;
        let backend_pid = backend.id();
        let stack = Stack {
            upstream,
            ws_url: format!("ws://{public}/ws"),
            publish_url,
            backend_pid,
            backend,
            _pushpin: pushpin,
            dir,
        };
        stack.wait_healthy(backend_addr).await?;
        Ok(stack)
    }

    async fn wait_healthy(&self, addr: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("http://{addr}/healthz")).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!(
            "backend not healthy within 30 s; log:\n{}",
            self.backend_log()
        )
    }

    pub fn backend_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("backend.log")).unwrap_or_default()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // `BENCH_KEEP_LOGS=DIR` keeps the backend's log for a look after the run.
        if let Some(dir) = std::env::var_os("BENCH_KEEP_LOGS") {
            let dir = PathBuf::from(dir);
            let to = dir.join(format!("backend-{}.log", self.backend_pid));
            let _ = std::fs::copy(self.dir.path().join("backend.log"), to);
            if let Ok(logs) = std::fs::read_dir(self.dir.path().join("pp/log")) {
                for log in logs.flatten() {
                    let name = format!(
                        "pushpin-{}-{}",
                        self.backend_pid,
                        log.file_name().to_string_lossy()
                    );
                    let _ = std::fs::copy(log.path(), dir.join(name));
                }
            }
        }
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.backend_pid as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.backend.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.backend.kill();
        let _ = self.backend.wait();
    }
}
