//! `restream fetchers new | list | run`, as a fetcher author uses them.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

fn restream(args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_restream"))
        .args(args)
        .env("RESTREAM_STORE__KIND", "memory")
        .env("RESTREAM_FETCHERS__CHANNELS_DIR", "/nonexistent")
        .envs(env.iter().map(|(k, v)| (*k, v.clone())))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Serves `body` to every request on a loopback port, in a thread.
fn serve(body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn scaffold_list_and_run_a_new_fetcher() {
    let dir = tempfile::tempdir().unwrap();
    let fetchers = ("RESTREAM_FETCHERS__DIR", dir.path().display().to_string());

    let (ok, out, err) = restream(
        &["fetchers", "new", "demo-feed"],
        std::slice::from_ref(&fetchers),
    );
    assert!(ok, "{err}");
    assert!(out.contains("demo_feed"), "{out}");
    for f in [
        "main.py",
        "function.json",
        "test_main.py",
        "testdata/sample.json",
        "testdata/contract.json",
    ] {
        assert!(
            dir.path().join("demo_feed").join(f).is_file(),
            "{f} missing"
        );
    }
    let (ok, _, err) = restream(
        &["fetchers", "new", "demo-feed"],
        std::slice::from_ref(&fetchers),
    );
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = restream(
        &["fetchers", "new", "bad name"],
        std::slice::from_ref(&fetchers),
    );
    assert!(!ok && err.contains("not a channel name"), "{err}");

    let (ok, out, err) = restream(&["fetchers", "list"], std::slice::from_ref(&fetchers));
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("demo-feed"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("demo_feed") && line.contains("60s") && line.trim_end().ends_with("ok"),
        "{line}"
    );

    let base = serve(r#"{"items": [{"id": "a", "v": 1}, {"id": "b", "v": 2}, {"v": 3}]}"#);
    let env = [fetchers.clone(), ("DEMO_FEED_BASE_URL", base)];
    let (ok, out, err) = restream(&["fetchers", "run", "demo-feed"], &env);
    assert!(ok, "{err}");
    assert!(out.contains("fetched   3 items (complete: true)"), "{out}");
    assert!(out.contains(r#"new       ["a", "b"]"#), "{out}");
    assert!(
        out.contains("entries without a usable \"id\": [2 (missing)]"),
        "{out}"
    );

    let (ok, _, err) = restream(&["fetchers", "run", "demo-feed", "--param", "x=1"], &env);
    assert!(
        !ok && err.contains("invalid params") && err.contains("unknown param"),
        "{err}"
    );
    let (ok, _, err) = restream(&["fetchers", "run", "nope"], &env);
    assert!(
        !ok && err.contains("unknown channel") && err.contains("demo-feed"),
        "{err}"
    );
}

#[test]
fn list_reports_fetchers_that_do_not_load() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fetchers");
    let (ok, out, err) = restream(
        &["fetchers", "list"],
        &[("RESTREAM_FETCHERS__DIR", fixtures.into())],
    );
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("bad_metadata"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("invalid metadata: field `poll_interval`"),
        "{line}"
    );
}

#[test]
fn fetchers_run_passes_no_credentials_to_the_fetcher() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fetchers");
    let env = [
        ("RESTREAM_FETCHERS__DIR", fixtures.to_string()),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-value".to_string()),
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEVALUE".to_string()),
        ("ENV_DUMP_DECLARED", "declared-value".to_string()),
        ("ENV_DUMP_UNLISTED", "unlisted-value".to_string()),
    ];
    let (ok, out, err) = restream(&["fetchers", "run", "env-dump"], &env);
    assert!(ok, "{err}");
    assert!(
        out.contains("\"ENV_DUMP_DECLARED\": \"declared-value\""),
        "{out}"
    );
    for leaked in [
        "aws-secret-value",
        "AKIAEXAMPLEVALUE",
        "AWS_",
        "RESTREAM_",
        "unlisted-value",
    ] {
        assert!(!out.contains(leaked), "{leaked} reached the fetcher: {out}");
    }
}
