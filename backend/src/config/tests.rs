//! Loading, parse errors and the TOML round trip of the settings.
#![allow(clippy::result_large_err)] // figment::Jail's own error type

use std::num::NonZeroUsize;

use proptest::prelude::*;

use super::*;

#[test]
fn file_and_env_override_defaults() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("r.toml", "[server]\nkeep_alive_interval = 25\n[fetchers.poll_interval_overrides]\n\"hn-top\" = 2.5\n")?;
        jail.set_env("RESTREAM_PUSHPIN__PUBLISH", "http");
        let s = Settings::load(Some(Path::new("r.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(s.server.keep_alive_interval.as_secs(), 25);
        assert_eq!(s.pushpin.publish, PublishVia::Http);
        assert_eq!(
            s.fetchers.poll_interval_overrides["hn-top"].as_secs_f64(),
            2.5
        );
        assert_eq!(s.server.max_subscriptions_per_connection.get(), 20);
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

/// Each env setting alone, and the message naming the key at fault.
#[test]
fn parse_errors_name_the_key() {
    let cases = [
        (
            "RESTREAM_SERVER__SSE_KEEP_ALIVE_SECS",
            "0",
            "server.sse_keep_alive_secs must be at least 1",
        ),
        (
            "RESTREAM_FETCHERS__TIMEOUT_SECS",
            "0",
            "fetchers.timeout_secs must be positive",
        ),
        (
            "RESTREAM_FETCHERS__MAX_BACKOFF_SECS",
            "0.5",
            "fetchers.max_backoff_secs must be at least 1",
        ),
        (
            "RESTREAM_FETCHERS__POLL_INTERVAL_OVERRIDES",
            "{x=0.01}",
            "fetchers.poll_interval_overrides.x must be at least 0.05 seconds",
        ),
        (
            "RESTREAM_FETCHERS__KINDS",
            "[]",
            "fetchers.kinds must name at least one of process, http, lambda",
        ),
        (
            "RESTREAM_KEYS__KIND",
            "s3",
            "keys.s3_bucket is required when keys.kind = \"s3\"",
        ),
        (
            "RESTREAM_KEYS__REFRESH_SECS",
            "0",
            "keys.refresh_secs must be at least 1",
        ),
        (
            "RESTREAM_STATE__ITEMS_PAGE_MAX",
            "0",
            "state.items_page_max must be at least 1",
        ),
        (
            "RESTREAM_STATE__ITEMS_PAGE_DEFAULT",
            "5000",
            "state.items_page_default (over state.items_page_max) is too large",
        ),
        (
            "RESTREAM_STATE__INACTIVE_CHANNEL_MEMORY_SECS",
            "0",
            "state.inactive_channel_memory_secs must be at least 1",
        ),
        ("RESTREAM_STORE__DYNAMODB_TABLE", "", ""),
        (
            "RESTREAM_AWS__ATTEMPT_TIMEOUT_SECS",
            "-1",
            "aws.attempt_timeout_secs must be positive",
        ),
        (
            "RESTREAM_CLUSTER__ENABLED",
            "true",
            "cluster.enabled needs store.kind = \"dynamodb\"",
        ),
        (
            "RESTREAM_CLUSTER__LEASE_TTL_SECS",
            "0.5",
            "cluster.lease_ttl_secs must be at least 1",
        ),
        (
            "RESTREAM_PUSHPIN__ZMQ_PUSH_SPECS",
            "[]",
            "pushpin: at least one publish endpoint is required",
        ),
        (
            "RESTREAM_SERVER__CORS_ORIGINS",
            "[\"app.example\"]",
            "server.cors_origins: \"app.example\" is not an origin",
        ),
        (
            "RESTREAM_SERVER__CORS_ORIGINS",
            "[\"*\", \"https://a.example\"]",
            "server.cors_origins: \"*\" allows every origin and cannot be combined",
        ),
        (
            "RESTREAM_PUSHPIN__SIG_KEY",
            "changeme",
            "pushpin.sig_key is too weak",
        ),
        (
            "RESTREAM_CLUSTER__SECRET",
            "short",
            "cluster.secret is too weak",
        ),
        (
            "RESTREAM_FETCHERS__REFRESH_SECS",
            "100000000000000000000000.0",
            "fetchers.refresh_secs is too large",
        ),
        (
            "RESTREAM_AUTH__JWKS_URL",
            "file:///etc/jwks.json",
            "auth.jwks_url must be an http:// or https:// URL",
        ),
        (
            "RESTREAM_AUTH__MIN_REFRESH_SECS",
            "0",
            "auth.min_refresh_secs must be at least 1",
        ),
        (
            "RESTREAM_AUTH__ACCESS",
            "{\"a b\" = \"token\"}",
            "auth.access.\"a b\" is not a channel name",
        ),
        (
            "RESTREAM_AUTH__DEFAULT_ACCESS",
            "private",
            "`public` or `token`",
        ),
        (
            "RESTREAM_CLUSTER__ADVERTISE_HOST",
            "http://10.0.1.7",
            "cluster.advertise_host must be empty, `ecs`, or a host name",
        ),
        (
            "RESTREAM_CLUSTER__PUSHPIN_PUBLISH_SPEC",
            "http://{host}:5560",
            "cluster.pushpin_publish_spec must be empty or look like tcp://{host}:5560",
        ),
        (
            "RESTREAM_CLUSTER__PUSHPIN_HTTP_URL",
            "tcp://{host}:5561",
            "cluster.pushpin_http_url must be empty or look like http://{host}:5561",
        ),
        (
            "RESTREAM_CLUSTER__PUSHPIN_STATS_SPEC",
            "tcp://{host}",
            "cluster.pushpin_stats_spec must be empty or look like tcp://{host}:5564",
        ),
    ];
    for (key, value, message) in cases {
        figment::Jail::expect_with(|jail| {
            jail.set_env(key, value);
            let got = Settings::load(None).map(|_| ()).map_err(|e| e.to_string());
            match message {
                // An empty table is only an error for a dynamodb store.
                "" => assert!(got.is_ok(), "{key}: {got:?}"),
                m => assert!(got.as_ref().is_err_and(|e| e.contains(m)), "{key}: {got:?}"),
            }
            Ok(())
        });
    }
    figment::Jail::expect_with(|jail| {
        jail.set_env("RESTREAM_STORE__KIND", "dynamodb");
        jail.set_env("RESTREAM_STORE__DYNAMODB_TABLE", "");
        let e = Settings::load(None).unwrap_err().to_string();
        assert_eq!(
            e,
            "store.dynamodb_table is required when store.kind = \"dynamodb\""
        );
        Ok(())
    });
}

#[test]
fn kinds_carry_their_own_fields() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("RESTREAM_STORE__KIND", "dynamodb");
        jail.set_env("RESTREAM_STORE__DYNAMODB_TABLE", "items");
        jail.set_env("RESTREAM_KEYS__KIND", "s3");
        jail.set_env("RESTREAM_KEYS__S3_BUCKET", "secrets");
        jail.set_env("RESTREAM_CLUSTER__ENABLED", "true");
        jail.set_env(
            "RESTREAM_CLUSTER__SECRET",
            "a-cluster-secret-of-some-length",
        );
        jail.set_env("RESTREAM_AWS__REGION", "");
        jail.set_env("RESTREAM_AWS__SQS_ENDPOINT_URL", "http://127.0.0.1:4566");
        let s = Settings::load(None).map_err(|e| e.to_string())?;
        let StoreKind::Dynamodb(d) = &s.store.kind else {
            panic!("{:?}", s.store)
        };
        assert_eq!(d.table, "items");
        assert_eq!(d.log_ttl, DEFAULT_DYNAMODB_LOG_TTL);
        let cluster = d.cluster.as_ref().expect("cluster mode");
        assert_eq!(
            (&cluster.replica_id, &cluster.advertise_url),
            (&None, &None)
        );
        assert_eq!(cluster.lease_ttl, Duration::from_secs(10));
        assert_eq!(
            (&cluster.advertise_host, &cluster.pushpin),
            (&AdvertiseHost::Listen, &PushpinTemplates::default()),
            "nothing advertised by default"
        );
        assert_eq!(cluster.secret.expose(), "a-cluster-secret-of-some-length");
        assert!(
            !format!("{s:?}").contains("a-cluster-secret"),
            "never in Debug"
        );
        assert_eq!(
            s.keys,
            KeysSettings::S3 {
                bucket: "secrets".into(),
                key: "keys.json".into(),
                refresh: Duration::from_secs(60),
            }
        );
        assert_eq!(s.aws.region, None, "an empty string is unset");
        assert_eq!(
            s.aws.sqs_endpoint_url.as_deref(),
            Some("http://127.0.0.1:4566")
        );
        assert_eq!(s.aws.endpoint_url, None, "SQS alone");
        Ok(())
    });
}

/// Writes `s` as TOML and loads it back.
fn round_trip(s: &Settings) -> Settings {
    let mut loaded = None;
    figment::Jail::expect_with(|jail| {
        jail.create_file("s.toml", &s.to_toml().expect("serializes"))?;
        loaded = Some(Settings::load(Some(Path::new("s.toml"))).map_err(|e| e.to_string())?);
        Ok(())
    });
    loaded.expect("loaded")
}

#[test]
fn settings_round_trip_through_toml() {
    let mut s = Settings::default();
    assert_eq!(round_trip(&s), s);
    s.server.keep_alive_interval = Duration::from_secs(20);
    s.fetchers.timeout = Duration::from_millis(2500);
    s.fetchers
        .poll_interval_overrides
        .insert("usgs-earthquakes".into(), Duration::from_millis(50));
    s.keys = KeysSettings::S3 {
        bucket: "b".into(),
        key: "k.json".into(),
        refresh: Duration::from_secs(1),
    };
    s.store.kind = StoreKind::Dynamodb(DynamodbSettings {
        table: "t".into(),
        create_table: true,
        log_ttl: Duration::from_secs(3600),
        cluster: Some(ClusterSettings {
            replica_id: Some("r0".into()),
            advertise_url: None,
            lease_ttl: Duration::from_secs(10),
            secret: Secret::new("the-cluster-secret-0123"),
            advertise_host: AdvertiseHost::Ecs,
            pushpin: PushpinTemplates {
                publish_spec: Some("tcp://{host}:5560".into()),
                http_url: Some("http://{host}:5561".into()),
                stats_spec: None,
            },
        }),
    });
    s.server.cors_origins =
        crate::edge::AllowedOrigins::parse(&["https://a.example".into()]).unwrap();
    s.pushpin.sig_key = Some(SigKey::Value(Secret::new("the-pushpin-sig-key-0123")));
    s.aws.endpoint_url = Some("http://127.0.0.1:5000".into());
    s.aws.sqs_endpoint_url = Some("http://127.0.0.1:5001".into());
    assert_eq!(round_trip(&s), s);
    s.auth.default_access = crate::auth::Access::Token;
    s.auth
        .access
        .insert("nyt-top".into(), crate::auth::Access::Public);
    s.auth.jwks = Some(crate::auth::JwksSource::Url(
        "https://id.example/jwks".into(),
    ));
    s.auth.audience = Some("restream".into());
    assert_eq!(round_trip(&s), s);
    s.auth.jwks = Some(crate::auth::JwksSource::File("jwks.json".into()));
    s.auth.issuer = Some("https://id.example".into());
    assert_eq!(round_trip(&s), s);
}

#[test]
fn auth_defaults_to_public_and_reads_its_section() {
    assert_eq!(
        Settings::default().auth.default_access,
        crate::auth::Access::Public
    );
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "a.toml",
            "[auth]\ndefault_access = \"token\"\njwks_url = \"http://127.0.0.1:1/jwks\"\n[auth.access]\n\"hn-top\" = \"public\"\n",
        )?;
        let s = Settings::load(Some(Path::new("a.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(s.auth.default_access, crate::auth::Access::Token);
        assert_eq!(s.auth.access["hn-top"], crate::auth::Access::Public);
        assert_eq!(
            s.auth.jwks,
            Some(crate::auth::JwksSource::Url(
                "http://127.0.0.1:1/jwks".into()
            ))
        );
        jail.create_file(
            "b.toml",
            "[auth]\njwks_file = \"j.json\"\njwks_url = \"http://x/\"\n",
        )?;
        let e = Settings::load(Some(Path::new("b.toml")))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "set at most one of auth.jwks_file and auth.jwks_url");
        Ok(())
    });
}

fn secs_f64() -> impl Strategy<Value = Duration> {
    (1_000u64..10_000_000).prop_map(Duration::from_millis)
}

fn whole_secs() -> impl Strategy<Value = Duration> {
    (1u64..u32::MAX as u64).prop_map(Duration::from_secs)
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,11}"
}

fn store_kind() -> impl Strategy<Value = StoreKind> {
    let cluster = (
        proptest::option::of(name()),
        proptest::option::of(name().prop_map(|h| format!("http://{h}:5000"))),
        secs_f64(),
        "[a-zA-Z0-9]{16,40}",
        prop_oneof![
            Just(AdvertiseHost::Listen),
            Just(AdvertiseHost::Ecs),
            "h[a-z0-9]{0,11}".prop_map(AdvertiseHost::Host),
        ],
        proptest::option::of("h[a-z0-9]{0,11}".prop_map(|h| format!("tcp://{h}:5560"))),
        proptest::option::of(Just("http://{host}:5561".to_string())),
        proptest::option::of(Just("tcp://{host}:5564".to_string())),
    )
        .prop_map(
            |(replica_id, advertise_url, lease_ttl, secret, host, publish, http, stats)| {
                ClusterSettings {
                    replica_id,
                    advertise_url,
                    lease_ttl,
                    secret: Secret::new(secret),
                    advertise_host: host,
                    pushpin: PushpinTemplates {
                        publish_spec: publish,
                        http_url: http,
                        stats_spec: stats,
                    },
                }
            },
        );
    prop_oneof![
        name().prop_map(|p| StoreKind::Embedded { path: p.into() }),
        Just(StoreKind::Memory),
        (
            name(),
            any::<bool>(),
            whole_secs(),
            proptest::option::of(cluster)
        )
            .prop_map(
                |(table, create_table, log_ttl, cluster)| StoreKind::Dynamodb(DynamodbSettings {
                    table,
                    create_table,
                    log_ttl,
                    cluster,
                })
            ),
    ]
}

fn keys() -> impl Strategy<Value = KeysSettings> {
    prop_oneof![
        name().prop_map(|f| KeysSettings::File { file: f.into() }),
        (name(), name(), secs_f64()).prop_map(|(bucket, key, refresh)| KeysSettings::S3 {
            bucket,
            key,
            refresh
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_settings_round_trip(
        keep_alive in whole_secs(),
        sse_keep_alive in whole_secs(),
        max_subscriptions in 1usize..1000,
        timeout in secs_f64(),
        overrides in proptest::collection::hash_map(name(), (50u64..100_000).prop_map(Duration::from_millis), 0..3),
        keys in keys(),
        kind in store_kind(),
        attempt_timeout in secs_f64(),
        region in proptest::option::of(name()),
        sig_key in proptest::option::of(prop_oneof![
            "[a-zA-Z0-9]{16,40}".prop_map(|k| SigKey::Value(Secret::new(k))),
            name().prop_map(|p| SigKey::File(p.into())),
        ]),
        origins in proptest::collection::vec(name().prop_map(|h| format!("https://{h}.example")), 0..3),
    ) {
        let mut s = Settings::default();
        s.server.keep_alive_interval = keep_alive;
        s.server.sse_keep_alive = sse_keep_alive;
        s.server.max_subscriptions_per_connection = NonZeroUsize::new(max_subscriptions).unwrap();
        s.fetchers.timeout = timeout;
        s.fetchers.poll_interval_overrides = overrides;
        s.demand.hint_ttl = keep_alive;
        s.keys = keys;
        s.store.kind = kind;
        s.aws.attempt_timeout = attempt_timeout;
        s.aws.region = region;
        s.pushpin.sig_key = sig_key;
        s.server.cors_origins = crate::edge::AllowedOrigins::parse(&origins).unwrap();
        prop_assert_eq!(round_trip(&s), s);
    }
}

#[test]
fn fetcher_process_settings_refuse_credentials_and_round_trip() {
    for (key, value, message) in [
        (
            "RESTREAM_FETCHERS__PROCESS_ENV",
            "[\"AWS_SECRET_ACCESS_KEY\"]",
            "fetchers.process_env: \"AWS_SECRET_ACCESS_KEY\" variables starting with AWS_",
        ),
        (
            "RESTREAM_FETCHERS__PROCESS_ENV",
            "[\"RESTREAM_KEYS__FILE\"]",
            "fetchers.process_env: \"RESTREAM_KEYS__FILE\"",
        ),
        (
            "RESTREAM_FETCHERS__PROCESS_ENV",
            "[\"A=B\"]",
            "fetchers.process_env: \"A=B\" must be",
        ),
        (
            "RESTREAM_FETCHERS__MAX_PROCESSES",
            "0",
            "fetchers.max_processes must be at least 1",
        ),
    ] {
        figment::Jail::expect_with(|jail| {
            jail.set_env(key, value);
            let got = Settings::load(None).map(|_| ()).map_err(|e| e.to_string());
            assert!(
                got.as_ref().is_err_and(|e| e.contains(message)),
                "{key}: {got:?}"
            );
            Ok(())
        });
    }
    let mut s = Settings::default();
    assert_eq!(s.fetchers.max_processes, 8);
    assert!(s.fetchers.process_env.is_empty());
    s.fetchers.process_env = vec!["HTTPS_PROXY".into(), "HOME".into()];
    s.fetchers.max_processes = 3;
    assert_eq!(round_trip(&s), s);
}

#[test]
fn warm_worker_settings_have_safe_defaults_refuse_nonsense_and_round_trip() {
    for (key, value, message) in [
        (
            "RESTREAM_FETCHERS__WORKERS_PER_FETCHER",
            "0",
            "fetchers.workers_per_fetcher must be at least 1",
        ),
        (
            "RESTREAM_FETCHERS__MAX_WORKERS",
            "0",
            "fetchers.max_workers must be at least 1",
        ),
        (
            "RESTREAM_FETCHERS__WORKER_MAX_CALLS",
            "0",
            "fetchers.worker_max_calls must be at least 1",
        ),
        (
            "RESTREAM_FETCHERS__WORKER_MAX_RSS_MB",
            "8",
            "fetchers.worker_max_rss_mb must be at least 16",
        ),
        (
            "RESTREAM_FETCHERS__PROCESS_MODE",
            "forked",
            "expected ``warm` or `oneshot``",
        ),
    ] {
        figment::Jail::expect_with(|jail| {
            jail.set_env(key, value);
            let got = Settings::load(None).map(|_| ()).map_err(|e| e.to_string());
            assert!(
                got.as_ref().is_err_and(|e| e.contains(message)),
                "{key}: {got:?}"
            );
            Ok(())
        });
    }
    let mut s = Settings::default();
    assert_eq!(s.fetchers.process_mode, crate::fetcher::ProcessMode::Warm);
    assert_eq!(
        s.fetchers.workers,
        crate::fetcher::WorkerSettings::default()
    );
    assert_eq!(s.fetchers.max_workers, 16);
    figment::Jail::expect_with(|jail| {
        jail.set_env("RESTREAM_FETCHERS__PROCESS_MODE", "oneshot");
        jail.set_env("RESTREAM_FETCHERS__WORKER_MAX_RSS_MB", "100");
        let loaded = Settings::load(None).unwrap();
        assert_eq!(
            loaded.fetchers.process_mode,
            crate::fetcher::ProcessMode::Oneshot
        );
        assert_eq!(loaded.fetchers.workers.max_rss_bytes, 100 * 1024 * 1024);
        Ok(())
    });
    s.fetchers.process_mode = crate::fetcher::ProcessMode::Oneshot;
    s.fetchers.workers.per_fetcher = 5;
    s.fetchers.workers.max_calls = 7;
    s.fetchers.workers.max_rss_bytes = 300 * 1024 * 1024;
    s.fetchers.max_workers = 40;
    assert_eq!(round_trip(&s), s);
}

#[test]
fn cluster_mode_needs_a_secret_and_one_sig_key_source() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("RESTREAM_STORE__KIND", "dynamodb");
        jail.set_env("RESTREAM_CLUSTER__ENABLED", "true");
        let e = Settings::load(None).unwrap_err().to_string();
        assert!(
            e.starts_with("cluster.secret is required in cluster mode"),
            "{e}"
        );
        Ok(())
    });
    figment::Jail::expect_with(|jail| {
        jail.set_env("RESTREAM_PUSHPIN__SIG_KEY", "0123456789abcdef0123");
        jail.set_env("RESTREAM_PUSHPIN__SIG_KEY_FILE", "/run/secrets/sig_key");
        let e = Settings::load(None).unwrap_err().to_string();
        assert_eq!(
            e,
            "set only one of pushpin.sig_key and pushpin.sig_key_file"
        );
        Ok(())
    });
}

#[test]
fn secrets_are_redacted_for_display_only() {
    let mut s = Settings::default();
    s.pushpin.sig_key = Some(SigKey::Value(Secret::new("the-pushpin-sig-key-0123")));
    assert!(!format!("{s:?}").contains("the-pushpin-sig-key"));
    let shown = serde_json::to_string(&s.redacted()).unwrap();
    assert!(
        !shown.contains("the-pushpin-sig-key") && shown.contains("<redacted>"),
        "{shown}"
    );
    assert!(
        s.to_toml().unwrap().contains("the-pushpin-sig-key-0123"),
        "the file form loads again"
    );
}

#[test]
fn a_default_rate_limit_in_a_file_replaces_the_built_in_one() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("r.toml", "[fetchers.default_rate_limit]\nper_second = 5\n")?;
        let s = Settings::load(Some(Path::new("r.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(
            s.fetchers.default_rate_limit,
            vec![(Duration::from_secs(1), 5)]
        );
        Ok(())
    });
}

#[test]
fn limits_are_checked_and_round_trip() {
    let mut s = Settings::default();
    assert_eq!(
        s.fetchers.default_rate_limit,
        vec![(Duration::from_secs(60), 60)]
    );
    s.limits
        .max_channels_per_fetcher
        .insert("twitter-status".into(), 10);
    s.fetchers
        .rate_limit_overrides
        .insert("nyt-top".into(), vec![(Duration::from_secs(86_400), 500)]);
    let toml = s.to_toml().unwrap();
    let back: Settings = toml::from_str(&toml).unwrap();
    assert_eq!(back, s);
    assert_eq!(s.limits.max_channels_for("twitter-status", Some(50)), 10);
    assert_eq!(s.limits.max_channels_for("other", Some(50)), 50);
    assert_eq!(s.limits.max_channels_for("other", None), 100);

    let bad = |edit: fn(&mut super::file::SettingsFile)| {
        let mut f = super::file::SettingsFile::default();
        edit(&mut f);
        Settings::try_from(f).unwrap_err().to_string()
    };
    assert!(bad(|f| f.limits.max_channels = 0).contains("limits.max_channels"));
    assert!(bad(|f| f.limits.connection_subscribes_per_sec = f64::NAN)
        .contains("limits.connection_subscribes_per_sec"));
    assert!(bad(|f| f.limits.snapshot_resend_secs = -1.0).contains("limits.snapshot_resend_secs"));
    assert!(bad(|f| f.limits.max_free_params = 0).contains("limits.max_free_params"));
    assert!(bad(|f| f.limits.max_free_param_name_len = 65)
        .contains("limits.max_free_param_name_len is too large"));
    assert!(bad(|f| f.limits.max_free_param_value_len = 257)
        .contains("limits.max_free_param_value_len is too large"));
    assert_eq!(
        s.limits.free_params(),
        crate::channel::FreeParams::default(),
        "the settings' defaults are the built-in ones"
    );
    assert!(bad(|f| {
        f.fetchers.default_rate_limit = [("per_week".to_string(), 1)].into();
    })
    .contains("fetchers.default_rate_limit"));
    assert!(bad(|f| {
        f.fetchers
            .rate_limit_overrides
            .insert("a".into(), Default::default());
    })
    .contains("fetchers.rate_limit_overrides.a"));
}

#[test]
fn history_retention_is_set_per_channel_kind() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "h.toml",
            "[store]\nlog_capacity = 500\n[history]\nmax_age_secs = 3600\n[history.retention.push]\nmax_events = 20000\nmax_age_secs = 0\n",
        )?;
        let s = Settings::load(Some(Path::new("h.toml"))).map_err(|e| e.to_string())?;
        let r = crate::history::Retentions::from_settings(&s.history, s.store.log_capacity);
        assert_eq!(r.polled.max_events, 500);
        assert_eq!(r.polled.max_age, Some(Duration::from_secs(3600)));
        assert_eq!(r.push.max_events, 20000);
        assert_eq!(r.push.max_age, None, "0: no age limit");
        jail.create_file("again.toml", &s.to_toml().expect("serializes"))?;
        let back = Settings::load(Some(Path::new("again.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(back.history, s.history);
        jail.create_file("bad.toml", "[history.retention.feeds]\nmax_events = 1\n")?;
        assert!(
            Settings::load(Some(Path::new("bad.toml"))).is_err(),
            "an unknown kind"
        );
        jail.create_file("zero.toml", "[history]\npage_default = 2000\n")?;
        let e = Settings::load(Some(Path::new("zero.toml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("history.page_default"), "{e}");
        Ok(())
    });
}
