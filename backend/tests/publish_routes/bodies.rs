//! Bodies: every refusal says what is wrong; good batches of every shape pass every check.

use super::*;

#[actix_web::test]
async fn bad_bodies_are_refused_with_what_is_wrong() {
    let (state, _dir) = state().await;
    let app = app!(state);
    let photon = "/channels/photon/items?site=tst";
    let feed = "/channels/feed/items";
    let any = token(&[], &["*"], in_an_hour());
    let too_large_before = publishes("too_large");

    let with_type = |uri: &str, content_type: &str, body: &str| {
        post(uri, Some(&any), body).insert_header(("Content-Type", content_type.to_string()))
    };
    let cases: Vec<(test::TestRequest, &str, &str)> = vec![
        (
            post(photon, Some(&any), "{\"id\": "),
            "invalid_json",
            "not valid JSON",
        ),
        (post(photon, Some(&any), ""), "invalid_json", "empty"),
        (
            with_type(photon, "application/x-ndjson", "{\"id\":1}\n{\"id\":\n"),
            "invalid_json",
            "line 2",
        ),
        (
            with_type(photon, "text/plain", "{\"id\":1}"),
            "invalid_json",
            "Content-Type",
        ),
        (
            post(photon, Some(&any), &"x".repeat(MAX_BODY + 1)),
            "too_large",
            "bytes",
        ),
        (
            post(
                photon,
                Some(&any),
                r#"[{"id":1},{"id":2},{"id":3},{"id":4}]"#,
            ),
            "too_many_items",
            "3 entries",
        ),
        (
            with_type(photon, "application/x-ndjson", "1\n2\n3\n4\n"),
            "too_many_items",
            "3 entries",
        ),
        (
            post(photon, Some(&any), r#"[{"id":1},{"v":2}]"#),
            "invalid_items",
            "entry 1",
        ),
        (
            post(photon, Some(&any), r#"[{"id":1}, 7]"#),
            "invalid_items",
            "entry 1",
        ),
        (post(photon, Some(&any), "[]"), "invalid_items", "no items"),
        (
            test::TestRequest::put()
                .uri(feed)
                .insert_header(("Authorization", format!("Bearer {any}")))
                .set_payload("[1]"),
            "invalid_items",
            "append-only",
        ),
        (
            post(photon, Some(&any), r#"{"id":1}"#)
                .insert_header(("Idempotency-Key", "k".repeat(257))),
            "invalid_items",
            "Idempotency-Key",
        ),
        (
            test::TestRequest::delete()
                .uri("/channels/feed/items/00000000000000000002")
                .insert_header(("Authorization", format!("Bearer {any}"))),
            "invalid_items",
            "events channel",
        ),
    ];
    for (req, code, says) in cases {
        let (status, got, body, _) = call!(app, req);
        assert_eq!((status, got.as_str()), (400, code), "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{code}: {message}");
    }
    assert!(publishes("too_large") > too_large_before);

    // A body over the bound without a Content-Length is cut off while it streams.
    let mut req = post(photon, Some(&any), &"[1]".repeat(MAX_BODY)).to_request();
    req.headers_mut().remove("Content-Length");
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 400);
    let body: Value = serde_json::from_slice(&test::read_body(resp).await).unwrap();
    assert_eq!(body["error"]["code"], "too_large");
}

#[actix_web::test]
async fn good_batches_of_every_shape_reach_the_writer() {
    let (state, _dir) = state().await;
    let app = app!(state);
    let photon = "/channels/photon/items?site=tst";
    let key = Some(PHOTON_KEY);
    let feed_key = Some(FEED_KEY);
    let requests = [
        post(photon, key, r#"{"id": "a"}"#),
        post(photon, key, r#"[{"id": "a"}, {"id": 2}]"#).insert_header(("Idempotency-Key", "k1")),
        post(photon, key, "{\"id\":\"a\"}\n\n{\"id\":\"b\"}\n")
            .insert_header(("Content-Type", "application/x-ndjson")),
        test::TestRequest::put()
            .uri(photon)
            .insert_header(("Authorization", format!("Bearer {PHOTON_KEY}")))
            .set_payload("[]"),
        test::TestRequest::delete()
            .uri("/channels/photon/items/a%20b?site=tst")
            .insert_header(("Authorization", format!("Bearer {PHOTON_KEY}"))),
        post(
            "/channels/feed/items",
            feed_key,
            r#"[1, "two", {"three": 3}]"#,
        ),
        post("/channels/feed/items", feed_key, "[[1, 2], null]"),
    ];
    for req in requests {
        assert_reached_the_writer(&call!(app, req));
    }
}
