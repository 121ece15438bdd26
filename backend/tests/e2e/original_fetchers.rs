//! The original restream's fetchers, in their own shape (`function.json`, `requirements.txt`,
//! `sys.path.append('./site-packages')`, `import requests`, metadata without `params`, free-form
//! params read in `fetch`, no `complete`, errors as `{'status_code': N, 'result': resp.text}`),
//! through a real Pushpin against recorded upstreams on loopback.
//!
//! `google_finance` is the original file byte for byte: its fixed `http://finance.google.com`
//! host reaches the fake upstream through `http_proxy`. `nyt_top` differs by one line (its
//! `https://` host comes from `NYT_BASE_URL`). Their `site-packages` are installed by
//! `scripts/install-deps.sh --tests` (`scripts/fetcher_deps.py`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const KEY: &str = "nyt-key-0d9c";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/original")
}

fn recorded(name: &str) -> Value {
    let path = fixtures().join("nyt_top/testdata").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_fetchers_run_unmodified() {
    for folder in ["nyt_top", "google_finance"] {
        let marker = fixtures()
            .join(folder)
            .join("site-packages/.restream-requirements");
        assert!(
            marker.is_file(),
            "{folder}'s dependencies are not installed: run `bash scripts/install-deps.sh --tests` \
             (or python3 scripts/fetcher_deps.py backend/tests/fixtures/original)"
        );
    }
    let stack = Stack::start_with(StackOptions {
        keys: Some(json!({"nyt-top": {"api-key": KEY}}).to_string()),
        http_proxy_to_upstream: true,
        configure: Some(|s| {
            s.fetchers.dir = fixtures();
            // The original metadata declares no `env`: the operator passes the base URL.
            s.fetchers.process_env.push("NYT_BASE_URL".into());
            s.fetchers.poll_interval_overrides.insert(
                "google-finance".into(),
                Duration::from_secs_f64(POLL_INTERVAL),
            );
            s.limits.max_free_params = 2;
            s.limits.max_free_param_value_len = 16;
        }),
        ..StackOptions::default()
    })
    .await;
    stack
        .upstream
        .set_body("/svc/topstories/v2/world.json", recorded("world.json"));
    let quotes = std::fs::read_to_string(fixtures().join("google_finance/testdata/info.txt"));
    stack.upstream.set_raw_body(
        "http://finance.google.com/finance/info?client=ig&q=AAPL,GOOG",
        &quotes.unwrap(),
    );

    // The catalog says these take free-form params.
    let (_, catalog) = get_json(&format!("{}/channels", stack.http_url)).await;
    let nyt = catalog["channels"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "nyt-top"))
        .cloned()
        .unwrap_or_else(|| catalog["channels"]["nyt-top"].clone());
    assert_eq!(nyt["free_params"], true, "{catalog}");

    // A param the metadata never declared is taken, reaches the fetcher, and names the channel.
    let mut c = Client::connect(&stack.ws_url).await;
    let reply = c.subscribe("nyt-top", json!({"section": "world"})).await;
    assert_eq!(reply["params"], json!({"section": "world"}), "{reply}");
    let (snap, _) = c.recv_type("snapshot", Duration::from_secs(20)).await;
    let urls: Vec<&str> = snap["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["short_url"].as_str().unwrap())
        .collect();
    assert_eq!(urls.len(), 2, "{snap}");
    assert!(urls.contains(&"http://nyti.ms/2eAb1cD"), "{snap}");
    let paths = stack.upstream.paths();
    assert!(
        paths
            .iter()
            .any(|p| p == &format!("/svc/topstories/v2/world.json?api-key={KEY}")),
        "{paths:?}"
    );

    // No `complete`: a new article is `new`, a changed one `updated`, none `removed`.
    stack.upstream.set_body(
        "/svc/topstories/v2/world.json",
        recorded("world_later.json"),
    );
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let m = c
            .recv(Duration::from_secs(20))
            .await
            .expect("new and updated");
        match m["type"].as_str() {
            Some("new") | Some("updated") => seen.push(m),
            Some("removed") => panic!("nothing is removed without `complete`: {m}"),
            _ => {}
        }
    }
    seen.sort_by_key(|m| m["type"].as_str().map(str::to_string));
    assert_eq!(seen[0]["item"]["short_url"], "http://nyti.ms/2eIj3kL");
    assert_eq!(seen[1]["type"], "updated");
    assert_eq!(seen[1]["item"]["title"], "Storm Makes Landfall");

    // The original's error answer, `{'status_code': 500, 'result': resp.text}`, degrades the
    // channel with a general message; the text stays in the log.
    stack.upstream.fail("/svc/topstories/v2/world.json");
    let (status, _) = c.recv_type("status", Duration::from_secs(20)).await;
    assert_eq!(
        (status["status"].as_str(), status["code"].as_str()),
        (Some("degraded"), Some("upstream_unavailable")),
        "{status}"
    );
    assert!(stack
        .backend
        .log_text()
        .contains("upstream of nyt_top failed with status 500"));

    // The byte-for-byte original: `requests` from its site-packages, through the proxy.
    let mut q = Client::connect(&stack.ws_url).await;
    q.subscribe("google-finance", json!({"symbols": "AAPL,GOOG"}))
        .await;
    let (snap, _) = q.recv_type("snapshot", Duration::from_secs(20)).await;
    let mut tickers: Vec<&str> = snap["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["t"].as_str().unwrap())
        .collect();
    tickers.sort();
    assert_eq!(tickers, ["AAPL", "GOOG"], "{snap}");
    assert_eq!(snap["channel"], "google-finance");

    // Free-form params are bounded, with their own codes, and counted.
    let too_many = q
        .request(json!({"action": "subscribe", "channel": "google-finance",
            "params": {"a": "1", "b": "2", "c": "3"}}))
        .await;
    assert_eq!(too_many["code"], "too_many_params", "{too_many}");
    let too_long = q
        .request(json!({"action": "subscribe", "channel": "google-finance",
            "params": {"symbols": "A".repeat(17)}}))
        .await;
    assert_eq!(too_long["code"], "param_too_long", "{too_long}");
    let (code, body) = get_json(&format!("{}/channels/nyt-top?a=1&b=2&c=3", stack.http_url)).await;
    assert_eq!(
        (code, &body["error"]["code"]),
        (400, &json!("too_many_params"))
    );
    let metrics = reqwest::get(format!("http://{}/metrics", stack.backend.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"restream_free_param_refusals_total{limit="count"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"restream_free_param_refusals_total{limit="value_length"} 1"#));
    // Nothing but loopback was asked.
    assert!(
        stack
            .upstream
            .paths()
            .iter()
            .all(|p| p.starts_with('/') || p.starts_with("http://finance.google.com/")),
        "{:?}",
        stack.upstream.paths()
    );
}

/// The production profile: the byte-for-byte original `google_finance`, deployed as a Lambda
/// function (minilambda, the AWS runtime client, cwd = the package root as on Lambda) with the
/// `site-packages` its package carries, keys and items on moto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_original_fetcher_runs_as_a_lambda_with_its_site_packages() {
    let folder = fixtures().join("google_finance");
    assert!(
        folder
            .join("site-packages/.restream-requirements")
            .is_file(),
        "run `bash scripts/install-deps.sh --tests` first"
    );
    let stack = Stack::start_with(StackOptions {
        aws: Some(AwsOptions {
            keys: Some("{}".into()),
            functions: vec![folder.clone()],
        }),
        http_proxy_to_upstream: true,
        ..StackOptions::default()
    })
    .await;
    let quotes = std::fs::read_to_string(folder.join("testdata/info.txt")).unwrap();
    stack.upstream.set_raw_body(
        "http://finance.google.com/finance/info?client=ig&q=AAPL",
        &quotes,
    );

    let mut c = Client::connect(&stack.ws_url).await;
    let reply = c
        .subscribe("google-finance", json!({"symbols": "AAPL"}))
        .await;
    assert_eq!(reply["params"], json!({"symbols": "AAPL"}));
    let (snap, _) = c.recv_type("snapshot", Duration::from_secs(30)).await;
    assert_eq!(snap["items"].as_array().map(Vec::len), Some(2), "{snap}");
    let asked = stack.upstream.paths();
    assert!(
        asked
            .iter()
            .any(|p| p == "http://finance.google.com/finance/info?client=ig&q=AAPL"),
        "{asked:?}"
    );
    let lambda = stack.aws.as_ref().unwrap().lambda.log_text();
    assert!(
        lambda.contains("restreamables_google_finance"),
        "served by the Lambda function:\n{lambda}"
    );
}
