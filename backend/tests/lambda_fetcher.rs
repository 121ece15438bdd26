//! Lambda fetchers through the real aws-sdk-lambda against minilambda (the Invoke and
//! ListFunctions API running the handlers with AWS's Python runtime client): discovery over
//! several pages, fetches, and every failure mapped to its fetch error.

mod emulators;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use restream::config::{FetcherKind, Settings};
use restream::discovery::Discovery;
use restream::fetcher::lambda::{self, LambdaFetcher};
use restream::fetcher::{FetchError, FetchOutcome, FetchRequest, Fetcher, Keys};
use secrecy::SecretString;
use serde_json::json;

const FIXTURES: [&str; 5] = ["bad_metadata", "crash", "garbage", "hang", "noisy"];

/// An Apex project of the test fixtures, with a 2 s function timeout.
fn project(dir: &Path) -> PathBuf {
    let root = dir.join("project");
    std::fs::create_dir_all(root.join("functions")).unwrap();
    std::fs::write(
        root.join("project.json"),
        json!({"name": "restreamables", "runtime": "python3.12",
               "handler": "main.lambda_function", "timeout": 2, "memory": 128})
        .to_string(),
    )
    .unwrap();
    let fixtures = emulators::repo_root().join("backend/tests/fixtures/fetchers");
    for name in FIXTURES {
        std::os::unix::fs::symlink(fixtures.join(name), root.join("functions").join(name)).unwrap();
    }
    root
}

struct Lambda {
    server: emulators::Server,
    client: aws_sdk_lambda::Client,
    _dir: tempfile::TempDir,
}

/// minilambda with ListFunctions pages of two, and a client allowing `attempts` per call.
async fn start(attempts: u32) -> Lambda {
    let dir = tempfile::tempdir().unwrap();
    let server = emulators::start_minilambda_paged(&project(dir.path()), &[], 2);
    let mut settings = emulators::aws_settings(&server.url);
    settings.max_attempts = attempts;
    let sdk = emulators::sdk_config(&settings).await;
    let client = restream::aws::lambda(&sdk, &settings, Duration::from_secs(5));
    Lambda {
        server,
        client,
        _dir: dir,
    }
}

impl Lambda {
    async fn fetcher(&self, label: &str) -> LambdaFetcher {
        lambda::discover(
            self.client.clone(),
            "restreamables_",
            Duration::from_secs(5),
        )
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.label() == label)
        .unwrap_or_else(|| panic!("{label} not deployed"))
    }
}

async fn fetch(f: &LambdaFetcher, keys: &Keys) -> Result<FetchOutcome, FetchError> {
    f.fetch(FetchRequest {
        channel: "c",
        params: &BTreeMap::new(),
        keys,
        state: None,
    })
    .await
}

#[tokio::test]
async fn discovery_reads_every_page_and_loads_valid_fetchers() {
    let lambda = start(2).await;
    let found = lambda::discover(
        lambda.client.clone(),
        "restreamables_",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let labels: Vec<&str> = found.iter().map(|f| f.label()).collect();
    assert_eq!(labels, FIXTURES, "all three pages of two");
    assert_eq!(found[1].function(), "restreamables_crash");
    let mut settings = Settings::default().fetchers;
    settings.kinds = vec![FetcherKind::Lambda];
    let (registry, report) = Discovery::new(&settings, Some(lambda.client.clone()))
        .load()
        .await
        .unwrap();
    let mut names: Vec<&str> = registry.names().collect();
    names.sort();
    assert_eq!(names, vec!["crash", "garbage", "hang", "noisy"]);
    let bad = report.iter().find(|(l, _)| l == "bad_metadata").unwrap();
    assert!(
        bad.1
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("poll_interval"),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_fetch_returns_the_handler_answer_and_errors_map_to_fetch_errors() {
    let lambda = start(2).await;
    let mut keys = Keys::new();
    keys.insert("api-key".into(), SecretString::from("lambda-secret"));
    let answer = fetch(&lambda.fetcher("noisy").await, &keys).await.unwrap();
    assert_eq!(answer.items[0]["id"], json!(1));
    assert_eq!(
        answer.items[0]["remaining_ms"],
        json!(true),
        "a real Lambda context"
    );
    match fetch(&lambda.fetcher("crash").await, &keys).await {
        Err(FetchError::Crashed { fetcher, detail }) => {
            assert_eq!(fetcher, "crash");
            assert!(detail.contains("KeyError"), "{detail}");
        }
        other => panic!("expected Crashed, got {other:?}"),
    }
    match fetch(&lambda.fetcher("garbage").await, &keys).await {
        Err(FetchError::Crashed { detail, .. }) => {
            assert!(detail.contains("Runtime.ExitError"), "{detail}")
        }
        other => panic!("expected Crashed, got {other:?}"),
    }
    let started = std::time::Instant::now();
    match fetch(&lambda.fetcher("hang").await, &keys).await {
        Err(FetchError::Timeout { fetcher, .. }) => assert_eq!(fetcher, "hang"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the function's own timeout"
    );
}

/// A function deleted after discovery (or a wrong prefix) is unavailable, not a crash.
#[tokio::test]
async fn a_function_that_is_not_deployed_is_unavailable() {
    let lambda = start(1).await;
    let gone = LambdaFetcher::new(
        lambda.client.clone(),
        "restreamables_gone",
        "gone",
        Duration::from_secs(5),
    );
    match fetch(&gone, &Keys::new()).await {
        Err(FetchError::Unavailable { fetcher, detail }) => {
            assert_eq!(fetcher, "gone");
            assert!(
                detail.contains("restreamables_gone") && detail.contains("does not exist"),
                "{detail}"
            )
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn throttling_is_a_throttled_error_with_the_retry_after() {
    let lambda = start(2).await;
    let noisy = lambda.fetcher("noisy").await;
    reqwest::Client::new()
        .post(format!("{}/_control/throttle", lambda.server.url))
        .json(&json!({"function": "restreamables_noisy", "times": 2, "retry_after": 7}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    match fetch(&noisy, &Keys::new()).await {
        Err(FetchError::Throttled {
            fetcher,
            retry_after,
            ..
        }) => {
            assert_eq!(fetcher, "noisy");
            assert_eq!(retry_after, Some(7.0));
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert!(
        fetch(&noisy, &Keys::new()).await.is_ok(),
        "works again once the platform lets it"
    );
}
