//! Between the file form and the typed settings: parsing (every check happens here, once, and
//! names the key at fault) and the way back, so that typed settings serialize to a file that
//! loads into the same settings.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::file::{self, SettingsFile};
use super::{
    AuthSettings, AwsSettings, ClusterSettings, DemandSettings, DynamodbSettings, Fetchers,
    KeysSettings, PublishVia, Pushpin, Server, Settings, StoreKind, StoreSettings,
};

/// A setting the file form can hold but the service cannot run with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    #[error("{key} must be at least 1")]
    BelowOne { key: &'static str },
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
    #[error("pushpin: at least one publish endpoint is required")]
    NoPublishEndpoint,
    #[error("set at most one of {a} and {b}")]
    OnlyOne { a: &'static str, b: &'static str },
    #[error("{key} must be an http:// or https:// URL")]
    NotHttpUrl { key: &'static str },
    #[error("auth.access.{name:?} is not a channel name")]
    NotAChannelName { name: String },
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
    Ok(Server {
        listen: s.listen,
        keep_alive_interval: Duration::from_secs(s.keep_alive_interval.into()),
        max_subscriptions_per_connection: max_subscriptions,
        // 0 has always meant one worker.
        workers: NonZeroUsize::new(s.workers).unwrap_or(NonZeroUsize::MIN),
        sse_keep_alive: Duration::from_secs(s.sse_keep_alive_secs.into()),
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
    })
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
    let cluster = ClusterSettings {
        replica_id: non_empty(c.replica_id),
        advertise_url: non_empty(c.advertise_url),
        lease_ttl: at_least_one("cluster.lease_ttl_secs", c.lease_ttl_secs)?,
    };
    let kind = match s.kind {
        file::StoreKind::Embedded => StoreKind::Embedded { path: s.path },
        file::StoreKind::Memory => StoreKind::Memory,
        file::StoreKind::Dynamodb => StoreKind::Dynamodb(DynamodbSettings {
            table: s.dynamodb_table,
            create_table: s.dynamodb_create_table,
            log_ttl: Duration::from_secs(s.dynamodb_log_ttl_secs),
            cluster: c.enabled.then_some(cluster),
        }),
    };
    Ok(StoreSettings {
        kind,
        log_capacity: s.log_capacity,
    })
}

fn aws(a: file::Aws) -> Result<AwsSettings, SettingsError> {
    Ok(AwsSettings {
        region: a.region.and_then(non_empty),
        endpoint_url: a.endpoint_url.and_then(non_empty),
        dynamodb_endpoint_url: a.dynamodb_endpoint_url.and_then(non_empty),
        s3_endpoint_url: a.s3_endpoint_url.and_then(non_empty),
        lambda_endpoint_url: a.lambda_endpoint_url.and_then(non_empty),
        max_attempts: a.max_attempts,
        attempt_timeout: positive("aws.attempt_timeout_secs", a.attempt_timeout_secs)?,
    })
}

fn pushpin(p: Pushpin) -> Result<Pushpin, SettingsError> {
    let specs = match p.publish {
        PublishVia::Zmq => &p.zmq_push_specs,
        PublishVia::Http => &p.http_publish_urls,
    };
    if specs.is_empty() {
        return Err(SettingsError::NoPublishEndpoint);
    }
    Ok(p)
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
        Ok(Settings {
            server,
            pushpin: pushpin(f.pushpin)?,
            demand: DemandSettings {
                hint_ttl: Duration::from_secs(f.demand.hint_ttl_secs),
            },
            fetchers,
            keys,
            store,
            aws: aws(f.aws)?,
            log: f.log,
            dev: f.dev,
            auth: auth(f.auth)?,
        })
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
            },
            pushpin: s.pushpin,
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
                max_attempts: s.aws.max_attempts,
                attempt_timeout_secs: s.aws.attempt_timeout.as_secs_f64(),
            },
            log: s.log,
            dev: s.dev,
            auth: auth_file(s.auth),
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
        },
        _ => defaults,
    }
}
