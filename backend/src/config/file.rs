//! The settings as operators write them (TOML file, `RESTREAM_*` env vars) and the built-in
//! defaults merged underneath: flat sections, a `kind` beside the fields of every kind, times
//! in seconds. This is the wire format; `parse.rs` turns it into the typed [`Settings`].
//!
//! [`Settings`]: super::Settings

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Admin, Archive, Dev, FetcherKind, History, Limits, Log, LogFormat, PublishVia};
use crate::auth::Access;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    pub server: Server,
    pub pushpin: Pushpin,
    pub demand: Demand,
    pub fetchers: Fetchers,
    pub keys: Keys,
    pub store: Store,
    pub aws: Aws,
    pub log: Log,
    pub dev: Dev,
    pub cluster: Cluster,
    pub limits: Limits,
    pub state: State,
    pub auth: Auth,
    pub push: Push,
    pub history: History,
    pub admin: Admin,
    pub archive: Archive,
    pub declarative: super::Declarative,
}

/// What restream keeps about channels and how much the items and status API may read
/// (issue 17: strangers are bounded).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Seconds an inactive channel stays in memory (status board, last poll time).
    pub inactive_channel_memory_secs: u64,
    /// Items per page of `GET /channels/{name}/items` when `limit` is not given.
    pub items_page_default: usize,
    /// The largest `limit` the items API accepts.
    pub items_page_max: usize,
    /// Items the items/status API's read cache holds at most, over all channels (0: none).
    pub read_cache_items: usize,
    /// Bytes of channel snapshots kept to answer fresh WebSocket subscribes inline, over all
    /// channels (0: none; every snapshot is then published to its subscriber).
    #[serde(default = "default_snapshot_cache_bytes")]
    pub snapshot_cache_bytes: usize,
}

fn default_snapshot_cache_bytes() -> usize {
    8 * 1024 * 1024
}

/// Push channels (`kind = "push"` channel files): what one publish may carry and how long a
/// channel's writer outlives its last publish (docs/publishing.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Push {
    /// Largest request body of the publish API, in bytes.
    pub max_body_bytes: usize,
    /// Most items (or events, or deletes) one publish may carry.
    pub max_batch_items: usize,
    /// Idempotency keys remembered per channel: a retry is recognised while fewer than this
    /// many batches were committed to the channel after it.
    pub idempotency_keys: usize,
    /// Seconds a push channel's writer stays after its last publish when nobody subscribes.
    pub linger_secs: u64,
    /// Publishes waiting for one channel's writer at most; more get `busy` (503).
    pub max_pending_batches: usize,
}

/// Subscriber authentication (docs/security/auth.md). Empty strings mean unset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Access of channels neither `access` nor their fetcher's metadata decide.
    pub default_access: Access,
    /// Per channel name: `"public"` or `"token"`; wins over the fetcher's metadata.
    pub access: HashMap<String, Access>,
    /// A JWKS file with the RS256/ES256 public keys; empty = none.
    pub jwks_file: PathBuf,
    /// A JWKS URL with the RS256/ES256 public keys; empty = none.
    pub jwks_url: String,
    /// Seconds between reloads of the keys (JWKS and the key store's `jwt_secret`).
    pub refresh_secs: f64,
    /// Least seconds between two reloads caused by tokens naming an unknown `kid`.
    pub min_refresh_secs: f64,
    /// When set, a token's `aud` must be (or contain) it.
    pub audience: String,
    /// When set, a token's `iss` must equal it.
    pub issuer: String,
}

/// Several replicas sharing the work through DynamoDB leases (docs/scaling.md). Off by
/// default: one process polls every channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub enabled: bool,
    /// This replica's name in leases and logs; empty = `<hostname>-<random>`.
    pub replica_id: String,
    /// Where other replicas reach this one's backend port to hand over snapshot requests,
    /// e.g. `http://10.0.1.7:5000`; empty = `http://<server.listen>`.
    pub advertise_url: String,
    /// Seconds a lease (and a replica's membership) lasts unless renewed; renewed every third.
    pub lease_ttl_secs: f64,
    /// Shared by every replica (≥ 16 characters), required in cluster mode: `/internal/*`
    /// requests between replicas carry it. A secret.
    pub secret: String,
    /// The host other replicas reach this one at: empty = the host of `server.listen`
    /// (127.0.0.1 when that is a wildcard), a host name or IP address, or `ecs` = this task's
    /// private IPv4 from the ECS task metadata endpoint v4. The host of the default
    /// `advertise_url` and `{host}` in the templates below.
    pub advertise_host: String,
    /// This replica's Pushpin as the other replicas reach it, written into its membership
    /// record so every replica also publishes to (and reads the stats of) it; empty = not
    /// advertised. Its ZeroMQ PULL socket, e.g. `tcp://{host}:5560`.
    pub pushpin_publish_spec: String,
    /// Its HTTP publish base URL (for `pushpin.publish = "http"`), e.g. `http://{host}:5561`.
    pub pushpin_http_url: String,
    /// Its stats PUB socket, e.g. `tcp://{host}:5564`.
    pub pushpin_stats_spec: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: SocketAddr,
    /// Most seconds between Pushpin's keep-alive requests on idle connections (Pushpin enforces
    /// ≥ 20); each connection gets its own period in the last quarter (`woh::keep_alive_secs`).
    pub keep_alive_interval: u32,
    pub max_subscriptions_per_connection: usize,
    pub workers: usize,
    pub sse_keep_alive_secs: u32,
    /// Origins whose pages may use the API across origins (`https://app.example.com`), or
    /// `["*"]`; empty = no cross-origin access.
    pub cors_origins: Vec<String>,
    /// A private address serving only `GET /metrics` and `/healthz` to the operator's scraper
    /// (ECS: `0.0.0.0:9100`); empty = none.
    pub metrics_listen: String,
    /// Seconds of silence after which Pushpin sends a WebSocket client a ping frame (GRIP
    /// `keep-alive`); 0 = none. At most 3600.
    pub client_keep_alive_secs: u32,
}

/// Pushpin instances: one endpoint of each list per instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pushpin {
    pub publish: PublishVia,
    pub zmq_push_specs: Vec<String>,
    pub http_publish_urls: Vec<String>,
    pub stats_specs: Vec<String>,
    /// Pushpin's `sig_key` (a secret); empty = unset. At most one of this and `sig_key_file`.
    pub sig_key: String,
    /// A file holding Pushpin's `sig_key`; empty = unset.
    pub sig_key_file: PathBuf,
    /// WebSocket bytes per burst to Pushpin; longer bursts are paced (0 = no pacing).
    pub ws_burst_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Demand {
    pub hint_ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fetchers {
    pub kinds: Vec<FetcherKind>,
    pub dir: PathBuf,
    pub channels_dir: PathBuf,
    pub python: String,
    pub timeout_secs: f64,
    pub max_backoff_secs: f64,
    pub poll_interval_overrides: HashMap<String, f64>,
    pub lambda_prefix: String,
    pub refresh_secs: f64,
    /// Issue 17 hardening: extra variables passed to fetcher processes; the process cap.
    pub process_env: Vec<String>,
    pub max_processes: usize,
    /// The upstream budget of a fetcher that declares no `rate_limit`, in the metadata's form
    /// (`{ per_minute = 60 }`); empty = [`DEFAULT_RATE_LIMIT`](super::DEFAULT_RATE_LIMIT).
    pub default_rate_limit: BTreeMap<String, u64>,
    /// Per channel name, a budget that replaces the fetcher's declared one.
    pub rate_limit_overrides: HashMap<String, BTreeMap<String, u64>>,
    /// Issue 21: a budget's usage is written to the store at most this often (and at
    /// shutdown); a crash forgets at most this long of calls.
    pub budget_save_secs: f64,
    /// Issue 24: warm workers (`warm`) or a process per call (`oneshot`), and the workers'
    /// limits.
    pub process_mode: crate::fetcher::ProcessMode,
    pub workers_per_fetcher: usize,
    pub max_workers: usize,
    pub worker_max_calls: u64,
    pub worker_max_rss_mb: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeysKind {
    File,
    S3,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    pub kind: KeysKind,
    pub file: PathBuf,
    /// Only read when `kind = "s3"`; empty = unset.
    pub s3_bucket: String,
    pub s3_key: String,
    pub refresh_secs: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Embedded,
    Memory,
    Dynamodb,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Store {
    pub kind: StoreKind,
    pub path: PathBuf,
    pub log_capacity: u64,
    pub dynamodb_table: String,
    pub dynamodb_create_table: bool,
    pub dynamodb_log_ttl_secs: u64,
    /// Seconds after which an inactive channel's items, meta and change log are deleted
    /// (0: kept for ever).
    pub retention_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Aws {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub dynamodb_endpoint_url: Option<String>,
    pub s3_endpoint_url: Option<String>,
    pub lambda_endpoint_url: Option<String>,
    pub sqs_endpoint_url: Option<String>,
    pub max_attempts: u32,
    pub attempt_timeout_secs: f64,
}

impl Default for Aws {
    fn default() -> Aws {
        Aws {
            region: None,
            endpoint_url: None,
            dynamodb_endpoint_url: None,
            s3_endpoint_url: None,
            lambda_endpoint_url: None,
            sqs_endpoint_url: None,
            max_attempts: 5,
            attempt_timeout_secs: 10.0,
        }
    }
}

/// The built-in defaults, merged under the file and the environment.
impl Default for SettingsFile {
    fn default() -> SettingsFile {
        SettingsFile {
            server: Server {
                listen: "127.0.0.1:5000".parse().expect("valid"),
                keep_alive_interval: 30,
                max_subscriptions_per_connection: 20,
                workers: 2,
                sse_keep_alive_secs: 20,
                cors_origins: Vec::new(),
                metrics_listen: String::new(),
                client_keep_alive_secs: 30,
            },
            pushpin: Pushpin {
                publish: PublishVia::Zmq,
                zmq_push_specs: vec!["tcp://127.0.0.1:5560".into()],
                http_publish_urls: vec!["http://127.0.0.1:5561".into()],
                stats_specs: vec!["tcp://127.0.0.1:5564".into()],
                sig_key: String::new(),
                sig_key_file: PathBuf::new(),
                // Pushpin's default `client_buffer_size` is 8192.
                ws_burst_bytes: 6144,
            },
            demand: Demand { hint_ttl_secs: 60 },
            fetchers: Fetchers {
                kinds: vec![FetcherKind::Process, FetcherKind::Http],
                dir: "functions".into(),
                channels_dir: "channels".into(),
                python: "python3".into(),
                timeout_secs: 30.0,
                max_backoff_secs: 900.0,
                poll_interval_overrides: HashMap::new(),
                lambda_prefix: "restreamables_".into(),
                refresh_secs: 300.0,
                process_env: Vec::new(),
                max_processes: crate::fetcher::sandbox::DEFAULT_MAX_PROCESSES,
                // Empty = the built-in `{ per_minute = 60 }`: a map default would be merged
                // key by key with the operator's (figment), adding windows they did not write.
                default_rate_limit: BTreeMap::new(),
                rate_limit_overrides: HashMap::new(),
                budget_save_secs: 5.0,
                process_mode: crate::fetcher::ProcessMode::Warm,
                workers_per_fetcher: crate::fetcher::worker::DEFAULT_WORKERS_PER_FETCHER,
                max_workers: crate::fetcher::worker::DEFAULT_MAX_WORKERS,
                worker_max_calls: crate::fetcher::worker::DEFAULT_WORKER_MAX_CALLS,
                worker_max_rss_mb: crate::fetcher::worker::DEFAULT_WORKER_MAX_RSS_MB,
            },
            keys: Keys {
                kind: KeysKind::File,
                file: "keys.json".into(),
                s3_bucket: String::new(),
                s3_key: "keys.json".into(),
                refresh_secs: 60.0,
            },
            store: Store {
                kind: StoreKind::Embedded,
                path: "restream-data/items.redb".into(),
                log_capacity: crate::store::DEFAULT_LOG_CAPACITY,
                dynamodb_table: "restream".into(),
                dynamodb_create_table: false,
                dynamodb_log_ttl_secs: super::DEFAULT_DYNAMODB_LOG_TTL.as_secs(),
                retention_secs: 7 * 24 * 3600,
            },
            aws: Aws::default(),
            log: Log {
                format: LogFormat::Text,
                filter: "info".into(),
                emf_interval_secs: 0,
                emf_namespace: "restream".into(),
                emf_service: "restream".into(),
            },
            dev: Dev {
                public_listen: "127.0.0.1:7999".parse().expect("valid"),
                pushpin_base_port: 5560,
                run_dir: std::env::temp_dir().join("restream-dev"),
            },
            cluster: Cluster {
                enabled: false,
                replica_id: String::new(),
                advertise_url: String::new(),
                lease_ttl_secs: 10.0,
                secret: String::new(),
                advertise_host: String::new(),
                pushpin_publish_spec: String::new(),
                pushpin_http_url: String::new(),
                pushpin_stats_spec: String::new(),
            },
            state: State {
                inactive_channel_memory_secs: 3600,
                items_page_default: 100,
                items_page_max: 1000,
                read_cache_items: 10_000,
                snapshot_cache_bytes: default_snapshot_cache_bytes(),
            },
            limits: Limits::default(),
            auth: Auth {
                default_access: Access::Public,
                access: HashMap::new(),
                jwks_file: PathBuf::new(),
                jwks_url: String::new(),
                refresh_secs: 300.0,
                min_refresh_secs: 10.0,
                audience: String::new(),
                issuer: String::new(),
            },
            push: Push {
                max_body_bytes: 1 << 20,
                max_batch_items: 1000,
                idempotency_keys: 100,
                linger_secs: 60,
                max_pending_batches: 64,
            },
            history: History::default(),
            admin: Admin::default(),
            archive: Archive::default(),
            declarative: Default::default(),
        }
    }
}
