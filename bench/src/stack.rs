//! One benchmark stack: the test kit's isolated Pushpin on loopback with the `restream` backend
//! binary (or the no-op WOH responder) behind it, and the fake upstream read by a declarative
//! channel `bench` (`GET /feed/{n}.json`, param `n`), and optionally the push channel
//! `bench-push` with a producer key, or the push channel `bench-history` served from a store
//! seeded beforehand. Everything stops on drop.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use restream::config::{FetcherKind, KeysSettings, PublishVia, StoreKind};
use restream_testkit::process::{Spec, Stop};
use restream_testkit::stack::Layout;
pub use restream_testkit::stack::Stack;
use restream_testkit::upstream::{self, Upstream};

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
    /// Pushpin's `client_buffer_size` (bytes per connection): `None` keeps the test kit's
    /// 8192. Bursts to one WebSocket beyond what it holds are dropped by Pushpin.
    pub client_buffer_size: Option<usize>,
    /// The `bench` channel needs a token: clients connect with `?token=` (HS256, from the keys
    /// file's `_restream.jwt_secret`), checked on every WOH request.
    pub auth: bool,
    /// Also declare the push channels [`PUSH_CHANNELS`] (items mode, id field `id`, no
    /// params), with [`PRODUCER_KEY`] as their producer key in the keys file.
    pub push: bool,
    /// Also declare the push channel [`HISTORY_CHANNEL`] (param `n`) and serve the store
    /// seeded beforehand at `store`, keeping `max_events` events per channel.
    pub history: Option<HistorySeed>,
    /// The fake upstream keeps connections open between requests (keep-alive) instead of
    /// closing each after its answer.
    pub upstream_keep_alive: bool,
}

/// A store file seeded with [`HISTORY_CHANNEL`]'s events.
pub struct HistorySeed {
    pub store: PathBuf,
    pub max_events: u64,
}

/// The push channel of `Options::history` (items mode, id field `id`, param `n` required).
pub const HISTORY_CHANNEL: &str = "bench-history";

/// The push channel of `Options::push` that clients subscribe to.
pub const PUSH_CHANNEL: &str = "bench-push";
/// One that nobody subscribes to (the publish path without fan-out).
pub const IDLE_PUSH_CHANNEL: &str = "bench-push-idle";
const PUSH_CHANNELS: [&str; 2] = [PUSH_CHANNEL, IDLE_PUSH_CHANNEL];
/// Its producer key (`Authorization: Bearer`).
pub const PRODUCER_KEY: &str = "bench-producer-key-0123456789abcdef";

const JWT_SECRET: &str = "bench-jwt-secret-0123456789abcdef";

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

/// Starts a stack: Pushpin, the backend `options.behind` says, and the upstream (no ETags: the
/// channel's polls fetch the whole feed every time, as the scenarios measure).
pub async fn start(options: Options) -> anyhow::Result<Stack> {
    start_customized(options, |_, _| Ok(())).await
}

/// [`start`], with `customize` given the backend's settings and the stack's folder (its
/// `functions/` holds the process fetchers) before the backend starts.
pub async fn start_customized(
    options: Options,
    customize: impl FnOnce(&mut restream::config::Settings, &std::path::Path) -> anyhow::Result<()>,
) -> anyhow::Result<Stack> {
    let mut layout = Layout::new("rb")?;
    let upstream = Upstream::start_with(upstream::Options {
        etags: false,
        keep_alive: options.upstream_keep_alive,
    })
    .await?;
    layout.pushpin.message_rate = options.message_rate;
    if let Some(size) = options.client_buffer_size {
        layout.pushpin.client_buffer_size = size;
    }
    let mut settings = layout.settings(PublishVia::Zmq);
    restream_testkit::stack::lift_abuse_limits(&mut settings);
    if let Some(size) = options.client_buffer_size {
        // Bursts as large as three quarters of Pushpin's buffer go out unpaced.
        settings.pushpin.ws_burst_bytes = size / 4 * 3;
    }
    let (dir, backend_addr) = (&layout.dir, layout.backend_addr);
    let channels = dir.path().join("channels");
    std::fs::create_dir_all(&channels)?;
    std::fs::create_dir_all(dir.path().join("functions"))?;
    std::fs::write(channels.join("bench.toml"), channel_toml(options.interval))?;
    for name in PUSH_CHANNELS.iter().filter(|_| options.push) {
        let push = format!(
            "kind = \"push\"\nname = \"{name}\"\ndescription = \"a benchmark push channel\"\nmode = \"items\"\nid_field = \"id\"\n"
        );
        std::fs::write(channels.join(format!("{name}.toml")), push)?;
    }
    settings.fetchers.kinds = vec![FetcherKind::Http];
    settings.fetchers.dir = dir.path().join("functions");
    settings.fetchers.channels_dir = channels;
    settings.store.kind = StoreKind::Embedded {
        path: dir.path().join("items.redb"),
    };
    if let Some(seed) = &options.history {
        let push = format!(
            "kind = \"push\"\nname = \"{HISTORY_CHANNEL}\"\ndescription = \"the history benchmark's seeded channels\"\nmode = \"items\"\nid_field = \"id\"\n[params.n]\nrequired = true\n"
        );
        let file = settings
            .fetchers
            .channels_dir
            .join(format!("{HISTORY_CHANNEL}.toml"));
        std::fs::write(file, push)?;
        settings.store.kind = StoreKind::Embedded {
            path: seed.store.clone(),
        };
        settings.store.log_capacity = seed.max_events;
        // Every seeded event stays: this many per channel, whatever their age.
        let keep = restream::config::KindRetention {
            max_events: Some(seed.max_events),
            max_age_secs: Some(0),
        };
        let retention = &mut settings.history.retention;
        retention.insert(restream::history::ChannelKind::Push, keep);
    }
    settings.keys = KeysSettings::File {
        file: dir.path().join("keys.json"),
    };
    settings.log.filter = std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let mut keys = serde_json::Map::new();
    if options.auth {
        keys.insert(
            "_restream".into(),
            serde_json::json!({"jwt_secret": JWT_SECRET}),
        );
        let access = &mut settings.auth.access;
        access.insert("bench".into(), restream::auth::Access::Token);
    }
    for name in PUSH_CHANNELS.iter().filter(|_| options.push) {
        let key = serde_json::json!({ "producer_key": PRODUCER_KEY });
        keys.insert(name.to_string(), key);
    }
    if !keys.is_empty() {
        use std::os::unix::fs::PermissionsExt;
        let file = dir.path().join("keys.json");
        std::fs::write(&file, serde_json::Value::Object(keys).to_string())?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
    }
    customize(&mut settings, dir.path())?;
    let config = dir.path().join("restream.toml");
    std::fs::write(&config, settings.to_toml()?)?;
    let log = dir.path().join("backend.log");
    let spec = match options.behind {
        Behind::Restream => Spec::new("restream", restream_binary()?, log)
            .arg("serve")
            .arg("--config")
            .arg(&config),
        Behind::NullResponder => Spec::new("null-woh", std::env::current_exe()?, log)
            .arg("null-woh")
            .arg("--listen")
            .arg(backend_addr.to_string()),
    };
    let mut spec = spec.env("BENCH_BASE_URL", format!("http://{}", upstream.addr));
    spec.env_remove.push("RUST_LOG".into());
    // The backend would read it as a `bin` setting (`RESTREAM_*`) and refuse to start.
    spec.env_remove.push("RESTREAM_BIN".into());
    spec.stdout_to_log = false;
    spec.stop = Stop::Terminate(Duration::from_secs(5));
    let mut stack = layout
        .start(upstream, spec)
        .await
        .context("the benchmark stack did not start")?;
    if options.auth {
        let exp = restream::auth::now_unix() + 3600;
        let token =
            restream::auth::mint::hs256(JWT_SECRET.as_bytes(), None, &["bench".into()], exp)
                .map_err(anyhow::Error::msg)?;
        stack.ws_url = format!("{}?token={token}", stack.ws_url);
    }
    // `BENCH_KEEP_LOGS=DIR` keeps the backend's and Pushpin's logs for a look after the run.
    if let Some(dir) = std::env::var_os("BENCH_KEEP_LOGS") {
        stack.keep_logs_in(PathBuf::from(dir));
    }
    Ok(stack)
}
