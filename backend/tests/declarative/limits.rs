//! The limits of declarative channels: transform output, per-host budget, bad channel files.

use std::time::Duration;

use restream::config::Declarative;
use restream::fetcher::http::HttpLimits;
use restream::fetcher::{FetchError, HttpFetcher, Keys};
use serde_json::json;

use crate::upstream::{ok, Upstream};
use crate::*;

#[tokio::test]
async fn a_transform_beyond_its_limits_is_refused() {
    let up = Upstream::start().await;
    up.route("/n", ok(json!({"n": 50}).to_string()));
    let limits = HttpLimits::new(&Declarative {
        transform_max_items: 10,
        ..Declarative::default()
    });
    let text = |t: &str| format!("name = \"t\"\nurl = \"{}/n\"\ntransform = '{t}'\n", up.base);
    let f = channel(&text("[range(.n) | {id: .}]"), &limits);
    assert_eq!(
        refusal(&fetch(&f, &[], &Keys::new(), None).await),
        "transform_failed"
    );
    let f = channel(&text("[range(5) | {id: .}]"), &limits);
    assert_eq!(
        fetch(&f, &[], &Keys::new(), None)
            .await
            .unwrap()
            .items
            .len(),
        5
    );
    let f = channel(&text("error(\"boom\")"), &limits);
    assert_eq!(
        refusal(&fetch(&f, &[], &Keys::new(), None).await),
        "transform_failed"
    );
    let f = channel(&text("{not: \"a list\"}"), &limits);
    assert!(matches!(
        fetch(&f, &[], &Keys::new(), None).await,
        Err(FetchError::Upstream { status: 502, .. })
    ));
}

#[tokio::test]
async fn each_host_has_a_budget_of_calls_per_minute() {
    let up = Upstream::start().await;
    up.route("/x", ok("[]".into()));
    let limits = HttpLimits::new(&Declarative {
        host_calls_per_minute: 2,
        ..Declarative::default()
    });
    let text = format!("name = \"t\"\nurl = \"{}/x\"\n", up.base);
    let a = channel(&text, &limits);
    let b = channel(&text, &limits);
    assert!(fetch(&a, &[], &Keys::new(), None).await.is_ok());
    assert!(fetch(&b, &[], &Keys::new(), None).await.is_ok());
    let r = fetch(&a, &[], &Keys::new(), None).await;
    assert_eq!(refusal(&r), "host_budget_exhausted");
    match r {
        Err(FetchError::Refused {
            retry_after: Some(s),
            ..
        }) => assert!(s > 0.0 && s <= 60.0),
        other => panic!("{other:?}"),
    }
    assert_eq!(up.lines().len(), 2, "the refused call never left");
}

#[test]
fn bad_channel_files_name_the_field() {
    let limits = HttpLimits::default();
    let load = |text: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        HttpFetcher::load_with(&path, Duration::from_secs(1), &limits)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let base = "name = \"t\"\nurl = \"https://x.invalid/a\"\n";
    let cases = [
        (format!("{base}transform = '.['\n"), "`transform`"),
        (format!("{base}[body]\na = 1\n"), "`body`"),
        (format!("{base}[headers]\nA = \"{{nope}}\"\n"), "`headers`"),
        (
            format!("{base}[pagination]\ntype = \"cursor\"\nfield = \"x\"\nparam = \"c\"\n"),
            "`pagination`",
        ),
        (
            format!("{base}[pagination]\ntype = \"sideways\"\n"),
            "sideways",
        ),
        ("name = \"t\"\nurl = \"{url}\"\n".to_string(), "`url`"),
        (format!("{base}[keys.k]\nin = \"header\"\n"), "`keys`"),
    ];
    for (text, expected) in cases {
        let e = load(&text);
        assert!(
            e.contains("bad.toml") && e.contains(expected),
            "{expected}: {e}"
        );
    }
}
