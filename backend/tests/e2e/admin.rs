//! Issue 20, the admin API through a real Pushpin: a request from the public surface is
//! refused as if the routes did not exist (Pushpin signs it), the same request straight to
//! the backend port and to the private metrics listener is served.

use crate::support::*;

const TOKEN: &str = "e2e-admin-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_for_direct_callers_only() {
    let metrics_port = free_port();
    let stack = Stack::start_with(StackOptions {
        env: vec![
            ("RESTREAM_ADMIN__TOKEN".into(), TOKEN.into()),
            (
                "RESTREAM_SERVER__METRICS_LISTEN".into(),
                format!("127.0.0.1:{metrics_port}"),
            ),
        ],
        ..StackOptions::default()
    })
    .await;
    let client = reqwest::Client::new();
    let get = |base: String| {
        client
            .get(format!("{base}/admin/channels/usgs-earthquakes/sinks"))
            .bearer_auth(TOKEN)
            .send()
    };
    // Through Pushpin's public port: 404, token or not.
    let public = get(stack.http_url.clone()).await.unwrap();
    assert_eq!(public.status(), 404);
    let body: serde_json::Value = public.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");

    // Straight to the backend port and to the metrics listener: served.
    for base in [
        format!("http://{}", stack.backend.addr),
        format!("http://127.0.0.1:{metrics_port}"),
    ] {
        let direct = get(base.clone()).await.unwrap();
        assert_eq!(direct.status(), 200, "{base}");
        let body: serde_json::Value = direct.json().await.unwrap();
        // The default param is part of the canonical id.
        assert_eq!(
            body["channel"], "usgs-earthquakes?feed=all_hour",
            "{base}: {body}"
        );
        assert!(body["sinks"].is_array(), "{base}: {body}");
        let anonymous = client
            .get(format!("{base}/admin/sinks"))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "{base}");
    }
    // The token never shows in the backend's log.
    let log = std::fs::read_to_string(stack.backend.log_path()).unwrap_or_default();
    assert!(!log.contains(TOKEN));
}
