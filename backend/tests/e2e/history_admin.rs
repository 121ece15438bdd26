//! Issue 20: the admin API is on the backend port only (through Pushpin it is not there,
//! whatever the token), needs the admin token, is off without one, refuses bad requests with
//! their codes, and manages archive sinks (list, PUT, GET, DELETE; a settings sink cannot be
//! removed; what was archived stays).

use reqwest::Method;
use serde_json::{json, Value};

use crate::history_archive::{admin, archive_stack, archived_up_to, objects, ADMIN, ARCHIVED};
use crate::history_support::*;
use crate::push::*;
use crate::support::Stack;

/// The push stack with the admin API on (no archive settings).
async fn admin_stack(token: Option<&str>) -> Stack {
    let mut options = push_options(None);
    if let Some(t) = token {
        options.env.push(("RESTREAM_ADMIN__TOKEN".into(), t.into()));
    }
    Stack::start_with(options).await
}

const SINKS: &str = "/admin/sinks";
const API_SINK: &str = "/admin/channels/e2e-feed/sinks/local?site=api";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_on_the_backend_port_only_with_its_token() {
    let stack = admin_stack(Some(ADMIN)).await;
    let (sinks, api_sink) = (SINKS, API_SINK);
    // Through Pushpin: not there, whatever the token.
    for token in [Some(ADMIN), None] {
        let r = get(&stack.http_url, sinks, token).await;
        assert_eq!((r.status, r.code()), (404, "not_found"), "{}", r.body);
        let r = get(&stack.http_url, api_sink, token).await;
        assert_eq!(r.status, 404, "{}", r.body);
    }
    // On the backend port: the token, in the header.
    let r = admin(&stack, Method::GET, sinks, None).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"), "{}", r.body);
    let r = admin(
        &stack,
        Method::GET,
        sinks,
        Some("not-the-admin-token-0000000000"),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (401, "invalid_credential"),
        "{}",
        r.body
    );
    let r = admin(&stack, Method::PUT, api_sink, Some(FEED_KEY)).await;
    assert_eq!(
        (r.status, r.code()),
        (401, "invalid_credential"),
        "a producer key is not one"
    );
    let r = admin(&stack, Method::GET, sinks, Some(ADMIN)).await;
    assert_eq!(
        (r.status, r.body["sinks"].clone()),
        (200, json!([])),
        "no sink: {}",
        r.body
    );

    // Refusals, each with its code.
    let cases = [
        (
            Method::PUT,
            "/admin/channels/no-such-channel/sinks/local",
            404,
            "unknown_channel",
        ),
        (
            Method::PUT,
            "/admin/channels/e2e-feed/sinks/local",
            400,
            "invalid_params",
        ),
        (
            Method::PUT,
            "/admin/channels/e2e-feed/sinks/ftp?site=api",
            400,
            "unknown_sink_type",
        ),
        (
            Method::PUT,
            "/admin/channels/e2e-feed/sinks/s3?site=api",
            409,
            "sink_not_configured",
        ),
        (
            Method::GET,
            "/admin/channels/e2e-feed/sinks/local?site=none",
            404,
            "sink_not_found",
        ),
    ];
    for (method, path, status, code) in cases {
        let r = admin(&stack, method.clone(), path, Some(ADMIN)).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{method} {path}: {}",
            r.body
        );
    }
    let r = admin(&stack, Method::DELETE, api_sink, Some(ADMIN)).await;
    assert_eq!((r.status, r.code()), (404, "sink_not_found"), "{}", r.body);
    let log = stack.backend.log_text();
    assert!(!log.contains(ADMIN), "the admin token reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_admin_api_is_not_there() {
    let stack = admin_stack(None).await;
    for (method, path) in [(Method::GET, SINKS), (Method::PUT, API_SINK)] {
        for token in [Some(ADMIN), None] {
            let r = admin(&stack, method.clone(), path, token).await;
            assert_eq!(
                (r.status, r.code()),
                (404, "not_found"),
                "{method} {path}: {}",
                r.body
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_turns_archive_sinks_on_and_off() {
    let dir = tempfile::Builder::new()
        .prefix("adm")
        .tempdir_in("/tmp")
        .unwrap();
    let stack = archive_stack(dir.path()).await;
    let (sinks, api_sink) = (SINKS, API_SINK);
    let r = admin(&stack, Method::GET, sinks, Some(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed: Vec<(String, String)> = r.body["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["channel"].as_str().unwrap().into(),
                s["enabled_by"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(listed, [(ARCHIVED.to_string(), "settings".to_string())]);
    let r = admin(
        &stack,
        Method::DELETE,
        "/admin/channels/e2e-feed/sinks/local?site=ar",
        Some(ADMIN),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "sink_in_settings"),
        "{}",
        r.body
    );

    // PUT turns a sink on (twice is the same), events get archived, DELETE turns it off.
    let before = publish(
        &stack.http_url,
        FEED,
        "site=api",
        FEED_KEY,
        &[json!("before")],
    )
    .await;
    let on = admin(&stack, Method::PUT, api_sink, Some(ADMIN)).await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(
        (on.body["channel"].as_str(), on.body["enabled_by"].as_str()),
        (Some("e2e-feed?site=api"), Some("api"))
    );
    let again = admin(&stack, Method::PUT, api_sink, Some(ADMIN)).await;
    assert_eq!(again.status, 200, "{}", again.body);
    let last = publish(
        &stack.http_url,
        FEED,
        "site=api",
        FEED_KEY,
        &[json!(1), json!(2)],
    )
    .await;
    let state = archived_up_to(&stack, FEED, "site=api", last).await;
    assert_eq!(state["lag_events"], 0, "{state}");
    let files = objects(dir.path(), "e2e-feed?site=api");
    let lines: Vec<Value> = files.values().flatten().cloned().collect();
    // From the log's floor: the event before the PUT too, each once.
    assert_eq!(
        seqs(&lines),
        (before..=last).collect::<Vec<_>>(),
        "{files:?}"
    );
    let listed = admin(
        &stack,
        Method::GET,
        "/admin/channels/e2e-feed/sinks?site=api",
        Some(ADMIN),
    )
    .await;
    assert_eq!(
        listed.body["channel"], "e2e-feed?site=api",
        "{}",
        listed.body
    );
    assert_eq!(
        listed.body["sinks"].as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.body
    );
    let all = admin(&stack, Method::GET, sinks, Some(ADMIN)).await;
    assert_eq!(
        all.body["sinks"].as_array().map(Vec::len),
        Some(2),
        "{}",
        all.body
    );
    let off = admin(&stack, Method::DELETE, api_sink, Some(ADMIN)).await;
    assert_eq!(off.status, 204, "{}", off.body);
    for method in [Method::GET, Method::DELETE] {
        let r = admin(&stack, method, api_sink, Some(ADMIN)).await;
        assert_eq!((r.status, r.code()), (404, "sink_not_found"), "{}", r.body);
    }
    assert_eq!(
        files,
        objects(dir.path(), "e2e-feed?site=api"),
        "what was archived stays"
    );

    let log = stack.backend.log_text();
    assert!(!log.contains(ADMIN), "the admin token reached the log");
}
