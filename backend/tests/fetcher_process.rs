//! The `process` fetcher against real Python processes that misbehave in every way we know.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use restream::fetcher::registry::discover_process_fetchers;
use restream::fetcher::{
    FetchError, FetchOutcome, FetchRequest, Fetcher, Keys, ProcessFetcher, ProcessRuntime, Registry,
};
use secrecy::SecretString;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fetchers")
        .join(name)
}

async fn fetch(name: &str, timeout: Duration, keys: &Keys) -> Result<FetchOutcome, FetchError> {
    let f = ProcessFetcher::new(&fixture(name), ProcessRuntime::new("python3", timeout));
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
    match fetch("crash", Duration::from_secs(10), &Keys::new()).await {
        Err(FetchError::Crashed { detail, .. }) => assert!(detail.contains("api-key"), "{detail}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_hang_times_out_and_the_process_is_killed() {
    let started = Instant::now();
    let e = fetch("hang", Duration::from_millis(1500), &Keys::new())
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Timeout { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // kill_on_drop: no python process running this fetch of the hang fixture survives. The
    // runner's arguments end with the timeout in ms, which tells this call (1500) apart from
    // the registry test's quick metadata calls of the same fixture running in parallel.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let this_call = format!("{} 1500", fixture("hang").join("main.py").display());
    let running = String::from_utf8_lossy(&ps.stdout);
    assert!(!running.contains(&this_call), "{running}");
}

#[tokio::test]
async fn garbage_output_is_an_invalid_response() {
    let e = fetch("garbage", Duration::from_secs(10), &Keys::new())
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::InvalidResponse { .. }), "{e}");
}

#[tokio::test]
async fn prints_do_not_corrupt_the_answer_and_secrets_stay_out_of_errors() {
    let mut keys = Keys::new();
    keys.insert("token".into(), SecretString::from("very-secret-token"));
    let outcome = fetch("noisy", Duration::from_secs(10), &keys)
        .await
        .unwrap();
    assert_eq!(outcome.items.len(), 1);
    assert_eq!(outcome.items[0]["remaining_ms"], true);
    let e = fetch("crash", Duration::from_secs(10), &keys)
        .await
        .unwrap_err();
    assert!(!e.to_string().contains("very-secret-token"));
}

#[tokio::test]
async fn a_missing_interpreter_is_a_spawn_error() {
    let f = ProcessFetcher::new(
        &fixture("noisy"),
        ProcessRuntime::new("/nonexistent/python", Duration::from_secs(1)),
    );
    assert!(matches!(f.metadata().await, Err(FetchError::Spawn { .. })));
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
