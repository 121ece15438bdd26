//! The settings as operators write them (TOML file, `RESTREAM_*` env vars) and the built-in
//! defaults merged underneath: flat sections, a `kind` beside the fields of every kind, times
//! in seconds. This is the wire format; `parse.rs` turns it into the typed [`Settings`].
//!
//! [`Settings`]: super::Settings

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Dev, FetcherKind, Log, LogFormat, PublishVia, Pushpin};
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
    pub auth: Auth,
}

/// Subscriber authentication (docs/security-auth.md). Empty strings mean unset.
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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: SocketAddr,
    /// Seconds between Pushpin's keep-alive requests on idle connections (Pushpin enforces ≥ 20).
    pub keep_alive_interval: u32,
    pub max_subscriptions_per_connection: usize,
    pub workers: usize,
    pub sse_keep_alive_secs: u32,
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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Aws {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub dynamodb_endpoint_url: Option<String>,
    pub s3_endpoint_url: Option<String>,
    pub lambda_endpoint_url: Option<String>,
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
            },
            pushpin: Pushpin {
                publish: PublishVia::Zmq,
                zmq_push_specs: vec!["tcp://127.0.0.1:5560".into()],
                http_publish_urls: vec!["http://127.0.0.1:5561".into()],
                stats_specs: vec!["tcp://127.0.0.1:5564".into()],
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
            },
            aws: Aws::default(),
            log: Log {
                format: LogFormat::Text,
                filter: "info".into(),
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
            },
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
        }
    }
}
