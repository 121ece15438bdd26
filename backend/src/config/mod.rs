//! Configuration: built-in defaults, then an optional TOML file, then `RESTREAM_*` env vars,
//! parsed once into typed [`Settings`].
//!
//! Env vars use `__` between section and key: `RESTREAM_SERVER__LISTEN=0.0.0.0:5000`,
//! `RESTREAM_PUSHPIN__PUBLISH=http`. The layout:
//! - `file.rs`: the form operators write (flat sections, `kind` beside every kind's fields,
//!   seconds) and the built-in defaults;
//! - `parse.rs`: file form → typed settings (every check, with errors naming the key) and back;
//! - here: the typed settings (`Duration`s, `Option`s, per-kind enums) and loading.

mod admin;
mod advertise;
mod archive;
mod declarative;
mod file;
mod history;
mod limits;
mod log;
#[cfg(test)]
mod ops_tests;
mod parse;
mod secret;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use admin::Admin;
pub use advertise::{render, url_host, AdvertiseHost, PushpinTemplates};
pub use archive::{Archive, ReadFrom, SinkEntry};
pub use declarative::Declarative;
use file::SettingsFile;
pub use history::{History, KindRetention};
pub use limits::{ClientAddressFrom, Limits};
pub use log::{Emf, Log, LogFormat};
pub use parse::SettingsError;
pub use secret::{Secret, SigKey, SigKeyError, MIN_SECRET_LEN};

use crate::edge::AllowedOrigins;

/// Everything the service reads from its configuration. Serializes to (and deserializes
/// from) the file form, so `Settings::load` of `to_toml()`'s output gives the same value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "SettingsFile", into = "SettingsFile")]
pub struct Settings {
    pub server: Server,
    pub pushpin: Pushpin,
    pub demand: DemandSettings,
    pub fetchers: Fetchers,
    pub keys: KeysSettings,
    pub store: StoreSettings,
    pub aws: AwsSettings,
    pub log: Log,
    pub dev: Dev,
    pub limits: Limits,
    pub state: StateSettings,
    pub auth: AuthSettings,
    pub push: PushSettings,
    pub history: History,
    pub admin: Admin,
    pub archive: Archive,
    pub declarative: Declarative,
}

/// What restream keeps about channels and how much the items and status API read.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSettings {
    /// How long an inactive channel stays in memory (status board, last poll time); ≥ 1 s.
    pub inactive_channel_memory: Duration,
    /// Items per page of the items API unless `limit` says (1 ..= `items_page_max`).
    pub items_page_default: usize,
    /// The largest `limit` the items API accepts (≥ 1).
    pub items_page_max: usize,
    /// Items the read cache holds at most, over all channels (0: no cache).
    pub read_cache_items: usize,
    /// Bytes of snapshots kept for fresh WebSocket subscribes (0: none).
    pub snapshot_cache_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Where the backend listens for Pushpin's WebSocket-over-HTTP requests.
    pub listen: SocketAddr,
    /// Between Pushpin's keep-alive requests on idle connections (Pushpin enforces ≥ 20 s);
    /// whole seconds, as Pushpin's header carries them.
    pub keep_alive_interval: Duration,
    /// Subscriptions a client may hold; Pushpin's `connection_subscription_max` must be one
    /// more (each connection also holds its private channel).
    pub max_subscriptions_per_connection: NonZeroUsize,
    /// HTTP worker threads.
    pub workers: NonZeroUsize,
    /// Silence after which an SSE stream gets a keep-alive comment (whole seconds, ≥ 1).
    pub sse_keep_alive: Duration,
    /// Browser pages (origins) that may use the HTTP API, SSE and WebSocket from another
    /// origin (`server.cors_origins`: exact origins, or `["*"]`); empty = none, no CORS.
    pub cors_origins: AllowedOrigins,
    /// A second, private listener serving only `GET /metrics`, `/healthz` and the admin API
    /// (`/admin/*`, which still needs its token), without the `Grip-Sig` distinction (it is never routed by Pushpin or a load balancer: only the
    /// operator's scraper may reach it); `None` = none.
    pub metrics_listen: Option<SocketAddr>,
    /// Silence after which Pushpin sends a WebSocket client a ping frame (a GRIP
    /// `keep-alive`, whole seconds, ≤ [`MAX_CLIENT_KEEP_ALIVE`]); `None` = none.
    pub client_keep_alive: Option<Duration>,
}

/// The longest `server.client_keep_alive_secs`: keep-alives exist to beat idle timeouts
/// (an AWS ALB's default is 60 s, restream's terraform sets 120 s), far below an hour.
pub const MAX_CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PublishVia {
    Zmq,
    Http,
}

/// The endpoint lists of one instance each, the one `publish` names never empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushpin {
    pub publish: PublishVia,
    /// One ZeroMQ PULL endpoint per Pushpin instance.
    pub zmq_push_specs: Vec<String>,
    /// One HTTP publish base URL per Pushpin instance (also its control API, for `/readyz`).
    pub http_publish_urls: Vec<String>,
    /// One stats PUB endpoint per Pushpin instance (needs `stats_format=json`).
    pub stats_specs: Vec<String>,
    /// The key every Pushpin signs its `Grip-Sig` with (its `sig_key`); `serve` refuses to
    /// start without one (`restream dev` generates one per run).
    pub sig_key: Option<SigKey>,
    /// Most WebSocket message bytes handed to Pushpin for one burst; a longer burst goes in
    /// chunks this size, 30 ms apart (0: no pacing). Keep it below Pushpin's
    /// `client_buffer_size`, beyond which Pushpin drops what a connection has not drained.
    pub ws_burst_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DemandSettings {
    /// How long a subscribe seen in a WOH request keeps its channel active without stats
    /// (whole seconds).
    pub hint_ttl: Duration,
}

/// Where fetchers come from; several kinds can serve side by side.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FetcherKind {
    /// `functions/<dir>/main.py`, run locally, one process per call.
    Process,
    /// Declarative channels, `channels/*.toml`.
    Http,
    /// AWS Lambda functions named `<lambda_prefix><dir>`.
    Lambda,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fetchers {
    /// Which kinds to load (at least one); on a name clash the earlier kind wins.
    pub kinds: Vec<FetcherKind>,
    /// Folder holding one sub-folder per process fetcher (`<dir>/main.py`).
    pub dir: PathBuf,
    /// Folder of declarative `http` channels (`*.toml`); missing means none.
    pub channels_dir: PathBuf,
    pub python: String,
    pub timeout: Duration,
    /// Longest wait between attempts while an upstream keeps failing (backoff cap, ≥ 1 s).
    pub max_backoff: Duration,
    /// Per channel name, a poll interval (≥ 50 ms) that replaces the fetcher's own.
    pub poll_interval_overrides: HashMap<String, Duration>,
    /// Lambda fetchers are the functions whose name starts with this (Apex: `{project}_`).
    pub lambda_prefix: String,
    /// Between re-discoveries of Lambda fetchers (list + `metadata`), in the background,
    /// never on the request path (≥ 1 s).
    pub refresh: Duration,
    /// Variable names passed to fetcher processes beside the base allowlist (`PATH`, `LANG`,
    /// …) and each fetcher's declared `env`; never `AWS_*` or `RESTREAM_*`. Default none.
    pub process_env: Vec<String>,
    /// At most this many fetcher processes run at once (≥ 1, default 8); a call waits for a
    /// slot at most `timeout`, and its own `timeout` starts when its process starts.
    pub max_processes: usize,
    /// The upstream budget of a fetcher that declares none (`fetchers.default_rate_limit`).
    pub default_rate_limit: Vec<RateWindow>,
    /// Per channel name, a budget that replaces the fetcher's declared one.
    pub rate_limit_overrides: HashMap<String, Vec<RateWindow>>,
    /// A budget's usage is saved at most this often (> 0, default 5 s) and at shutdown; a
    /// crash forgets at most this long of upstream calls.
    pub budget_save: Duration,
    /// Warm workers (default) or a Python process per call (`fetchers.process_mode`).
    pub process_mode: crate::fetcher::ProcessMode,
    /// Per process fetcher: warm workers (`fetchers.workers_per_fetcher`, ≥ 1, default 2),
    /// replaced after `fetchers.worker_max_calls` calls (≥ 1, default 1000) or once a call
    /// leaves one above `fetchers.worker_max_rss_mb` (≥ 16, default 256).
    pub workers: crate::fetcher::WorkerSettings,
    /// At most this many warm workers live at once over all fetchers (≥ 1, default 16); the
    /// longest-idle one is stopped to make room.
    pub max_workers: usize,
}

/// At most `.1` upstream calls in any `.0`.
pub type RateWindow = (Duration, u64);

/// `fetchers.default_rate_limit` unless set: 60 upstream calls a minute.
pub const DEFAULT_RATE_LIMIT: RateWindow = (Duration::from_secs(60), 60);

/// Where the fetchers' API keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum KeysSettings {
    /// A local JSON file `{"<channel>": {"<key name>": "<value>"}}`; missing means no keys.
    File { file: PathBuf },
    /// One JSON object in S3 (the original restream's layout), checked every `refresh`
    /// (≥ 1 s) for a new version (ETag).
    S3 {
        bucket: String,
        key: String,
        refresh: Duration,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    pub kind: StoreKind,
    /// Events kept per channel for `since` resume.
    pub log_capacity: u64,
    /// After how long an inactive channel's stored state is deleted; `None`: kept for ever.
    pub retention: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StoreKind {
    /// A crash-safe file on local disk (redb).
    Embedded { path: PathBuf },
    /// Nothing survives a restart; for experiments.
    Memory,
    /// One DynamoDB table (production; see docs/storage.md).
    Dynamodb(DynamodbSettings),
}

/// How long change-log entries live in DynamoDB unless `store.dynamodb_log_ttl_secs` says.
pub const DEFAULT_DYNAMODB_LOG_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, PartialEq)]
pub struct DynamodbSettings {
    pub table: String,
    /// Create the table at startup when it is missing (local emulators; production tables
    /// come from terraform).
    pub create_table: bool,
    /// How long a change-log entry lives before DynamoDB's TTL may delete it (whole seconds).
    pub log_ttl: Duration,
    /// Cluster mode, which only exists on DynamoDB: the replicas share its table and leases.
    pub cluster: Option<ClusterSettings>,
}

/// Several replicas sharing the work through DynamoDB leases (docs/scaling.md).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// This replica's name in leases and logs; `None` = `<hostname>-<random>`.
    pub replica_id: Option<String>,
    /// Where other replicas reach this one's backend port to hand over snapshot requests,
    /// e.g. `http://10.0.1.7:5000`; `None` = `http://<advertise host>:<server.listen port>`.
    pub advertise_url: Option<String>,
    /// How long a lease (and a replica's membership) lasts unless renewed (≥ 1 s); renewed
    /// every third.
    pub lease_ttl: Duration,
    /// Shared by every replica: `/internal/*` requests carry it (`Restream-Cluster-Secret`).
    pub secret: Secret,
    /// The host other replicas reach this one at: the host of the default `advertise_url`
    /// and `{host}` in the Pushpin templates.
    pub advertise_host: AdvertiseHost,
    /// This replica's own Pushpin as the other replicas reach it (templates), advertised in
    /// its membership record.
    pub pushpin: PushpinTemplates,
}

/// Shared AWS settings; credentials always come from the SDK's standard chain. No string
/// here is empty (the file form's empty string parses to `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct AwsSettings {
    /// Region; unset = the standard chain (`AWS_REGION`, profile, instance metadata).
    pub region: Option<String>,
    /// Endpoint for every AWS service, e.g. a local emulator; unset = AWS itself.
    pub endpoint_url: Option<String>,
    pub dynamodb_endpoint_url: Option<String>,
    pub s3_endpoint_url: Option<String>,
    pub lambda_endpoint_url: Option<String>,
    /// The SQS endpoint of push channels' queue consumers; unset = `endpoint_url`.
    pub sqs_endpoint_url: Option<String>,
    /// Attempts per request (first try included) before throttling or 5xx errors are
    /// reported; retries back off exponentially with jitter.
    pub max_attempts: u32,
    /// How long one attempt may take (a Lambda invoke gets at least `fetchers.timeout`).
    pub attempt_timeout: Duration,
}

impl Default for AwsSettings {
    fn default() -> AwsSettings {
        Settings::default().aws
    }
}

/// Settings for `restream dev`, which runs its own Pushpin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dev {
    /// Public WebSocket/HTTP address of the Pushpin started by `restream dev`.
    pub public_listen: SocketAddr,
    /// First of five consecutive Pushpin ports: publish PULL, HTTP publish, SUB, command, stats.
    pub pushpin_base_port: u16,
    /// Pushpin's runtime folder (config, sockets, logs); keep the path short.
    pub run_dir: PathBuf,
}

/// Push channels: bounds of one publish, idempotency memory and the writer's linger
/// (docs/publishing.md).
#[derive(Debug, Clone, PartialEq)]
pub struct PushSettings {
    /// Largest publish request body, in bytes (≥ 1).
    pub max_body_bytes: usize,
    /// Most entries one publish may carry (≥ 1).
    pub max_batch_items: usize,
    /// Idempotency keys remembered per channel (0: `Idempotency-Key` is ignored).
    pub idempotency_keys: usize,
    /// How long a push channel's writer outlives its last publish without subscribers (≥ 1 s).
    pub linger: Duration,
    /// Publishes queued for one channel's writer at most (≥ 1).
    pub max_pending_batches: usize,
}

/// Subscriber authentication: which channels need a token and the keys to check one with
/// (docs/security/auth.md). The HS256 secret is the key store's
/// `{"_restream": {"jwt_secret": "..."}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    /// Access of channels that neither `access` nor their fetcher's metadata decide.
    pub default_access: crate::auth::Access,
    /// Per channel name, overriding the fetcher's metadata.
    pub access: HashMap<String, crate::auth::Access>,
    /// RS256/ES256 public keys, from a file or a URL.
    pub jwks: Option<crate::auth::JwksSource>,
    /// Between reloads of the keys (≥ 1 s).
    pub refresh: Duration,
    /// Least time between reloads caused by an unknown `kid` (≥ 1 s).
    pub min_refresh: Duration,
    pub audience: Option<String>,
    pub issuer: Option<String>,
}

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Unreadable file, unknown key, a value of the wrong type.
    #[error(transparent)]
    Read(#[from] Box<figment::Error>),
    #[error(transparent)]
    Invalid(#[from] SettingsError),
}

impl Default for Settings {
    /// The built-in defaults.
    fn default() -> Settings {
        Settings::try_from(SettingsFile::default()).expect("the built-in defaults are valid")
    }
}

impl Settings {
    /// Defaults, then `file` (if given), then `RESTREAM_*` env vars.
    pub fn load(file: Option<&Path>) -> Result<Settings, LoadError> {
        let mut fig = Figment::from(Serialized::defaults(SettingsFile::default()));
        if let Some(f) = file {
            fig = fig.merge(Toml::file_exact(f));
        }
        let form: SettingsFile = fig
            // RESTREAM_CONFIG names the file itself (see main.rs) and RESTREAM_PUBLISH_TOKEN is
            // `restream publish`'s credential: neither is a setting.
            .merge(
                Env::prefixed("RESTREAM_")
                    .ignore(&["CONFIG", "PUBLISH_TOKEN"])
                    .split("__"),
            )
            .extract()
            .map_err(Box::new)?;
        Ok(Settings::try_from(form)?)
    }

    /// These settings with every secret replaced by `<redacted>`, for display.
    pub fn redacted(&self) -> Settings {
        let mut s = self.clone();
        let hidden = || Secret::new("<redacted>");
        if let Some(SigKey::Value(key)) = &mut s.pushpin.sig_key {
            *key = hidden();
        }
        if let StoreKind::Dynamodb(DynamodbSettings {
            cluster: Some(c), ..
        }) = &mut s.store.kind
        {
            c.secret = hidden();
        }
        if let Some(token) = &mut s.admin.token {
            *token = hidden();
        }
        s
    }

    /// These settings as a complete TOML file (the form `load` reads), for harnesses that
    /// start the binary.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(&SettingsFile::from(self.clone()))
    }
}
