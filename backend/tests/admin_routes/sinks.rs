//! Sinks listed, read, turned on and off; every refusal of the contract; a deployment with no
//! archive at all.

use super::*;

#[actix_web::test]
async fn sinks_are_listed_turned_on_read_and_turned_off() {
    let sinks = Arc::new(Sinks::new());
    let app = app!(state(on(false), Some(sinks.clone())).await);
    let ok_before = admin_requests("ok");

    let (status, _, body, headers) = call!(app, get("/admin/sinks"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers.get("Cache-Control").unwrap(), "no-store");
    assert_eq!(body["sinks"].as_array().unwrap().len(), 1);
    assert_eq!(body["sinks"][0]["enabled_by"], "settings");

    // On, twice (idempotent): the same state, one sink.
    let one = "/admin/channels/photon/sinks/local?site=tst";
    let (status, _, first, _) = call!(app, put(one));
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["channel"], "photon?site=tst");
    assert_eq!(first["sink"], "local");
    assert_eq!(first["enabled_by"], "api");
    for key in [
        "archived_seq",
        "archived_time_ms",
        "channel_seq",
        "lag_events",
        "lag_secs",
    ] {
        assert!(first[key].is_u64(), "{key} in {first}");
    }
    assert!(first["last_error"].is_null());
    let (status, _, again, _) = call!(app, put(one));
    assert_eq!((status, &again), (200, &first));
    assert_eq!(sinks.on.lock().unwrap().len(), 2);

    let (status, _, state, _) = call!(app, get(one));
    assert_eq!((status, &state), (200, &first));
    let (status, _, listed, _) = call!(app, get("/admin/channels/photon/sinks?site=tst"));
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["channel"], "photon?site=tst");
    assert_eq!(listed["sinks"], serde_json::json!([first]));
    // Another site's channel has none.
    let (_, _, other, _) = call!(app, get("/admin/channels/photon/sinks?site=xyz"));
    assert_eq!(other["sinks"], serde_json::json!([]));
    assert_eq!(
        call!(app, get("/admin/sinks")).2["sinks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Off: 204, then it is gone.
    let (status, _, _, _) = call!(app, delete(one));
    assert_eq!(status, 204);
    assert_eq!(sinks.on.lock().unwrap().len(), 1);
    for req in [get(one), delete(one)] {
        let (status, code, body, _) = call!(app, req);
        assert_eq!((status, code.as_str()), (404, "sink_not_found"), "{body}");
    }
    assert!(admin_requests("ok") >= ok_before + 8);
}

#[actix_web::test]
async fn refusals_name_what_went_wrong() {
    let sinks = Arc::new(Sinks::new());
    let app = app!(state(on(false), Some(sinks.clone())).await);
    let cases = [
        (
            put("/admin/channels/nope/sinks/local"),
            404,
            "unknown_channel",
        ),
        (get("/admin/channels/nope/sinks"), 404, "unknown_channel"),
        (
            put("/admin/channels/photon/sinks/local"),
            400,
            "invalid_params",
        ),
        (
            put("/admin/channels/photon/sinks/local?site=tst&color=red"),
            400,
            "invalid_params",
        ),
        (
            put("/admin/channels/photon/sinks/local?site=tst&limit=3"),
            400,
            "bad_query",
        ),
        (
            put("/admin/channels/photon/sinks/local?site=a&site=b"),
            400,
            "bad_query",
        ),
        (
            put("/admin/channels/photon/sinks/gcs?site=tst"),
            400,
            "unknown_sink_type",
        ),
        (
            delete("/admin/channels/feed/sinks/elasticsearch"),
            400,
            "unknown_sink_type",
        ),
        (
            put("/admin/channels/photon/sinks/s3?site=tst"),
            409,
            "sink_not_configured",
        ),
        (
            delete("/admin/channels/feed/sinks/local"),
            409,
            "sink_in_settings",
        ),
        (
            get("/admin/channels/feed/sinks/s3"),
            409,
            "sink_not_configured",
        ),
    ];
    for (req, status, code) in cases {
        let answer = call!(app, req);
        assert_eq!(
            (answer.0, answer.1.as_str()),
            (status, code),
            "{}",
            answer.2
        );
    }
    assert_eq!(sinks.on.lock().unwrap().len(), 1, "nothing changed");

    // Sink state that cannot be read: 503 with Retry-After, no detail of the failure.
    sinks.failing.store(true, Ordering::SeqCst);
    let unavailable_before = admin_requests("unavailable");
    for req in [
        get("/admin/sinks"),
        get("/admin/channels/feed/sinks"),
        get("/admin/channels/feed/sinks/local"),
        put("/admin/channels/feed/sinks/local"),
        delete("/admin/channels/feed/sinks/local"),
    ] {
        let (status, code, body, headers) = call!(app, req);
        assert_eq!((status, code.as_str()), (503, "unavailable"), "{body}");
        assert_eq!(headers.get("Retry-After").unwrap(), "1");
        assert!(!body.to_string().contains("connection refused"), "{body}");
    }
    assert!(admin_requests("unavailable") >= unavailable_before + 5);
}

#[actix_web::test]
async fn without_an_archive_there_are_no_sinks_to_turn_on() {
    let app = app!(state(on(false), None).await);
    let (status, _, body, _) = call!(app, get("/admin/sinks"));
    assert_eq!((status, body), (200, serde_json::json!({"sinks": []})));
    let (status, _, body, _) = call!(app, get("/admin/channels/photon/sinks?site=tst"));
    assert_eq!(
        (status, body),
        (
            200,
            serde_json::json!({"channel": "photon?site=tst", "sinks": []})
        )
    );
    let cases = [
        (
            get("/admin/channels/feed/sinks/local"),
            404,
            "sink_not_found",
        ),
        (
            put("/admin/channels/feed/sinks/local"),
            409,
            "sink_not_configured",
        ),
        (
            put("/admin/channels/feed/sinks/s3"),
            409,
            "sink_not_configured",
        ),
        (
            delete("/admin/channels/feed/sinks/local"),
            404,
            "sink_not_found",
        ),
        (
            put("/admin/channels/feed/sinks/ftp"),
            400,
            "unknown_sink_type",
        ),
    ];
    for (req, status, code) in cases {
        let answer = call!(app, req);
        assert_eq!(
            (answer.0, answer.1.as_str()),
            (status, code),
            "{}",
            answer.2
        );
    }
}
