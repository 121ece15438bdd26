//! The operator surface's settings (issue 18): the private metrics listener, the EMF lines and
//! client keep-alives — defaults, errors naming the key, the TOML round trip.
#![allow(clippy::result_large_err)] // figment::Jail's own error type

use super::*;

/// Each env setting alone, and the message naming the key at fault.
#[test]
fn bad_values_name_their_key() {
    let cases = [
        (
            "RESTREAM_SERVER__METRICS_LISTEN",
            "localhost",
            "server.metrics_listen must be an address like 0.0.0.0:9100",
        ),
        (
            "RESTREAM_SERVER__METRICS_LISTEN",
            "127.0.0.1:5000",
            "server.metrics_listen must differ from server.listen",
        ),
        (
            "RESTREAM_SERVER__CLIENT_KEEP_ALIVE_SECS",
            "3601",
            "server.client_keep_alive_secs (at most 3600) is too large",
        ),
        (
            "RESTREAM_LOG__EMF_NAMESPACE",
            "AWS/ECS",
            "log.emf_namespace: AWS/ is reserved",
        ),
        (
            "RESTREAM_LOG__EMF_NAMESPACE",
            "rest*ream",
            "log.emf_namespace: 1 to 255 ASCII letters",
        ),
        (
            "RESTREAM_LOG__EMF_NAMESPACE",
            "",
            "log.emf_namespace: 1 to 255 ASCII letters",
        ),
        (
            "RESTREAM_LOG__EMF_SERVICE",
            " ",
            "log.emf_service: 1 to 1024 printable ASCII",
        ),
        (
            "RESTREAM_LOG__EMF_SERVICE",
            "caf\u{e9}",
            "log.emf_service: 1 to 1024 printable ASCII",
        ),
    ];
    for (key, value, message) in cases {
        figment::Jail::expect_with(|jail| {
            jail.set_env(key, value);
            let got = Settings::load(None).map(|_| ()).map_err(|e| e.to_string());
            assert!(
                got.as_ref().is_err_and(|e| e.contains(message)),
                "{key}={value:?}: {got:?}"
            );
            Ok(())
        });
    }
}

#[test]
fn defaults_are_off_except_client_keep_alives() {
    let s = Settings::default();
    assert_eq!(s.server.metrics_listen, None);
    assert_eq!(s.server.client_keep_alive, Some(Duration::from_secs(30)));
    assert_eq!(s.log.emf(), None);
}

#[test]
fn the_ecs_environment_parses_and_round_trips() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("RESTREAM_SERVER__LISTEN", "0.0.0.0:5000");
        jail.set_env("RESTREAM_SERVER__METRICS_LISTEN", "0.0.0.0:9100");
        jail.set_env("RESTREAM_SERVER__CLIENT_KEEP_ALIVE_SECS", "0");
        jail.set_env("RESTREAM_LOG__EMF_INTERVAL_SECS", "60");
        jail.set_env("RESTREAM_LOG__EMF_SERVICE", "restream-prod");
        let s = Settings::load(None).map_err(|e| e.to_string())?;
        assert_eq!(
            s.server.metrics_listen,
            Some("0.0.0.0:9100".parse().unwrap())
        );
        assert_eq!(s.server.client_keep_alive, None, "0 = off");
        assert_eq!(
            s.log.emf(),
            Some(Emf {
                interval: Duration::from_secs(60),
                namespace: "restream".into(),
                service: "restream-prod".into(),
            })
        );
        jail.create_file("s.toml", &s.to_toml().expect("serializes"))?;
        jail.clear_env();
        let loaded = Settings::load(Some(Path::new("s.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(loaded, s);
        Ok(())
    });
}
