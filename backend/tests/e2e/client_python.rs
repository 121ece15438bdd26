//! Issue 22: the Python client (`clients/python`) against the real stack: its pytest suite runs
//! with this stack's URLs and a push channel's producer key in the environment, publishes
//! through the HTTP API, and checks the client's items against `GET /channels/{name}/items`;
//! a token-access channel is refused without a token and served with one.

use std::path::PathBuf;
use std::time::Duration;

use crate::push::{now, push_options, subscribe_token, OTHER, SECRET, THINGS, THINGS_KEY};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_follows_a_channel_and_resumes() {
    // `OTHER` needs a subscriber token; the suite gets one that names it.
    let mut options = push_options(None);
    options.env.push((
        "RESTREAM_AUTH__ACCESS".into(),
        format!("{{\"{OTHER}\" = \"token\"}}"),
    ));
    let stack = Stack::start_with(options).await;
    let token = subscribe_token(SECRET, &[OTHER], now() + 3600);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "no .venv: run `bash scripts/install-deps.sh --tests`"
    );
    let output = tokio::process::Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(root.join("clients/python"))
        .env("RESTREAM_WS_URL", &stack.ws_url)
        .env("RESTREAM_HTTP_URL", &stack.http_url)
        .env("RESTREAM_CHANNEL", THINGS)
        .env("RESTREAM_PRODUCER_KEY", THINGS_KEY)
        .env("RESTREAM_TOKEN_CHANNEL", OTHER)
        .env("RESTREAM_TOKEN", token)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), output)
        .await
        .expect("pytest finishes")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pytest failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(" passed") && !stdout.contains("skipped"),
        "{stdout}"
    );
}
