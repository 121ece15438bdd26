//! Plain HTTP: a GET answering JSON, and `/metrics` parsed as Prometheus exposition format;
//! panics where a test should fail.

use std::time::Duration;

pub use prometheus_parse::Scrape;
use prometheus_parse::Value as Sample;
use serde_json::Value;

/// A GET through Pushpin (or to the backend): status and JSON body.
pub async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"));
    (status, body)
}

/// `/metrics` of a backend, parsed as Prometheus exposition format.
pub async fn scrape(url: &str) -> Scrape {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid exposition format")
}

/// The sum of the samples of `name` whose labels include `labels` (a histogram counts its
/// observations).
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => *v,
            Sample::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Sample::Summary(_) => panic!("no summaries expected"),
        })
        .sum()
}
