//! Configuration: built-in defaults, then an optional TOML file, then `RESTREAM_*` env vars.
//!
//! Env vars use `__` between section and key: `RESTREAM_SERVER__LISTEN=0.0.0.0:5000`,
//! `RESTREAM_PUSHPIN__PUBLISH=http`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
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
    pub cluster: ClusterSettings,
}

/// Several replicas sharing the work through DynamoDB leases (docs/scaling.md). Off by
/// default: one process polls every channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
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
    /// Where the backend listens for Pushpin's WebSocket-over-HTTP requests.
    pub listen: SocketAddr,
    /// Seconds between Pushpin's keep-alive requests on idle connections (Pushpin enforces ≥ 20).
    pub keep_alive_interval: u32,
    /// Subscriptions a client may hold; Pushpin's `connection_subscription_max` must be one
    /// more (each connection also holds its private channel).
    pub max_subscriptions_per_connection: usize,
    /// HTTP worker threads.
    pub workers: usize,
    /// Seconds of silence after which an SSE stream gets a keep-alive comment.
    pub sse_keep_alive_secs: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PublishVia {
    Zmq,
    Http,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pushpin {
    pub publish: PublishVia,
    /// One ZeroMQ PULL endpoint per Pushpin instance.
    pub zmq_push_specs: Vec<String>,
    /// One HTTP publish base URL per Pushpin instance.
    pub http_publish_urls: Vec<String>,
    /// One stats PUB endpoint per Pushpin instance (needs `stats_format=json`).
    pub stats_specs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DemandSettings {
    /// How long a subscribe seen in a WOH request keeps its channel active without stats.
    pub hint_ttl_secs: u64,
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fetchers {
    /// Which kinds to load; on a name clash the earlier kind in this list wins.
    pub kinds: Vec<FetcherKind>,
    /// Folder holding one sub-folder per process fetcher (`<dir>/main.py`).
    pub dir: PathBuf,
    /// Folder of declarative `http` channels (`*.toml`); missing means none.
    pub channels_dir: PathBuf,
    pub python: String,
    pub timeout_secs: f64,
    /// Longest wait between attempts while an upstream keeps failing (backoff cap).
    pub max_backoff_secs: f64,
    /// Per channel name, a poll interval in seconds that replaces the fetcher's own.
    pub poll_interval_overrides: HashMap<String, f64>,
    /// Lambda fetchers are the functions whose name starts with this (Apex: `{project}_`).
    pub lambda_prefix: String,
    /// Seconds between re-discoveries of Lambda fetchers (list + `metadata`), in the
    /// background, never on the request path.
    pub refresh_secs: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeysKind {
    /// A local JSON file.
    File,
    /// One JSON object in S3 (the original restream's layout).
    S3,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeysSettings {
    pub kind: KeysKind,
    /// JSON file `{"<channel>": {"<key name>": "<value>"}}`; missing means no keys.
    pub file: PathBuf,
    /// Bucket of the keys object (`kind = "s3"`).
    pub s3_bucket: String,
    /// Key of the keys object, same JSON layout as the file.
    pub s3_key: String,
    /// Seconds between checks of the keys object for a new version (ETag).
    pub refresh_secs: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A crash-safe file on local disk (redb).
    Embedded,
    /// Nothing survives a restart; for experiments.
    Memory,
    /// One DynamoDB table (production; see docs/storage.md).
    Dynamodb,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub kind: StoreKind,
    /// File of the embedded store.
    pub path: PathBuf,
    /// Events kept per channel for `since` resume.
    pub log_capacity: u64,
    /// The DynamoDB table (`kind = "dynamodb"`).
    pub dynamodb_table: String,
    /// Create the table at startup when it is missing (local emulators; production tables
    /// come from terraform).
    pub dynamodb_create_table: bool,
    /// Seconds a change-log entry lives before DynamoDB's TTL may delete it.
    pub dynamodb_log_ttl_secs: u64,
}

/// Shared AWS settings; credentials always come from the SDK's standard chain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// Region; unset = the standard chain (`AWS_REGION`, profile, instance metadata).
    pub region: Option<String>,
    /// Endpoint for every AWS service, e.g. a local emulator; unset = AWS itself.
    pub endpoint_url: Option<String>,
    pub dynamodb_endpoint_url: Option<String>,
    pub s3_endpoint_url: Option<String>,
    pub lambda_endpoint_url: Option<String>,
    /// Attempts per request (first try included) before throttling or 5xx errors are
    /// reported; retries back off exponentially with jitter.
    pub max_attempts: u32,
    /// Seconds one attempt may take (a Lambda invoke gets at least `fetchers.timeout_secs`).
    pub attempt_timeout_secs: f64,
}

impl Default for AwsSettings {
    fn default() -> AwsSettings {
        AwsSettings {
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

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub format: LogFormat,
    /// `tracing` filter, e.g. `info,restream=debug`; `RUST_LOG` wins when set.
    pub filter: String,
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

impl Default for Settings {
    fn default() -> Settings {
        Settings {
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
            demand: DemandSettings { hint_ttl_secs: 60 },
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
            keys: KeysSettings {
                kind: KeysKind::File,
                file: "keys.json".into(),
                s3_bucket: String::new(),
                s3_key: "keys.json".into(),
                refresh_secs: 60.0,
            },
            store: StoreSettings {
                kind: StoreKind::Embedded,
                path: "restream-data/items.redb".into(),
                log_capacity: crate::store::DEFAULT_LOG_CAPACITY,
                dynamodb_table: "restream".into(),
                dynamodb_create_table: false,
                dynamodb_log_ttl_secs: 7 * 24 * 3600,
            },
            aws: AwsSettings::default(),
            log: Log {
                format: LogFormat::Text,
                filter: "info".into(),
            },
            dev: Dev {
                public_listen: "127.0.0.1:7999".parse().expect("valid"),
                pushpin_base_port: 5560,
                run_dir: std::env::temp_dir().join("restream-dev"),
            },
            cluster: ClusterSettings {
                enabled: false,
                replica_id: String::new(),
                advertise_url: String::new(),
                lease_ttl_secs: 10.0,
            },
        }
    }
}

impl Settings {
    /// Defaults, then `file` (if given), then `RESTREAM_*` env vars.
    pub fn load(file: Option<&Path>) -> Result<Settings, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(f) = file {
            fig = fig.merge(Toml::file_exact(f));
        }
        let settings: Settings = fig
            // RESTREAM_CONFIG names the file itself (see main.rs), it is not a setting.
            .merge(Env::prefixed("RESTREAM_").ignore(&["CONFIG"]).split("__"))
            .extract()
            .map_err(Box::new)?;
        settings
            .validate()
            .map_err(|m| Box::new(figment::Error::from(m)))?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), String> {
        if self.server.max_subscriptions_per_connection == 0 {
            return Err("server.max_subscriptions_per_connection must be at least 1".into());
        }
        if self.server.sse_keep_alive_secs == 0 {
            return Err("server.sse_keep_alive_secs must be at least 1".into());
        }
        if self.fetchers.timeout_secs.is_nan() || self.fetchers.timeout_secs <= 0.0 {
            return Err("fetchers.timeout_secs must be positive".into());
        }
        if self.fetchers.max_backoff_secs.is_nan() || self.fetchers.max_backoff_secs < 1.0 {
            return Err("fetchers.max_backoff_secs must be at least 1".into());
        }
        if let Some((name, _)) = self
            .fetchers
            .poll_interval_overrides
            .iter()
            .find(|(_, s)| s.is_nan() || **s < 0.05)
        {
            return Err(format!(
                "fetchers.poll_interval_overrides.{name} must be at least 0.05 seconds"
            ));
        }
        if self.fetchers.kinds.is_empty() {
            return Err("fetchers.kinds must name at least one of process, http, lambda".into());
        }
        if self.fetchers.refresh_secs.is_nan() || self.fetchers.refresh_secs < 1.0 {
            return Err("fetchers.refresh_secs must be at least 1".into());
        }
        if self.keys.kind == KeysKind::S3 && self.keys.s3_bucket.is_empty() {
            return Err("keys.s3_bucket is required when keys.kind = \"s3\"".into());
        }
        if self.keys.refresh_secs.is_nan() || self.keys.refresh_secs < 1.0 {
            return Err("keys.refresh_secs must be at least 1".into());
        }
        if self.store.kind == StoreKind::Dynamodb && self.store.dynamodb_table.is_empty() {
            return Err("store.dynamodb_table is required when store.kind = \"dynamodb\"".into());
        }
        if self.aws.attempt_timeout_secs.is_nan() || self.aws.attempt_timeout_secs <= 0.0 {
            return Err("aws.attempt_timeout_secs must be positive".into());
        }
        if self.cluster.enabled && self.store.kind != StoreKind::Dynamodb {
            return Err("cluster.enabled needs store.kind = \"dynamodb\" (the replicas share its table and leases)".into());
        }
        if self.cluster.lease_ttl_secs.is_nan() || self.cluster.lease_ttl_secs < 1.0 {
            return Err("cluster.lease_ttl_secs must be at least 1".into());
        }
        let specs = match self.pushpin.publish {
            PublishVia::Zmq => &self.pushpin.zmq_push_specs,
            PublishVia::Http => &self.pushpin.http_publish_urls,
        };
        if specs.is_empty() {
            return Err("pushpin: at least one publish endpoint is required".into());
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's own error type
mod tests {
    use super::*;

    #[test]
    fn file_and_env_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("r.toml", "[server]\nkeep_alive_interval = 25\n[fetchers.poll_interval_overrides]\n\"hn-top\" = 2.5\n")?;
            jail.set_env("RESTREAM_PUSHPIN__PUBLISH", "http");
            let s = Settings::load(Some(Path::new("r.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(s.server.keep_alive_interval, 25);
            assert_eq!(s.pushpin.publish, PublishVia::Http);
            assert_eq!(s.fetchers.poll_interval_overrides["hn-top"], 2.5);
            assert_eq!(s.server.max_subscriptions_per_connection, 20);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[server]\nlisen = \"x\"\n")?;
            let e = Settings::load(Some(Path::new("bad.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("lisen"), "{e}");
            jail.create_file(
                "zero.toml",
                "[server]\nmax_subscriptions_per_connection = 0\n",
            )?;
            assert!(Settings::load(Some(Path::new("zero.toml"))).is_err());
            Ok(())
        });
    }
}
