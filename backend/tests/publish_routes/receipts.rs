//! Receipts from a real scheduler's writer (memory store, no Pushpin): seq, counts,
//! replays, reused keys, PUT, DELETE, events; and what subscribers were sent.

use super::*;

#[actix_web::test]
async fn receipts_say_what_each_batch_did() {
    let sent = Arc::new(Sent::default());
    let stop = CancellationToken::new();
    let (state, _dir) = state_with(Some((sent.clone(), stop.clone()))).await;
    let app = app!(state);
    let photon = "/channels/photon/items?site=tst";
    let key = Some(PHOTON_KEY);
    let receipt = |body: &Value| {
        let n = |k: &str| body[k].as_u64().unwrap();
        (
            n("seq"),
            n("new"),
            n("updated"),
            n("removed"),
            n("unchanged"),
            body["replayed"].as_bool().unwrap(),
        )
    };
    let ok = |answer: (u16, String, Value, actix_web::http::header::HeaderMap)| {
        assert_eq!(answer.0, 200, "{}", answer.2);
        assert_eq!(answer.2["channel"], "photon?site=tst");
        answer.2
    };

    // seq 1 opens the channel; the batch is seq 2 and 3 (one event per change).
    let first = ok(call!(
        app,
        post(photon, key, r#"[{"id": "a", "v": 1}, {"id": "b"}]"#)
    ));
    assert_eq!(receipt(&first), (3, 2, 0, 0, 0, false));
    let keyed =
        || post(photon, key, r#"{"id": "a", "v": 2}"#).insert_header(("Idempotency-Key", "k1"));
    let updated = ok(call!(app, keyed()));
    assert_eq!(receipt(&updated), (4, 0, 1, 0, 0, false));
    let replayed_before = publishes("replayed");
    let again = ok(call!(app, keyed()));
    assert_eq!(receipt(&again), (4, 0, 1, 0, 0, true));
    assert!(publishes("replayed") > replayed_before);
    let reused =
        post(photon, key, r#"{"id": "a", "v": 3}"#).insert_header(("Idempotency-Key", "k1"));
    let (status, code, body, _) = call!(app, reused);
    assert_eq!(
        (status, code.as_str()),
        (422, "idempotency_key_reused"),
        "{body}"
    );

    let unchanged = ok(call!(
        app,
        post(photon, key, "{\"id\": \"b\"}\n")
            .insert_header(("Content-Type", "application/x-ndjson"))
    ));
    assert_eq!(receipt(&unchanged), (4, 0, 0, 0, 1, false));
    let put = test::TestRequest::put()
        .uri(photon)
        .insert_header(("Authorization", format!("Bearer {PHOTON_KEY}")))
        .set_payload(r#"[{"id": "a", "v": 2}, {"id": "c"}]"#);
    assert_eq!(receipt(&ok(call!(app, put))), (6, 1, 0, 1, 1, false));
    let delete = test::TestRequest::delete()
        .uri("/channels/photon/items/c?site=tst")
        .insert_header(("Authorization", format!("Bearer {PHOTON_KEY}")));
    assert_eq!(receipt(&ok(call!(app, delete))), (7, 0, 0, 1, 0, false));

    let events = call!(
        app,
        post("/channels/feed/items", Some(FEED_KEY), "[1, {\"x\": 2}]")
    );
    assert_eq!(events.0, 200, "{}", events.2);
    assert_eq!(
        (events.2["seq"].as_u64(), events.2["new"].as_u64()),
        (Some(3), Some(2))
    );

    // Subscribers were told each change of photon, once, in seq order.
    let sent: Vec<(String, String, u64)> = sent.0.lock().unwrap().clone();
    let of = |channel: &str| -> Vec<(String, u64)> {
        sent.iter()
            .filter(|(c, _, _)| c == channel)
            .map(|(_, t, seq)| (t.clone(), *seq))
            .collect()
    };
    let t = |kinds: &[&str]| -> Vec<(String, u64)> {
        kinds
            .iter()
            .enumerate()
            .map(|(i, k)| (k.to_string(), i as u64 + 1))
            .collect()
    };
    assert_eq!(
        of("photon?site=tst"),
        t(&["snapshot", "new", "new", "updated", "new", "removed", "removed"])
    );
    assert_eq!(of("feed"), t(&["snapshot", "new", "new"]));
    stop.cancel();
}
