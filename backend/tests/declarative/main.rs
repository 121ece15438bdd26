//! Declarative channels (`channels/*.toml`) against a loopback upstream replaying the recorded
//! responses in `channels/testdata/`: feeds, pagination, transforms, templated POST bodies and
//! headers, and the limits strangers meet (allowlist, feed size, transform, per-host budget).

mod apis;
mod check;
mod feeds;
mod limits;
mod upstream;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use restream::config::Declarative;
use restream::fetcher::http::HttpLimits;
use restream::fetcher::{FetchError, FetchOutcome, FetchRequest, Fetcher, HttpFetcher, Keys};
use serde_json::Value;

pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

pub fn recorded(name: &str) -> String {
    std::fs::read_to_string(repo("channels/testdata").join(name)).unwrap()
}

/// Limits that allow plain HTTP to loopback (only tests do that), else the defaults.
pub fn loopback_limits() -> HttpLimits {
    HttpLimits::new(&Declarative {
        url_allowlist: vec!["http://127.0.0.1".into()],
        ..Declarative::default()
    })
}

/// Loads `channels/<file>` with `{base}` pointed at `base` through its env var.
pub fn load(file: &str, env: &str, base: &str) -> HttpFetcher {
    std::env::set_var(env, base);
    HttpFetcher::load_with(
        &repo("channels").join(file),
        Duration::from_secs(5),
        &loopback_limits(),
    )
    .unwrap()
}

/// A channel file written to a temp dir and loaded with `limits`.
pub fn channel(text: &str, limits: &HttpLimits) -> HttpFetcher {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, text).unwrap();
    HttpFetcher::load_with(&path, Duration::from_secs(5), limits).unwrap()
}

pub async fn fetch(
    f: &HttpFetcher,
    params: &[(&str, &str)],
    keys: &Keys,
    state: Option<&Value>,
) -> Result<FetchOutcome, FetchError> {
    let params: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    f.fetch(FetchRequest {
        channel: "t",
        params: &params,
        keys,
        state,
    })
    .await
}

/// The refusal code of a `Refused` error.
pub fn refusal(r: &Result<FetchOutcome, FetchError>) -> &'static str {
    match r {
        Err(FetchError::Refused { code, .. }) => code.as_str(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Ids of the items of an outcome, as strings.
pub fn ids(o: &FetchOutcome, field: &str) -> Vec<String> {
    o.items
        .iter()
        .map(|i| match &i[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}
