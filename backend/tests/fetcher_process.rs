//! The `process` fetcher against real Python processes that misbehave in every way we know,
//! on warm workers and one process per call alike.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use restream::fetcher::registry::discover_process_fetchers;
use restream::fetcher::{
    FetchError, FetchOutcome, FetchRequest, Fetcher, Keys, ProcessFetcher, ProcessMode,
    ProcessRuntime, Registry,
};
use secrecy::SecretString;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fetchers")
        .join(name)
}

const MODES: [ProcessMode; 2] = [ProcessMode::Warm, ProcessMode::Oneshot];

fn runtime(mode: ProcessMode, timeout: Duration) -> ProcessRuntime {
    ProcessRuntime {
        mode,
        ..ProcessRuntime::new("python3", timeout)
    }
}

async fn fetch(
    mode: ProcessMode,
    name: &str,
    timeout: Duration,
    keys: &Keys,
) -> Result<FetchOutcome, FetchError> {
    let f = ProcessFetcher::new(&fixture(name), runtime(mode, timeout));
    fetch_with(&f, name, &BTreeMap::new(), keys).await
}

async fn fetch_with(
    f: &ProcessFetcher,
    name: &str,
    params: &BTreeMap<String, String>,
    keys: &Keys,
) -> Result<FetchOutcome, FetchError> {
    f.fetch(FetchRequest {
        channel: name,
        params,
        keys,
        state: None,
    })
    .await
}

#[tokio::test]
async fn a_crash_is_reported_with_its_error() {
    for mode in MODES {
        match fetch(mode, "crash", Duration::from_secs(10), &Keys::new()).await {
            Err(FetchError::Crashed { detail, .. }) => {
                assert!(detail.contains("api-key"), "{mode:?}: {detail}")
            }
            other => panic!("{mode:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_hang_times_out_and_the_process_is_killed() {
    for mode in MODES {
        let started = Instant::now();
        let e = fetch(mode, "hang", Duration::from_millis(1500), &Keys::new())
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Timeout { .. }), "{mode:?}: {e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // No python process running this fetch of the hang fixture survives. The runner's
        // (and the worker's) arguments end with the timeout in ms, which tells this call
        // (1500) apart from the registry test's quick metadata calls of the same fixture.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ps = std::process::Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .unwrap();
        let this_call = format!("{} 1500", fixture("hang").join("main.py").display());
        let running = String::from_utf8_lossy(&ps.stdout);
        assert!(!running.contains(&this_call), "{mode:?}: {running}");
    }
}

#[tokio::test]
async fn garbage_output_is_an_invalid_response() {
    let e = fetch(
        ProcessMode::Oneshot,
        "garbage",
        Duration::from_secs(10),
        &Keys::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, FetchError::InvalidResponse { .. }), "{e}");
}

#[tokio::test]
async fn garbage_written_to_stdout_by_a_warm_worker_lands_in_stderr() {
    // The worker's fd 1 is its stderr: the garbage is never read as an answer, and the
    // process exiting without one is a crash that shows what it wrote.
    match fetch(
        ProcessMode::Warm,
        "garbage",
        Duration::from_secs(10),
        &Keys::new(),
    )
    .await
    {
        Err(FetchError::Crashed { detail, .. }) => {
            assert!(detail.contains("exited with status 0"), "{detail}");
            assert!(detail.contains("502 Bad Gateway"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn prints_do_not_corrupt_the_answer_and_secrets_stay_out_of_errors() {
    let mut keys = Keys::new();
    keys.insert("token".into(), SecretString::from("very-secret-token"));
    for mode in MODES {
        let outcome = fetch(mode, "noisy", Duration::from_secs(10), &keys)
            .await
            .unwrap();
        assert_eq!(outcome.items.len(), 1);
        assert_eq!(outcome.items[0]["remaining_ms"], true);
        let e = fetch(mode, "crash", Duration::from_secs(10), &keys)
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("very-secret-token"));
    }
}

#[tokio::test]
async fn a_missing_interpreter_is_a_spawn_error() {
    for mode in MODES {
        let f = ProcessFetcher::new(
            &fixture("noisy"),
            ProcessRuntime {
                mode,
                ..ProcessRuntime::new("/nonexistent/python", Duration::from_secs(1))
            },
        );
        let answer = f.metadata().await;
        assert!(
            matches!(answer, Err(FetchError::Spawn { .. })),
            "{mode:?}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn the_registry_skips_fetchers_with_invalid_metadata() {
    let runtime = ProcessRuntime::new("python3", Duration::from_secs(10));
    let fetchers = discover_process_fetchers(&fixture(""), &runtime).unwrap();
    assert_eq!(fetchers.len(), 10);
    let registry = Registry::load(fetchers, &HashMap::new()).await;
    let names: Vec<_> = registry.names().collect();
    assert_eq!(
        names,
        vec![
            "crash",
            "env-dump",
            "flaky",
            "flood",
            "forker",
            "garbage",
            "hang",
            "noisy",
            "usgs-earthquakes"
        ]
    );
}

#[tokio::test]
async fn the_shipped_fetchers_load_from_a_relative_folder() {
    // Relative, as in the default `fetchers.dir = "functions"` (tests run in backend/).
    let dir = PathBuf::from("../functions");
    let runtime = ProcessRuntime::new("python3", Duration::from_secs(10));
    let fetchers = discover_process_fetchers(&dir, &runtime).unwrap();
    let n = fetchers.len();
    let registry = Registry::load(fetchers, &HashMap::new()).await;
    assert_eq!(
        registry.len(),
        n,
        "every fetcher in functions/ has valid metadata"
    );
    assert!(registry.get("open-meteo-current").is_some());
}
