//! Feed channels through the whole stack (Pushpin, backend, real poller, fake upstream on
//! loopback): a recorded RSS feed becomes a snapshot keyed by guid, a new entry arrives as
//! `new`, and a `url` param outside `declarative.url_allowlist` is refused at subscribe.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// An RSS channel on the fake upstream (its base URL is the one USGS uses in the stack).
const NEWS: &str = r#"kind = "feed"
name = "e2e-news"
description = "recorded BBC RSS"
url = "{base}/news/world/rss.xml"
base_url_env = "USGS_BASE_URL"
poll_interval = 1
"#;

fn recorded(name: &str) -> String {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../channels/testdata");
    std::fs::read_to_string(root.join(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_is_polled_into_items_and_urls_are_allowlisted() {
    let stack = Stack::start_with(StackOptions {
        extra_channels: vec![("e2e-news.toml", NEWS.to_string())],
        // Only the test lets plain HTTP to loopback through; the default list is empty.
        configure: Some(|s| {
            s.declarative.url_allowlist = vec!["http://127.0.0.1".into()];
            // Every channel here shares the loopback host: no per-host budget in the way.
            s.declarative.host_calls_per_minute = 0;
        }),
        ..StackOptions::default()
    })
    .await;
    let rss = recorded("bbc-news_world.xml");
    stack
        .upstream
        .state
        .lock()
        .unwrap()
        .raw
        .insert("/news/world/rss.xml".into(), rss.clone());

    let mut c = Client::connect(&stack.ws_url).await;
    let r = c
        .request(json!({"action": "subscribe", "channel": "e2e-news", "ref": "n"}))
        .await;
    assert_eq!(r["type"], "subscribed", "{r}");
    let (snapshot, _) = c.recv_type("snapshot", Duration::from_secs(10)).await;
    let ids: Vec<&str> = snapshot["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "{snapshot}");
    assert!(ids.contains(&"https://www.bbc.co.uk/news/articles/c9e4r7hqk2ao#0"));

    // A new story in the feed arrives as one `new` event.
    let extra = "<item><title><![CDATA[Breaking]]></title><link>https://www.bbc.co.uk/news/articles/cnew</link><guid isPermaLink=\"false\">https://www.bbc.co.uk/news/articles/cnew#0</guid></item>\n        <item>";
    let updated = rss.replacen("<item>", extra, 1);
    stack
        .upstream
        .state
        .lock()
        .unwrap()
        .raw
        .insert("/news/world/rss.xml".into(), updated);
    let (new, _) = c.recv_type("new", Duration::from_secs(10)).await;
    assert_eq!(
        new["item"]["id"],
        "https://www.bbc.co.uk/news/articles/cnew#0"
    );
    assert_eq!(new["item"]["title"], "Breaking");

    // The generic `feed` channel: a URL on an allowed host is polled like any channel...
    let url = format!("http://{}/news/world/rss.xml", stack.upstream.addr);
    let r = c
        .request(json!({"action": "subscribe", "channel": "feed", "params": {"url": url}}))
        .await;
    assert_eq!(r["type"], "subscribed", "{r}");
    let (snapshot, _) = c.recv_type("snapshot", Duration::from_secs(10)).await;
    assert_eq!(snapshot["channel"], "feed");
    assert_eq!(snapshot["items"].as_array().unwrap().len(), 5);

    // ...and one elsewhere is refused at subscribe, with its own code, never polled.
    let r = c
        .request(json!({"action": "subscribe", "channel": "feed", "params": {"url": "https://example.com/rss.xml"}, "ref": "x"}))
        .await;
    assert_eq!(r["type"], "error", "{r}");
    assert_eq!(r["code"], "url_not_allowed", "{r}");
    assert_eq!(r["ref"], "x");
    let items = reqwest::get(format!(
        "{}/channels/feed/items?url=https%3A%2F%2Fexample.com%2Frss.xml",
        stack.http_url
    ))
    .await
    .unwrap();
    assert_eq!(items.status(), 400);
    let body: serde_json::Value = items.json().await.unwrap();
    assert_eq!(body["error"]["code"], "url_not_allowed", "{body}");
}
