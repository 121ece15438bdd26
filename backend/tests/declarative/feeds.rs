//! Feed channels: RSS, Atom and JSON Feed examples, conditional GET, the `url` allowlist and
//! redirects, the feed size limit.

use std::collections::BTreeMap;

use restream::config::Declarative;
use restream::fetcher::http::{HttpLimits, Refusal};
use restream::fetcher::{Fetcher, Keys};
use serde_json::json;

use crate::upstream::{ok, Answer, Upstream};
use crate::*;

#[tokio::test]
async fn bbc_rss_items_by_guid_and_conditional_get() {
    let up = Upstream::start().await;
    up.route(
        "/news/world/rss.xml",
        ok(recorded("bbc-news_world.xml")).header("ETag", "\"w1\""),
    );
    let f = load("bbc-news.toml", "BBC_BASE_URL", &up.base);
    let o = fetch(&f, &[("section", "world")], &Keys::new(), None)
        .await
        .unwrap();
    assert_eq!(
        ids(&o, "id"),
        [
            "https://www.bbc.co.uk/news/articles/c0l1m4t3t4lk#0",
            "https://www.bbc.co.uk/news/articles/c9e4r7hqk2ao#0",
            "https://www.bbc.co.uk/news/articles/cx3lect10nc7#0",
            "https://www.bbc.co.uk/news/articles/c4rt3f4ct5zo#0",
        ]
    );
    assert_eq!(
        o.items[0]["title"],
        "Leaders meet for climate talks as deadline nears"
    );
    assert_eq!(o.items[0]["published"], "2026-12-02T11:41:07+00:00");
    assert!(!o.complete, "a feed is a window, not the whole collection");
    assert_eq!(o.state, Some(json!({"etag": "\"w1\""})));

    up.route(
        "/news/world/rss.xml",
        Answer {
            status: "304 Not Modified",
            headers: vec![],
            body: String::new(),
        },
    );
    let again = fetch(&f, &[("section", "world")], &Keys::new(), o.state.as_ref())
        .await
        .unwrap();
    assert!(again.not_modified);
    let (head, _) = up.request(1);
    assert!(
        head.to_lowercase().contains("if-none-match: \"w1\""),
        "{head}"
    );
}

#[tokio::test]
async fn github_releases_atom() {
    let up = Upstream::start().await;
    up.route(
        "/tokio-rs/tokio/releases.atom",
        ok(recorded("github-releases_tokio.atom")),
    );
    let f = load("github-releases.toml", "GITHUB_WEB_BASE_URL", &up.base);
    let o = fetch(
        &f,
        &[("owner", "tokio-rs"), ("repo", "tokio")],
        &Keys::new(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        ids(&o, "id")[0],
        "tag:github.com,2008:Repository/94626938/tokio-1.49.0"
    );
    assert_eq!(o.items.len(), 3);
    assert_eq!(
        o.items[0]["link"],
        "https://github.com/tokio-rs/tokio/releases/tag/tokio-1.49.0"
    );
    assert_eq!(o.items[0]["authors"], json!(["Darksonn"]));
    // A param cannot add a path segment: `/` is encoded.
    let _ = fetch(
        &f,
        &[("owner", "a/../b"), ("repo", "r")],
        &Keys::new(),
        None,
    )
    .await;
    assert_eq!(up.lines()[1], "GET /a%2F..%2Fb/r/releases.atom HTTP/1.1");
}

#[tokio::test]
async fn json_feed_through_a_transform() {
    let up = Upstream::start().await;
    up.route("/feed.json", ok(recorded("jsonfeed-org_feed.json")));
    let f = load("jsonfeed-org.toml", "JSONFEED_BASE_URL", &up.base);
    let o = fetch(&f, &[], &Keys::new(), None).await.unwrap();
    assert_eq!(
        ids(&o, "id"),
        [
            "https://www.jsonfeed.org/2020/08/07/json-feed-version.html",
            "https://www.jsonfeed.org/2017/05/17/announcing-json-feed.html"
        ]
    );
    assert_eq!(o.items[0]["source"], "jsonfeed.org");
    assert_eq!(
        o.items[1]["summary"],
        "JSON Feed is a new format, similar to RSS and Atom but in JSON."
    );
    assert!(o.items[0]["summary"].as_str().unwrap().chars().count() <= 280);
    assert_eq!(o.items[0]["published"], "2020-08-07T16:44:36+00:00");
}

fn feed_channel(limits: &HttpLimits) -> restream::fetcher::HttpFetcher {
    restream::fetcher::HttpFetcher::load_with(
        &repo("channels/feed.toml"),
        std::time::Duration::from_secs(5),
        limits,
    )
    .unwrap()
}

#[tokio::test]
async fn a_url_param_must_name_an_allowed_host() {
    let up = Upstream::start().await;
    up.route("/rss.xml", ok(recorded("bbc-news_world.xml")));
    let url = format!("{}/rss.xml", up.base);
    let params: BTreeMap<String, String> = [("url".to_string(), url.clone())].into();

    // By default nothing is allowed, loopback included: refused at subscribe and at fetch.
    let closed = feed_channel(&HttpLimits::default());
    let (code, message) = closed.admit(&params).unwrap_err();
    assert_eq!(code, Refusal::UrlNotAllowed);
    assert!(message.contains("allowlist"), "{message}");
    let r = fetch(&closed, &[("url", &url)], &Keys::new(), None).await;
    assert_eq!(refusal(&r), "url_not_allowed");

    let open = feed_channel(&loopback_limits());
    assert!(open.admit(&params).is_ok());
    let o = fetch(&open, &[("url", &url)], &Keys::new(), None)
        .await
        .unwrap();
    assert_eq!(o.items.len(), 4);
    for bad in [
        "https://example.com/rss.xml",
        "file:///etc/passwd",
        "http://user:pw@127.0.0.1/rss.xml",
        "not a url",
    ] {
        let p: BTreeMap<String, String> = [("url".to_string(), bad.to_string())].into();
        assert!(open.admit(&p).is_err(), "{bad}");
        let r = fetch(&open, &[("url", bad)], &Keys::new(), None).await;
        assert_eq!(refusal(&r), "url_not_allowed", "{bad}");
    }
    assert_eq!(up.lines().len(), 1, "refused URLs are never fetched");
}

#[tokio::test]
async fn a_redirect_to_a_host_not_allowed_is_refused() {
    let up = Upstream::start().await;
    let port = up.base.rsplit(':').next().unwrap().to_string();
    // `localhost` is the same loopback server, but not on the allowlist (127.0.0.1 is).
    up.route(
        "/moved.xml",
        Answer {
            status: "301 Moved Permanently",
            headers: vec![(
                "Location".into(),
                format!("http://localhost:{port}/rss.xml"),
            )],
            body: String::new(),
        },
    );
    up.route(
        "/here.xml",
        Answer {
            status: "302 Found",
            headers: vec![("Location".into(), "/rss.xml".into())],
            body: String::new(),
        },
    );
    up.route("/rss.xml", ok(recorded("bbc-news_world.xml")));
    let f = feed_channel(&loopback_limits());
    let r = fetch(
        &f,
        &[("url", &format!("{}/moved.xml", up.base))],
        &Keys::new(),
        None,
    )
    .await;
    assert_eq!(refusal(&r), "url_not_allowed");
    assert_eq!(
        up.lines(),
        ["GET /moved.xml HTTP/1.1"],
        "the redirect was not followed"
    );
    let o = fetch(
        &f,
        &[("url", &format!("{}/here.xml", up.base))],
        &Keys::new(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        o.items.len(),
        4,
        "a redirect on an allowed host is followed"
    );
}

#[tokio::test]
async fn a_feed_larger_than_allowed_is_refused() {
    let up = Upstream::start().await;
    up.route("/rss.xml", ok(recorded("bbc-news_world.xml")));
    let limits = HttpLimits::new(&Declarative {
        url_allowlist: vec!["http://127.0.0.1".into()],
        max_feed_bytes: 1000,
        ..Declarative::default()
    });
    let f = feed_channel(&limits);
    let r = fetch(
        &f,
        &[("url", &format!("{}/rss.xml", up.base))],
        &Keys::new(),
        None,
    )
    .await;
    assert_eq!(refusal(&r), "feed_too_large");
    up.route("/junk", ok("<html>not a feed</html>".into()));
    let r = fetch(
        &f,
        &[("url", &format!("{}/junk", up.base))],
        &Keys::new(),
        None,
    )
    .await;
    assert!(
        matches!(
            r,
            Err(restream::fetcher::FetchError::Upstream { status: 502, .. })
        ),
        "{r:?}"
    );
}
