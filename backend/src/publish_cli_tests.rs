use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: PublishArgs,
}

fn args(argv: &[&str]) -> PublishArgs {
    Cli::try_parse_from(std::iter::once("publish").chain(argv.iter().copied()))
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
        .args
}

fn build(argv: &[&str], body: Option<&str>) -> Result<PublishRequest, PublishError> {
    request(&args(argv), body.map(|b| b.as_bytes().to_vec()))
}

#[test]
fn a_post_carries_the_params_encoded_in_the_query_and_the_body_as_json() {
    let r = build(
        &["board", "-p", "board=a b&c", "--param", "x=é/?"],
        Some("[{\"id\":1}]"),
    )
    .unwrap();
    assert_eq!(r.method, Method::POST);
    assert_eq!(
        r.url,
        "http://127.0.0.1:7999/channels/board/items?board=a%20b%26c&x=%C3%A9%2F%3F"
    );
    assert_eq!(r.content_type, Some("application/json"));
    assert_eq!(r.body.as_deref(), Some(&b"[{\"id\":1}]"[..]));
    assert_eq!(r.idempotency_key, None);
}

#[test]
fn ndjson_replace_and_an_idempotency_key() {
    let r = build(
        &[
            "board",
            "--ndjson",
            "--replace",
            "--url",
            "https://rs.example/api/",
            "--idempotency-key",
            "batch-7",
        ],
        Some("{\"id\":1}\n"),
    )
    .unwrap();
    assert_eq!(r.method, Method::PUT);
    assert_eq!(r.url, "https://rs.example/api/channels/board/items");
    assert_eq!(r.content_type, Some("application/x-ndjson"));
    assert_eq!(r.idempotency_key.as_deref(), Some("batch-7"));
}

#[test]
fn a_delete_names_the_id_in_the_path_and_has_no_body() {
    let a = args(&["board", "--delete", "a/b c", "-p", "board=x"]);
    assert!(!a.reads_body());
    let r = request(&a, None).unwrap();
    assert_eq!(r.method, Method::DELETE);
    assert_eq!(
        r.url,
        "http://127.0.0.1:7999/channels/board/items/a%2Fb%20c?board=x"
    );
    assert_eq!((r.content_type, r.body), (None, None));
    // A delete is one op: it cannot also replace the set or read NDJSON.
    for extra in ["--replace", "--ndjson"] {
        let refused = Cli::try_parse_from(["publish", "board", "--delete", "a", extra]);
        assert!(refused.is_err(), "{extra} with --delete");
    }
}

#[test]
fn bad_arguments_are_refused_before_anything_is_sent() {
    let usage = |argv: &[&str], body: Option<&str>| match build(argv, body) {
        Err(PublishError::Usage(m)) => m,
        other => panic!("{argv:?}: expected a usage error, got {other:?}"),
    };
    assert!(usage(&["b", "--url", "127.0.0.1:7999"], Some("{}")).contains("--url"));
    assert!(usage(&["b", "--url", "http://h/?x=1"], Some("{}")).contains("--url"));
    assert!(usage(&["b"], None).contains("body"));
    assert!(usage(&["b", "--delete", ""], None).contains("--delete"));
    let long = "k".repeat(MAX_IDEMPOTENCY_KEY_BYTES + 1);
    for key in ["", long.as_str(), "new\nline"] {
        let m = usage(&["b", "--idempotency-key", key], Some("{}"));
        assert!(m.contains("--idempotency-key"), "{key:?}: {m}");
    }
    let key = "k".repeat(MAX_IDEMPOTENCY_KEY_BYTES);
    assert!(build(&["b", "--idempotency-key", &key], Some("{}")).is_ok());
    // A param is written key=value.
    assert!(Cli::try_parse_from(["publish", "b", "-p", "novalue"]).is_err());
}

#[test]
fn errors_name_the_origin_only() {
    assert_eq!(
        origin("http://127.0.0.1:7999/channels/b/items?site=x"),
        "http://127.0.0.1:7999"
    );
    assert_eq!(origin("https://h/p"), "https://h");
    let e = PublishError::Api {
        status: 403,
        code: "forbidden".into(),
        message: "this credential may not publish to b".into(),
    };
    assert_eq!(
        e.to_string(),
        "forbidden: this credential may not publish to b"
    );
}
