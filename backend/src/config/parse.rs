//! Between the file form and the typed settings: parsing (every check happens here, once, and
//! names the key at fault) and the way back, so that typed settings serialize to a file that
//! loads into the same settings.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use super::file::{self, SettingsFile};
use super::{
    AdvertiseHost, AuthSettings, AwsSettings, ClusterSettings, DemandSettings, DynamodbSettings,
    Fetchers, KeysSettings, PublishVia, PushSettings, Pushpin, RateWindow, Secret, Server,
    Settings, SigKey, StateSettings, StoreKind, StoreSettings,
};
use crate::edge::AllowedOrigins;

/// A setting the file form can hold but the service cannot run with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    #[error("{key} must be at least 1")]
    BelowOne { key: &'static str },
    #[error("{key} must be at least {min}")]
    AtLeast { key: &'static str, min: u64 },
    #[error("{key} must be positive")]
    NotPositive { key: &'static str },
    #[error("{key} is too large")]
    TooLarge { key: &'static str },
    #[error("fetchers.poll_interval_overrides.{channel} must be at least 0.05 seconds")]
    PollIntervalTooShort { channel: String },
    #[error("fetchers.kinds must name at least one of process, http, lambda")]
    NoFetcherKinds,
    #[error("{key} is required when {kind_key} = \"{kind}\"")]
    Required {
        key: &'static str,
        kind_key: &'static str,
        kind: &'static str,
    },
    #[error(
        "cluster.enabled needs store.kind = \"dynamodb\" (the replicas share its table and leases)"
    )]
    ClusterNeedsDynamodb,
    /// Settings that need AWS in a binary built without the `aws` feature.
    #[error("{0}")]
    AwsNotBuilt(String),
    #[error("pushpin: at least one publish endpoint is required")]
    NoPublishEndpoint,
    #[error("fetchers.process_env: {name:?} {problem}")]
    ProcessEnv { name: String, problem: &'static str },
    #[error("server.cors_origins: {0}")]
    BadOrigin(String),
    #[error("{key} is too weak: at least {min} characters, not `changeme` (generate one: openssl rand -hex 32)", min = super::MIN_SECRET_LEN)]
    WeakSecret { key: &'static str },
    #[error("set only one of {first} and {second}")]
    BothSet {
        first: &'static str,
        second: &'static str,
    },
    #[error("cluster.secret is required in cluster mode: every replica sets the same one, and /internal/* requests between replicas must carry it")]
    ClusterNeedsSecret,
    #[error("{key}: {problem}")]
    RateLimit { key: String, problem: String },
    #[error("set at most one of {a} and {b}")]
    OnlyOne { a: &'static str, b: &'static str },
    #[error("{key} must be an http:// or https:// URL")]
    NotHttpUrl { key: &'static str },
    #[error("auth.access.{name:?} is not a channel name")]
    NotAChannelName { name: String },
    #[error("cluster.advertise_host must be empty, `ecs`, or a host name or IP address (no scheme, no port)")]
    BadAdvertiseHost,
    #[error("{key} must be empty or look like {example} ({{host}} stands for the advertise host)")]
    BadTemplate {
        key: &'static str,
        example: &'static str,
    },
    #[error("{key} must be an address like 0.0.0.0:9100, or empty for none")]
    NotAnAddress { key: &'static str },
    #[error("{key} must differ from {other}")]
    SameAddress {
        key: &'static str,
        other: &'static str,
    },
    #[error("{key}: {problem}")]
    Invalid {
        key: &'static str,
        problem: &'static str,
    },
}

/// The shortest poll interval an override may ask for.
const MIN_POLL_INTERVAL: f64 = 0.05;

fn duration(key: &'static str, secs: f64) -> Result<Duration, SettingsError> {
    Duration::try_from_secs_f64(secs).map_err(|_| SettingsError::TooLarge { key })
}

fn positive(key: &'static str, secs: f64) -> Result<Duration, SettingsError> {
    if secs.is_nan() || secs <= 0.0 {
        return Err(SettingsError::NotPositive { key });
    }
    duration(key, secs)
}

fn at_least_one(key: &'static str, secs: f64) -> Result<Duration, SettingsError> {
    if secs.is_nan() || secs < 1.0 {
        return Err(SettingsError::BelowOne { key });
    }
    duration(key, secs)
}

/// `None` for the empty string, which the file form uses for "unset".
fn non_empty(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

fn server(s: file::Server) -> Result<Server, SettingsError> {
    let max_subscriptions =
        NonZeroUsize::new(s.max_subscriptions_per_connection).ok_or(SettingsError::BelowOne {
            key: "server.max_subscriptions_per_connection",
        })?;
    if s.sse_keep_alive_secs == 0 {
        return Err(SettingsError::BelowOne {
            key: "server.sse_keep_alive_secs",
        });
    }
    let metrics_listen: Option<std::net::SocketAddr> = match s.metrics_listen.trim() {
        "" => None,
        text => Some(text.parse().map_err(|_| SettingsError::NotAnAddress {
            key: "server.metrics_listen",
        })?),
    };
    if metrics_listen == Some(s.listen) {
        return Err(SettingsError::SameAddress {
            key: "server.metrics_listen",
            other: "server.listen",
        });
    }
    let client_keep_alive = Duration::from_secs(s.client_keep_alive_secs.into());
    if client_keep_alive > super::MAX_CLIENT_KEEP_ALIVE {
        return Err(SettingsError::TooLarge {
            key: "server.client_keep_alive_secs (at most 3600)",
        });
    }
    Ok(Server {
        listen: s.listen,
        keep_alive_interval: Duration::from_secs(s.keep_alive_interval.into()),
        max_subscriptions_per_connection: max_subscriptions,
        // 0 has always meant one worker.
        workers: NonZeroUsize::new(s.workers).unwrap_or(NonZeroUsize::MIN),
        sse_keep_alive: Duration::from_secs(s.sse_keep_alive_secs.into()),
        cors_origins: AllowedOrigins::parse(&s.cors_origins)
            .map_err(|e| SettingsError::BadOrigin(e.to_string()))?,
        metrics_listen,
        client_keep_alive: (!client_keep_alive.is_zero()).then_some(client_keep_alive),
    })
}

fn fetchers(f: file::Fetchers) -> Result<Fetchers, SettingsError> {
    let timeout = positive("fetchers.timeout_secs", f.timeout_secs)?;
    let max_backoff = at_least_one("fetchers.max_backoff_secs", f.max_backoff_secs)?;
    if let Some((name, _)) = f
        .poll_interval_overrides
        .iter()
        .find(|(_, s)| s.is_nan() || **s < MIN_POLL_INTERVAL)
    {
        return Err(SettingsError::PollIntervalTooShort {
            channel: name.clone(),
        });
    }
    let poll_interval_overrides = f
        .poll_interval_overrides
        .into_iter()
        .map(|(name, secs)| Ok((name, duration("fetchers.poll_interval_overrides", secs)?)))
        .collect::<Result<_, SettingsError>>()?;
    if f.kinds.is_empty() {
        return Err(SettingsError::NoFetcherKinds);
    }
    Ok(Fetchers {
        kinds: f.kinds,
        dir: f.dir,
        channels_dir: f.channels_dir,
        python: f.python,
        timeout,
        max_backoff,
        poll_interval_overrides,
        lambda_prefix: f.lambda_prefix,
        refresh: at_least_one("fetchers.refresh_secs", f.refresh_secs)?,
        default_rate_limit: match f.default_rate_limit.is_empty() {
            true => vec![super::DEFAULT_RATE_LIMIT],
            false => rate_limit("fetchers.default_rate_limit", &f.default_rate_limit)?,
        },
        rate_limit_overrides: f
            .rate_limit_overrides
            .iter()
            .map(|(name, r)| {
                let key = format!("fetchers.rate_limit_overrides.{name}");
                Ok((name.clone(), rate_limit(&key, r)?))
            })
            .collect::<Result<_, SettingsError>>()?,
        process_env: process_env(f.process_env)?,
        budget_save: positive("fetchers.budget_save_secs", f.budget_save_secs)?,
        max_processes: match f.max_processes {
            0 => {
                return Err(SettingsError::BelowOne {
                    key: "fetchers.max_processes",
                })
            }
            n => n,
        },
        process_mode: f.process_mode,
        workers: crate::fetcher::WorkerSettings {
            per_fetcher: at_least(
                "fetchers.workers_per_fetcher",
                f.workers_per_fetcher as u64,
                1,
            )? as usize,
            max_calls: at_least("fetchers.worker_max_calls", f.worker_max_calls, 1)?,
            max_rss_bytes: at_least("fetchers.worker_max_rss_mb", f.worker_max_rss_mb, 16)?
                .saturating_mul(1024 * 1024),
        },
        max_workers: at_least("fetchers.max_workers", f.max_workers as u64, 1)? as usize,
    })
}

/// `value`, unless it is below `min`.
fn at_least(key: &'static str, value: u64, min: u64) -> Result<u64, SettingsError> {
    match value >= min {
        true => Ok(value),
        false => Err(SettingsError::AtLeast { key, min }),
    }
}

/// `fetchers.process_env`: variable names, none of them denied.
fn process_env(names: Vec<String>) -> Result<Vec<String>, SettingsError> {
    for name in &names {
        if let Some(problem) = crate::fetcher::sandbox::env_name_problem(name) {
            return Err(SettingsError::ProcessEnv {
                name: name.clone(),
                problem,
            });
        }
    }
    Ok(names)
}

/// A budget in the metadata's form (`per_second` … `per_day` → calls), never empty.
fn rate_limit(key: &str, r: &BTreeMap<String, u64>) -> Result<Vec<RateWindow>, SettingsError> {
    let value = serde_json::to_value(r).expect("a map of numbers");
    let bad = |problem: String| SettingsError::RateLimit {
        key: key.to_string(),
        problem,
    };
    let windows = crate::fetcher::parse_rate_limit(Some(&value)).map_err(|e| bad(e.to_string()))?;
    if windows.is_empty() {
        return Err(bad(
            "must name at least one window, e.g. { per_minute = 60 }".into(),
        ));
    }
    Ok(windows)
}

fn rate_limit_file(windows: &[RateWindow]) -> BTreeMap<String, u64> {
    windows
        .iter()
        .map(|(window, n)| {
            let name = match window.as_secs() {
                1 => "per_second",
                60 => "per_minute",
                3600 => "per_hour",
                _ => "per_day",
            };
            (name.to_string(), *n)
        })
        .collect()
}

fn keys(k: file::Keys) -> Result<KeysSettings, SettingsError> {
    let bucket = match (k.kind, non_empty(k.s3_bucket)) {
        (file::KeysKind::S3, None) => {
            return Err(SettingsError::Required {
                key: "keys.s3_bucket",
                kind_key: "keys.kind",
                kind: "s3",
            })
        }
        (_, bucket) => bucket,
    };
    // Checked whatever the kind, as it always was.
    let refresh = at_least_one("keys.refresh_secs", k.refresh_secs)?;
    Ok(match (k.kind, bucket) {
        (file::KeysKind::S3, Some(bucket)) => KeysSettings::S3 {
            bucket,
            key: k.s3_key,
            refresh,
        },
        _ => KeysSettings::File { file: k.file },
    })
}

/// The store, with the cluster inside the DynamoDB kind: the replicas share its table.
fn store(s: file::Store, c: file::Cluster) -> Result<StoreSettings, SettingsError> {
    if s.kind == file::StoreKind::Dynamodb && s.dynamodb_table.is_empty() {
        return Err(SettingsError::Required {
            key: "store.dynamodb_table",
            kind_key: "store.kind",
            kind: "dynamodb",
        });
    }
    if c.enabled && s.kind != file::StoreKind::Dynamodb {
        return Err(SettingsError::ClusterNeedsDynamodb);
    }
    let lease_ttl = at_least_one("cluster.lease_ttl_secs", c.lease_ttl_secs)?;
    let secret = match (c.enabled, non_empty(c.secret).map(Secret::new)) {
        (true, None) => return Err(SettingsError::ClusterNeedsSecret),
        (_, Some(s)) if !s.is_strong() => {
            return Err(SettingsError::WeakSecret {
                key: "cluster.secret",
            })
        }
        (_, secret) => secret,
    };
    // Checked whatever `enabled` says, as the TTL is.
    let advertise_host = AdvertiseHost::parse(&c.advertise_host)?;
    let pushpin = super::PushpinTemplates::parse(
        c.pushpin_publish_spec,
        c.pushpin_http_url,
        c.pushpin_stats_spec,
    )?;
    let cluster = secret.map(|secret| ClusterSettings {
        replica_id: non_empty(c.replica_id),
        advertise_url: non_empty(c.advertise_url),
        lease_ttl,
        secret,
        advertise_host,
        pushpin,
    });
    let kind = match s.kind {
        file::StoreKind::Embedded => StoreKind::Embedded { path: s.path },
        file::StoreKind::Memory => StoreKind::Memory,
        file::StoreKind::Dynamodb => StoreKind::Dynamodb(DynamodbSettings {
            table: s.dynamodb_table,
            create_table: s.dynamodb_create_table,
            log_ttl: Duration::from_secs(s.dynamodb_log_ttl_secs),
            cluster: cluster.filter(|_| c.enabled),
        }),
    };
    Ok(StoreSettings {
        kind,
        log_capacity: s.log_capacity,
        retention: (s.retention_secs > 0).then(|| Duration::from_secs(s.retention_secs)),
    })
}

fn state(s: file::State) -> Result<StateSettings, SettingsError> {
    if s.inactive_channel_memory_secs == 0 {
        return Err(SettingsError::BelowOne {
            key: "state.inactive_channel_memory_secs",
        });
    }
    if s.items_page_max == 0 {
        return Err(SettingsError::BelowOne {
            key: "state.items_page_max",
        });
    }
    if s.items_page_default == 0 {
        return Err(SettingsError::BelowOne {
            key: "state.items_page_default",
        });
    }
    if s.items_page_default > s.items_page_max {
        return Err(SettingsError::TooLarge {
            key: "state.items_page_default (over state.items_page_max)",
        });
    }
    Ok(StateSettings {
        inactive_channel_memory: Duration::from_secs(s.inactive_channel_memory_secs),
        items_page_default: s.items_page_default,
        items_page_max: s.items_page_max,
        read_cache_items: s.read_cache_items,
        snapshot_cache_bytes: s.snapshot_cache_bytes,
    })
}

impl Default for PushSettings {
    /// The built-in defaults (tests and embedders).
    fn default() -> PushSettings {
        push(SettingsFile::default().push).expect("the default push settings are valid")
    }
}

fn push(p: file::Push) -> Result<PushSettings, SettingsError> {
    for (key, value) in [
        ("push.max_body_bytes", p.max_body_bytes as u64),
        ("push.max_batch_items", p.max_batch_items as u64),
        ("push.linger_secs", p.linger_secs),
        ("push.max_pending_batches", p.max_pending_batches as u64),
    ] {
        if value == 0 {
            return Err(SettingsError::BelowOne { key });
        }
    }
    Ok(PushSettings {
        max_body_bytes: p.max_body_bytes,
        max_batch_items: p.max_batch_items,
        idempotency_keys: p.idempotency_keys,
        linger: Duration::from_secs(p.linger_secs),
        max_pending_batches: p.max_pending_batches,
    })
}

fn state_file(s: StateSettings) -> file::State {
    file::State {
        inactive_channel_memory_secs: s.inactive_channel_memory.as_secs(),
        items_page_default: s.items_page_default,
        items_page_max: s.items_page_max,
        read_cache_items: s.read_cache_items,
        snapshot_cache_bytes: s.snapshot_cache_bytes,
    }
}

fn aws(a: file::Aws) -> Result<AwsSettings, SettingsError> {
    Ok(AwsSettings {
        region: a.region.and_then(non_empty),
        endpoint_url: a.endpoint_url.and_then(non_empty),
        dynamodb_endpoint_url: a.dynamodb_endpoint_url.and_then(non_empty),
        s3_endpoint_url: a.s3_endpoint_url.and_then(non_empty),
        lambda_endpoint_url: a.lambda_endpoint_url.and_then(non_empty),
        sqs_endpoint_url: a.sqs_endpoint_url.and_then(non_empty),
        max_attempts: a.max_attempts,
        attempt_timeout: positive("aws.attempt_timeout_secs", a.attempt_timeout_secs)?,
    })
}

fn pushpin(p: file::Pushpin) -> Result<Pushpin, SettingsError> {
    let specs = match p.publish {
        PublishVia::Zmq => &p.zmq_push_specs,
        PublishVia::Http => &p.http_publish_urls,
    };
    if specs.is_empty() {
        return Err(SettingsError::NoPublishEndpoint);
    }
    let file = Some(p.sig_key_file).filter(|f| !f.as_os_str().is_empty());
    let sig_key = match (non_empty(p.sig_key).map(Secret::new), file) {
        (Some(_), Some(_)) => {
            return Err(SettingsError::BothSet {
                first: "pushpin.sig_key",
                second: "pushpin.sig_key_file",
            })
        }
        (Some(key), None) if !key.is_strong() => {
            return Err(SettingsError::WeakSecret {
                key: "pushpin.sig_key",
            })
        }
        (Some(key), None) => Some(SigKey::Value(key)),
        (None, file) => file.map(SigKey::File),
    };
    Ok(Pushpin {
        publish: p.publish,
        zmq_push_specs: p.zmq_push_specs,
        http_publish_urls: p.http_publish_urls,
        stats_specs: p.stats_specs,
        sig_key,
        ws_burst_bytes: p.ws_burst_bytes,
    })
}

/// The file form of the Pushpin section; the key itself in clear, so the file loads again.
fn pushpin_file(p: Pushpin) -> file::Pushpin {
    let (sig_key, sig_key_file) = match p.sig_key {
        None => (String::new(), Default::default()),
        Some(SigKey::Value(key)) => (key.expose().to_string(), Default::default()),
        Some(SigKey::File(path)) => (String::new(), path),
    };
    file::Pushpin {
        publish: p.publish,
        zmq_push_specs: p.zmq_push_specs,
        http_publish_urls: p.http_publish_urls,
        stats_specs: p.stats_specs,
        sig_key,
        sig_key_file,
        ws_burst_bytes: p.ws_burst_bytes,
    }
}

fn auth(a: file::Auth) -> Result<AuthSettings, SettingsError> {
    use crate::auth::JwksSource;
    let file = Some(a.jwks_file).filter(|p| !p.as_os_str().is_empty());
    let jwks = match (file, non_empty(a.jwks_url)) {
        (Some(_), Some(_)) => {
            return Err(SettingsError::OnlyOne {
                a: "auth.jwks_file",
                b: "auth.jwks_url",
            })
        }
        (Some(path), None) => Some(JwksSource::File(path)),
        (None, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
            Some(JwksSource::Url(url))
        }
        (None, Some(_)) => {
            return Err(SettingsError::NotHttpUrl {
                key: "auth.jwks_url",
            })
        }
        (None, None) => None,
    };
    if let Some(name) = a.access.keys().find(|n| !crate::channel::is_valid_name(n)) {
        let name: String = name.chars().take(64).collect();
        return Err(SettingsError::NotAChannelName { name });
    }
    Ok(AuthSettings {
        default_access: a.default_access,
        access: a.access,
        jwks,
        refresh: at_least_one("auth.refresh_secs", a.refresh_secs)?,
        min_refresh: at_least_one("auth.min_refresh_secs", a.min_refresh_secs)?,
        audience: non_empty(a.audience),
        issuer: non_empty(a.issuer),
    })
}

fn auth_file(a: AuthSettings) -> file::Auth {
    use crate::auth::JwksSource;
    let (jwks_file, jwks_url) = match a.jwks {
        Some(JwksSource::File(path)) => (path, String::new()),
        Some(JwksSource::Url(url)) => (Default::default(), url),
        None => (Default::default(), String::new()),
    };
    file::Auth {
        default_access: a.default_access,
        access: a.access,
        jwks_file,
        jwks_url,
        refresh_secs: a.refresh.as_secs_f64(),
        min_refresh_secs: a.min_refresh.as_secs_f64(),
        audience: a.audience.unwrap_or_default(),
        issuer: a.issuer.unwrap_or_default(),
    }
}

impl TryFrom<SettingsFile> for Settings {
    type Error = SettingsError;

    /// Sections in about the order the checks always ran (the first error is the one reported).
    fn try_from(f: SettingsFile) -> Result<Settings, SettingsError> {
        let server = server(f.server)?;
        let fetchers = fetchers(f.fetchers)?;
        let keys = keys(f.keys)?;
        let store = store(f.store, f.cluster)?;
        let settings = Settings {
            server,
            pushpin: pushpin(f.pushpin)?,
            demand: DemandSettings {
                hint_ttl: Duration::from_secs(f.demand.hint_ttl_secs),
            },
            fetchers,
            keys,
            store,
            aws: aws(f.aws)?,
            log: f.log.checked()?,
            dev: f.dev,
            state: state(f.state)?,
            limits: f.limits.check()?,
            auth: auth(f.auth)?,
            push: push(f.push)?,
            history: f.history.check()?,
            admin: f.admin.check()?,
            archive: f.archive.check()?,
            declarative: f.declarative.check()?,
        };
        crate::aws::refuse_unless_built(crate::aws::BUILT_IN, &settings)?;
        Ok(settings)
    }
}

/// Whole seconds, for the fields the file form keeps as integers.
fn whole_secs_u32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl From<Settings> for SettingsFile {
    /// Fields the typed settings do not hold (those of other kinds) take the defaults.
    fn from(s: Settings) -> SettingsFile {
        let defaults = SettingsFile::default();
        SettingsFile {
            server: file::Server {
                listen: s.server.listen,
                keep_alive_interval: whole_secs_u32(s.server.keep_alive_interval),
                max_subscriptions_per_connection: s.server.max_subscriptions_per_connection.get(),
                workers: s.server.workers.get(),
                sse_keep_alive_secs: whole_secs_u32(s.server.sse_keep_alive),
                cors_origins: s.server.cors_origins.to_entries(),
                metrics_listen: s
                    .server
                    .metrics_listen
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                client_keep_alive_secs: s.server.client_keep_alive.map_or(0, whole_secs_u32),
            },
            pushpin: pushpin_file(s.pushpin),
            demand: file::Demand {
                hint_ttl_secs: s.demand.hint_ttl.as_secs(),
            },
            fetchers: fetchers_file(s.fetchers),
            keys: keys_file(s.keys, defaults.keys),
            cluster: cluster_file(&s.store, defaults.cluster),
            store: store_file(s.store, defaults.store),
            aws: file::Aws {
                region: s.aws.region,
                endpoint_url: s.aws.endpoint_url,
                dynamodb_endpoint_url: s.aws.dynamodb_endpoint_url,
                s3_endpoint_url: s.aws.s3_endpoint_url,
                lambda_endpoint_url: s.aws.lambda_endpoint_url,
                sqs_endpoint_url: s.aws.sqs_endpoint_url,
                max_attempts: s.aws.max_attempts,
                attempt_timeout_secs: s.aws.attempt_timeout.as_secs_f64(),
            },
            log: s.log,
            dev: s.dev,
            state: state_file(s.state),
            limits: s.limits,
            auth: auth_file(s.auth),
            push: file::Push {
                max_body_bytes: s.push.max_body_bytes,
                max_batch_items: s.push.max_batch_items,
                idempotency_keys: s.push.idempotency_keys,
                linger_secs: s.push.linger.as_secs(),
                max_pending_batches: s.push.max_pending_batches,
            },
            history: s.history,
            admin: s.admin,
            archive: s.archive,
            declarative: s.declarative,
        }
    }
}

fn fetchers_file(f: Fetchers) -> file::Fetchers {
    file::Fetchers {
        kinds: f.kinds,
        dir: f.dir,
        channels_dir: f.channels_dir,
        python: f.python,
        timeout_secs: f.timeout.as_secs_f64(),
        max_backoff_secs: f.max_backoff.as_secs_f64(),
        poll_interval_overrides: f
            .poll_interval_overrides
            .into_iter()
            .map(|(name, d)| (name, d.as_secs_f64()))
            .collect(),
        lambda_prefix: f.lambda_prefix,
        refresh_secs: f.refresh.as_secs_f64(),
        process_env: f.process_env,
        max_processes: f.max_processes,
        default_rate_limit: rate_limit_file(&f.default_rate_limit),
        rate_limit_overrides: f
            .rate_limit_overrides
            .iter()
            .map(|(name, w)| (name.clone(), rate_limit_file(w)))
            .collect(),
        budget_save_secs: f.budget_save.as_secs_f64(),
        process_mode: f.process_mode,
        workers_per_fetcher: f.workers.per_fetcher,
        max_workers: f.max_workers,
        worker_max_calls: f.workers.max_calls,
        worker_max_rss_mb: f.workers.max_rss_bytes / (1024 * 1024),
    }
}

fn keys_file(k: KeysSettings, defaults: file::Keys) -> file::Keys {
    match k {
        KeysSettings::File { file } => file::Keys {
            kind: file::KeysKind::File,
            file,
            ..defaults
        },
        KeysSettings::S3 {
            bucket,
            key,
            refresh,
        } => file::Keys {
            kind: file::KeysKind::S3,
            s3_bucket: bucket,
            s3_key: key,
            refresh_secs: refresh.as_secs_f64(),
            ..defaults
        },
    }
}

fn store_file(s: StoreSettings, defaults: file::Store) -> file::Store {
    let log_capacity = s.log_capacity;
    let defaults = file::Store {
        retention_secs: s.retention.map_or(0, |r| r.as_secs()),
        ..defaults
    };
    match s.kind {
        StoreKind::Embedded { path } => file::Store {
            kind: file::StoreKind::Embedded,
            path,
            log_capacity,
            ..defaults
        },
        StoreKind::Memory => file::Store {
            kind: file::StoreKind::Memory,
            log_capacity,
            ..defaults
        },
        StoreKind::Dynamodb(d) => file::Store {
            kind: file::StoreKind::Dynamodb,
            log_capacity,
            dynamodb_table: d.table,
            dynamodb_create_table: d.create_table,
            dynamodb_log_ttl_secs: d.log_ttl.as_secs(),
            ..defaults
        },
    }
}

fn cluster_file(s: &StoreSettings, defaults: file::Cluster) -> file::Cluster {
    match &s.kind {
        StoreKind::Dynamodb(DynamodbSettings {
            cluster: Some(c), ..
        }) => file::Cluster {
            enabled: true,
            replica_id: c.replica_id.clone().unwrap_or_default(),
            advertise_url: c.advertise_url.clone().unwrap_or_default(),
            lease_ttl_secs: c.lease_ttl.as_secs_f64(),
            secret: c.secret.expose().to_string(),
            advertise_host: c.advertise_host.to_file(),
            pushpin_publish_spec: c.pushpin.publish_spec.clone().unwrap_or_default(),
            pushpin_http_url: c.pushpin.http_url.clone().unwrap_or_default(),
            pushpin_stats_spec: c.pushpin.stats_spec.clone().unwrap_or_default(),
        },
        _ => defaults,
    }
}
