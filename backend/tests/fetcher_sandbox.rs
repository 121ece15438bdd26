//! What a fetcher process may see and leave behind: its environment is an allowlist, its
//! whole process group is killed, its output is bounded, and processes share a cap; on warm
//! workers and one process per call alike.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use restream::fetcher::sandbox::ProcessSlots;
use restream::fetcher::{
    FetchError, FetchRequest, Fetcher, Keys, ProcessFetcher, ProcessMode, ProcessRuntime,
};
use serde_json::Value;

const MODES: [ProcessMode; 2] = [ProcessMode::Warm, ProcessMode::Oneshot];

fn runtime(mode: ProcessMode, timeout: Duration) -> ProcessRuntime {
    ProcessRuntime {
        mode,
        ..ProcessRuntime::new("python3", timeout)
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fetchers")
        .join(name)
}

async fn fetch(
    f: &ProcessFetcher,
    params: &[(&str, &str)],
) -> Result<restream::fetcher::FetchOutcome, FetchError> {
    let params: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    f.fetch(FetchRequest {
        channel: "test",
        params: &params,
        keys: &Keys::new(),
        state: None,
    })
    .await
}

/// Whether `pid` still runs (a zombie waiting for its reaper counts as gone).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        }
        Err(_) => false,
    }
}

/// Whether `pid` still runs after a SIGKILL had a moment to be delivered (it is asynchronous).
async fn alive(pid: i32) -> bool {
    for _ in 0..50 {
        if !running(pid) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    eprintln!("still running: {stat}");
    true
}

/// The grandchild pid a `forker` fetch wrote.
fn grandchild(pid_file: &std::path::Path) -> i32 {
    std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_fetcher_sees_only_allowlisted_variables_never_credentials() {
    for mode in MODES {
        eprintln!("mode {mode:?}");
        for (name, value) in [
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SESSION_TOKEN", "aws-session"),
            ("RESTREAM_KEYS__FILE", "/secret/keys.json"),
            ("ENV_DUMP_DECLARED", "declared"),
            ("ENV_DUMP_OPERATOR", "operator"),
            ("ENV_DUMP_UNLISTED", "unlisted"),
        ] {
            std::env::set_var(name, value);
        }
        let runtime = ProcessRuntime {
            // Even an operator who lists a credential does not pass it.
            env: vec!["ENV_DUMP_OPERATOR".into(), "AWS_SECRET_ACCESS_KEY".into()],
            ..runtime(mode, Duration::from_secs(10))
        };
        let f = ProcessFetcher::new(&fixture("env_dump"), runtime);
        let before = fetch(&f, &[]).await.unwrap();
        assert!(
            before.items[0]["env"].get("ENV_DUMP_DECLARED").is_none(),
            "declared only once its metadata is known"
        );
        f.metadata().await.unwrap();
        let outcome = fetch(&f, &[]).await.unwrap();
        let Value::Object(env) = &outcome.items[0]["env"] else {
            panic!("{:?}", outcome.items)
        };
        for name in env.keys() {
            assert!(
                !name.starts_with("AWS_") && !name.starts_with("RESTREAM_"),
                "{name} leaked"
            );
        }
        assert_eq!(env["ENV_DUMP_DECLARED"], "declared");
        assert_eq!(env["ENV_DUMP_OPERATOR"], "operator");
        assert!(env.get("ENV_DUMP_UNLISTED").is_none());
        // (A pyenv shim may prepend to PATH, so only its presence is checked.)
        assert!(env.contains_key("PATH"), "{env:?}");
        let text = serde_json::to_string(env).unwrap();
        for secret in [
            "aws-secret",
            "AKIAEXAMPLE",
            "aws-session",
            "/secret/keys.json",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group_without_waiting_for_its_output() {
    for mode in MODES {
        eprintln!("mode {mode:?}");
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let runtime = runtime(mode, Duration::from_millis(1500));
        let f = ProcessFetcher::new(&fixture("forker"), runtime);
        // The grandchild holds stdout open for 120 s: the call must end at its timeout anyway
        // (one-shot; see fetcher_workers.rs for a warm worker that times out).
        let params = [("mode", "hold"), ("pid_file", pid_file.to_str().unwrap())];
        let call = fetch(&f, &params);
        let answer = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .expect("the call returns at its timeout, not when the grandchild lets go");
        match mode {
            // A warm worker's stdout is its stderr: the grandchild holds nothing up, and it
            // is killed once the fetcher answered.
            ProcessMode::Warm => assert!(answer.is_ok(), "{answer:?}"),
            _ => assert!(
                matches!(answer, Err(FetchError::Timeout { .. })),
                "{answer:?}"
            ),
        }
        let pid = grandchild(&pid_file);
        assert!(!alive(pid).await, "grandchild {pid} survived the timeout");
    }
}

#[tokio::test]
async fn a_grandchild_left_behind_is_killed_when_the_fetcher_answers() {
    for mode in MODES {
        eprintln!("mode {mode:?}");
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let runtime = runtime(mode, Duration::from_secs(30));
        let f = ProcessFetcher::new(&fixture("forker"), runtime);
        let outcome = fetch(
            &f,
            &[("mode", "detach"), ("pid_file", pid_file.to_str().unwrap())],
        )
        .await
        .unwrap();
        assert_eq!(outcome.items.len(), 1);
        let pid = grandchild(&pid_file);
        assert!(!alive(pid).await, "grandchild {pid} outlived its fetcher");
    }
}

#[tokio::test]
async fn endless_output_is_cut_at_the_limit_and_the_process_killed() {
    for mode in MODES {
        eprintln!("mode {mode:?}");
        let runtime = runtime(mode, Duration::from_secs(120));
        let f = ProcessFetcher::new(&fixture("flood"), runtime);
        match fetch(&f, &[]).await {
            Err(FetchError::InvalidResponse { detail, .. }) => {
                assert!(detail.contains("larger than"), "{detail}")
            }
            other => panic!("expected the output limit, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_call_waits_for_a_free_process_slot_then_gives_up() {
    for mode in MODES {
        eprintln!("mode {mode:?}");
        let slots = ProcessSlots::new(1);
        let runtime = ProcessRuntime {
            slots: slots.clone(),
            ..runtime(mode, Duration::from_secs(2))
        };
        let f = ProcessFetcher::new(&fixture("noisy"), runtime);
        let held = slots.acquire(Duration::ZERO).await.expect("a free slot");
        match fetch(&f, &[]).await {
            Err(FetchError::Throttled { detail, .. }) => {
                assert!(detail.contains("slots"), "{detail}")
            }
            other => panic!("expected no slot, got {other:?}"),
        }
        drop(held);
        let ok = tokio::time::timeout(Duration::from_secs(30), fetch(&f, &[]))
            .await
            .unwrap();
        assert!(ok.is_ok(), "{ok:?}");
    }
}
