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
        jail.set_env("RESTREAM_AWS__REGION", "");
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
            s.keys,
            KeysSettings::S3 {
                bucket: "secrets".into(),
                key: "keys.json".into(),
                refresh: Duration::from_secs(60),
            }
        );
        assert_eq!(s.aws.region, None, "an empty string is unset");
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
        }),
    });
    s.aws.endpoint_url = Some("http://127.0.0.1:5000".into());
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
    )
        .prop_map(|(replica_id, advertise_url, lease_ttl)| ClusterSettings {
            replica_id,
            advertise_url,
            lease_ttl,
        });
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
        prop_assert_eq!(round_trip(&s), s);
    }
}
