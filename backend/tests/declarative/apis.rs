//! Keyless JSON APIs: link-header and cursor pagination, transforms, a templated POST body,
//! page numbers, templated headers with keys.

use restream::fetcher::Keys;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::upstream::{ok, Upstream};
use crate::*;

#[tokio::test]
async fn github_events_follow_link_headers_up_to_the_cap() {
    let up = Upstream::start().await;
    let page = |n: u32| format!("{}/events?per_page=30&page={n}", up.base);
    up.route(
        "/events?per_page=30",
        ok(recorded("github-events_page1.json")).header(
            "Link",
            &format!("<{}>; rel=\"next\", <{}>; rel=\"last\"", page(2), page(9)),
        ),
    );
    up.route(
        "/events?per_page=30&page=2",
        ok(recorded("github-events_page2.json"))
            .header("Link", &format!("<{}>; rel=\"next\"", page(3))),
    );
    up.route(
        "/events?per_page=30&page=3",
        ok(recorded("github-events_page3.json"))
            .header("Link", &format!("<{}>; rel=\"next\"", page(4))),
    );
    let f = load("github-events.toml", "GITHUB_API_BASE_URL", &up.base);
    let o = fetch(&f, &[], &Keys::new(), None).await.unwrap();
    assert_eq!(o.items.len(), 12, "3 pages of 4");
    assert_eq!(
        up.lines(),
        [
            "GET /events?per_page=30 HTTP/1.1",
            "GET /events?per_page=30&page=2 HTTP/1.1",
            "GET /events?per_page=30&page=3 HTTP/1.1",
        ],
        "max_pages = 3: page 4 is not asked for"
    );
    assert!(!o.complete);
    assert_eq!(
        Value::Object(o.items[0].clone()),
        json!({"id": "45123456799", "type": "WatchEvent", "actor": "user1", "repo": "org1/project1", "created_at": "2026-12-02T12:39:00Z"})
    );
    let (head, _) = up.request(0);
    let head = head.to_lowercase();
    assert!(
        head.contains("accept: application/vnd.github+json"),
        "{head}"
    );
    assert!(head.contains("x-github-api-version: 2022-11-28"), "{head}");

    // A next link to another host is refused, not followed.
    up.route(
        "/events?per_page=30",
        ok(recorded("github-events_page1.json")).header(
            "Link",
            "<https://elsewhere.example/events?page=2>; rel=\"next\"",
        ),
    );
    let r = fetch(&f, &[], &Keys::new(), None).await;
    assert_eq!(refusal(&r), "url_not_allowed");
    assert_eq!(up.lines().len(), 4);
}

#[tokio::test]
async fn wikipedia_cursor_pages_through_a_transform() {
    let up = Upstream::start().await;
    let first = "/w/api.php?action=query&list=recentchanges&format=json&formatversion=2&rcprop=title%7Cids%7Ctimestamp%7Cuser%7Ccomment%7Csizes&rctype=edit&rclimit=50";
    up.route(first, ok(recorded("wikipedia-recentchanges_page1.json")));
    let second = format!("{first}&rccontinue=20261202123000%7C1900000010");
    up.route(&second, ok(recorded("wikipedia-recentchanges_page2.json")));
    let f = load(
        "wikipedia-recent-changes.toml",
        "WIKIPEDIA_BASE_URL",
        &up.base,
    );
    let o = fetch(&f, &[("type", "edit"), ("count", "50")], &Keys::new(), None)
        .await
        .unwrap();
    assert_eq!(
        up.lines(),
        [
            format!("GET {first} HTTP/1.1"),
            format!("GET {second} HTTP/1.1")
        ]
    );
    assert_eq!(
        ids(&o, "id"),
        [
            "1900000010",
            "1900000011",
            "1900000012",
            "1900000020",
            "1900000021",
            "1900000022"
        ]
    );
    assert_eq!(o.items[0]["delta"], -37);
    assert_eq!(o.items[0]["title"], "Article 1-0");
    let (head, _) = up.request(0);
    assert!(
        head.contains("api-user-agent: restream") || head.contains("Api-User-Agent: restream"),
        "{head}"
    );
}

#[tokio::test]
async fn nws_alerts_are_flattened_and_complete() {
    let up = Upstream::start().await;
    up.route("/alerts/active?area=TX", ok(recorded("nws-alerts_TX.json")));
    let f = load("nws-alerts.toml", "NWS_BASE_URL", &up.base);
    let o = fetch(&f, &[("area", "TX")], &Keys::new(), None)
        .await
        .unwrap();
    assert!(o.complete);
    assert_eq!(o.items.len(), 3);
    assert_eq!(o.items[1]["event"], "Flood Watch");
    assert_eq!(o.items[1]["severity"], "Severe");
    assert!(o
        .items
        .iter()
        .all(|i| i["id"].as_str().unwrap().starts_with("urn:oid:")));
    let (head, _) = up.request(0);
    let head = head.to_lowercase();
    assert!(
        head.contains("user-agent: restream (https://github.com/restream/restream)"),
        "{head}"
    );
    assert!(head.contains("accept: application/geo+json"), "{head}");
}

#[tokio::test]
async fn exchange_rates_object_becomes_items() {
    let up = Upstream::start().await;
    up.route("/v6/latest/USD", ok(recorded("exchange-rates_USD.json")));
    let f = load("exchange-rates.toml", "EXCHANGE_RATES_BASE_URL", &up.base);
    let o = fetch(&f, &[("currency", "USD")], &Keys::new(), None)
        .await
        .unwrap();
    assert_eq!(o.items.len(), 9);
    let eur = o.items.iter().find(|i| i["id"] == "EUR").unwrap();
    assert_eq!(
        &Value::Object(eur.clone()),
        &json!({"id": "EUR", "rate": 0.861, "base": "USD", "updated": "Tue, 02 Dec 2026 00:02:31 +0000"})
    );
    assert!(o.complete);
}

#[tokio::test]
async fn countries_post_a_templated_graphql_body() {
    let up = Upstream::start().await;
    up.route("/graphql", ok(recorded("countries_EU.json")));
    let f = load("countries.toml", "COUNTRIES_BASE_URL", &up.base);
    let o = fetch(&f, &[("continent", "EU")], &Keys::new(), None)
        .await
        .unwrap();
    assert_eq!(ids(&o, "code"), ["AD", "AT", "BE", "CH", "NO"]);
    let (head, body) = up.request(0);
    assert!(head.starts_with("POST /graphql HTTP/1.1"), "{head}");
    assert_eq!(
        head.to_lowercase()
            .matches("content-type: application/json")
            .count(),
        1,
        "{head}"
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["variables"], json!({"c": "EU"}));
    assert!(body["query"]
        .as_str()
        .unwrap()
        .starts_with("query ($c: String!)"));
}

#[tokio::test]
async fn page_numbers_until_an_empty_page() {
    let up = Upstream::start().await;
    up.route(
        "/list?page=1",
        ok(json!({"data": [{"id": 1}, {"id": 2}]}).to_string()),
    );
    up.route("/list?page=2", ok(json!({"data": [{"id": 3}]}).to_string()));
    up.route("/list?page=3", ok(json!({"data": []}).to_string()));
    let text = format!(
        "name = \"paged\"\nurl = \"{}/list\"\nitems = \"/data\"\ncomplete = true\n[pagination]\ntype = \"page\"\nparam = \"page\"\n",
        up.base
    );
    let f = channel(&text, &loopback_limits());
    let o = fetch(&f, &[], &Keys::new(), None).await.unwrap();
    assert_eq!(ids(&o, "id"), ["1", "2", "3"]);
    assert!(o.complete, "every page was read");
    assert_eq!(up.lines().len(), 3);

    // Capped at 2 pages by the settings: the list is then not complete.
    let capped = channel(
        &text,
        &restream::fetcher::http::HttpLimits::new(&restream::config::Declarative {
            max_pages: 2,
            ..Default::default()
        }),
    );
    let o = fetch(&capped, &[], &Keys::new(), None).await.unwrap();
    assert_eq!(ids(&o, "id"), ["1", "2", "3"]);
    assert!(!o.complete);
    assert_eq!(up.lines().len(), 5);
}

#[tokio::test]
async fn keys_and_params_in_templated_headers_and_bodies() {
    let up = Upstream::start().await;
    up.route("/search", ok(json!({"hits": [{"id": "a"}]}).to_string()));
    let text = format!(
        r#"name = "templated"
url = "{}/search"
method = "POST"
items = "/hits"
[params.q]
required = true
[keys.token]
in = "template"
[headers]
Authorization = "Token {{key:token}}"
X-Query = "{{q}}"
Content-Type = "application/vnd.api+json"
[body]
query = "{{q}}"
auth = {{ token = "{{key:token}}" }}
"#,
        up.base
    );
    let f = channel(&text, &loopback_limits());
    let mut keys = Keys::new();
    keys.insert("token".into(), SecretString::from("s3cr3t"));
    let o = fetch(&f, &[("q", "rust \"jq\"")], &keys, None)
        .await
        .unwrap();
    assert_eq!(o.items.len(), 1);
    let (head, body) = up.request(0);
    assert!(head.contains("authorization: Token s3cr3t"), "{head}");
    assert!(head.contains("x-query: rust \"jq\""), "{head}");
    assert_eq!(
        head.matches("content-type:").count(),
        1,
        "a declared Content-Type replaces the body's: {head}"
    );
    assert!(
        head.contains("content-type: application/vnd.api+json"),
        "{head}"
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"query": "rust \"jq\"", "auth": {"token": "s3cr3t"}})
    );

    // A header value with a line break is refused before any call; so is a missing key.
    let before = up.lines().len();
    let r = fetch(&f, &[("q", "a\r\nX-Evil: 1")], &keys, None).await;
    assert!(
        matches!(
            r,
            Err(restream::fetcher::FetchError::Upstream { status: 400, .. })
        ),
        "{r:?}"
    );
    let r = fetch(&f, &[("q", "a")], &Keys::new(), None).await;
    let text = format!("{:?}", r.unwrap_err());
    assert!(
        text.contains("missing key") && !text.contains("s3cr3t"),
        "{text}"
    );
    assert_eq!(up.lines().len(), before);
}
