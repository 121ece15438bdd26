//! Bad configuration stops `restream serve` at startup with a clear message (and no secret).

mod emulators;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// The Pushpin signing key every run here is given (a test may override it).
const SIG_KEY: &str = "startup-errors-test-sig-key-0123456789";

fn serve(env: &[(&str, &str)]) -> (bool, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_restream"))
        .arg("serve")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("RESTREAM_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("RESTREAM_STORE__KIND", "memory")
        .env("RESTREAM_PUSHPIN__SIG_KEY", SIG_KEY)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_world_readable_keys_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    std::fs::write(&keys, r#"{"nyt-top": {"api-key": "never-print-me"}}"#).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, stderr) = serve(&[("RESTREAM_KEYS__FILE", keys.to_str().unwrap())]);
    assert!(!ok);
    assert!(
        stderr.contains("readable by every user") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert!(!stderr.contains("never-print-me"), "{stderr}");
}

#[test]
fn a_broken_keys_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    std::fs::write(&keys, r#"{"nyt-top": {"api-key": "never-print-me"}"#).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, stderr) = serve(&[("RESTREAM_KEYS__FILE", keys.to_str().unwrap())]);
    assert!(!ok);
    assert!(
        stderr.contains("keys file") && stderr.contains("not JSON"),
        "{stderr}"
    );
    assert!(!stderr.contains("never-print-me"), "{stderr}");
}

#[test]
fn an_unknown_setting_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("restream.toml");
    std::fs::write(&config, "[server]\nlisten_on = \"x\"\n").unwrap();
    let (ok, stderr) = serve(&[("RESTREAM_CONFIG", config.to_str().unwrap())]);
    assert!(!ok);
    assert!(stderr.contains("listen_on"), "{stderr}");
}

#[test]
fn a_missing_dynamodb_table_is_named() {
    let moto = emulators::start_moto();
    let mut env: Vec<(String, String)> = emulators::aws_env();
    env.extend(
        [
            ("RESTREAM_STORE__KIND", "dynamodb"),
            ("RESTREAM_STORE__DYNAMODB_TABLE", "restream-missing"),
            ("RESTREAM_AWS__ENDPOINT_URL", moto.url.as_str()),
            ("RESTREAM_AWS__MAX_ATTEMPTS", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (ok, stderr) = serve(&env);
    assert!(!ok);
    assert!(
        stderr.contains("restream-missing")
            && stderr.contains("does not exist")
            && stderr.contains("store.dynamodb_create_table"),
        "{stderr}"
    );
}

#[test]
fn an_essential_task_that_dies_stops_the_process_naming_it() {
    // A stats socket zmq cannot use ends the stats reader right after startup.
    let (ok, stderr) = serve(&[("RESTREAM_PUSHPIN__STATS_SPECS", r#"["bogus://nowhere"]"#)]);
    assert!(!ok);
    assert!(
        stderr.contains("an essential task died")
            && stderr.contains("essential task stats reader stopped"),
        "{stderr}"
    );
}

#[test]
fn serve_without_pushpins_signing_key_is_refused_naming_the_setting() {
    let (ok, stderr) = serve(&[("RESTREAM_PUSHPIN__SIG_KEY", "")]);
    assert!(!ok);
    assert!(stderr.contains("pushpin.sig_key"), "{stderr}");
    let (ok, stderr) = serve(&[("RESTREAM_PUSHPIN__SIG_KEY", "changeme")]);
    assert!(!ok);
    assert!(stderr.contains("pushpin.sig_key is too weak"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("sig_key");
    let (ok, stderr) = serve(&[
        ("RESTREAM_PUSHPIN__SIG_KEY", ""),
        ("RESTREAM_PUSHPIN__SIG_KEY_FILE", missing.to_str().unwrap()),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot read pushpin.sig_key_file"),
        "{stderr}"
    );
}

#[test]
fn a_metrics_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, stderr) = serve(&[("RESTREAM_SERVER__METRICS_LISTEN", addr.as_str())]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr} (server.metrics_listen)")),
        "{stderr}"
    );
}

#[test]
fn an_ecs_advertise_host_outside_ecs_is_refused_naming_the_setting() {
    let moto = emulators::start_moto();
    let mut env: Vec<(String, String)> = emulators::aws_env();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    env.extend(
        [
            ("RESTREAM_STORE__KIND", "dynamodb"),
            ("RESTREAM_STORE__DYNAMODB_TABLE", &emulators::unique("ecs")),
            ("RESTREAM_STORE__DYNAMODB_CREATE_TABLE", "true"),
            ("RESTREAM_AWS__ENDPOINT_URL", moto.url.as_str()),
            ("RESTREAM_CLUSTER__ENABLED", "true"),
            (
                "RESTREAM_CLUSTER__SECRET",
                "startup-errors-cluster-secret-0123",
            ),
            ("RESTREAM_CLUSTER__ADVERTISE_HOST", "ecs"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    // Unset (empty), then an endpoint that does not answer.
    for (uri, expected) in [
        (String::new(), "needs $ECS_CONTAINER_METADATA_URI_V4"),
        (
            format!("http://{closed}/v4/x"),
            "no answer from the ECS task metadata endpoint",
        ),
    ] {
        let mut env = env.clone();
        env.push(("ECS_CONTAINER_METADATA_URI_V4".into(), uri));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (ok, stderr) = serve(&env);
        assert!(!ok);
        assert!(
            stderr.contains("cluster.advertise_host = \"ecs\"") && stderr.contains(expected),
            "{stderr}"
        );
    }
}
