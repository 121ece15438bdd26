//! Issue 19 through a real Pushpin: who may publish (publish-claim JWTs and producer keys;
//! refusals commit nothing and secrets stay out of the logs), and `Idempotency-Key` retries.

use std::time::Duration;

use serde_json::json;

use crate::push::*;
use crate::support::{scrape, value, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_publish_right_for_the_channel_publishes() {
    let stack = push_stack(None).await;
    let q = "site=auth";
    let mut sub = Sub::ws(&stack, THINGS, json!({"site": "auth"}), None).await;
    let mut mirror = Mirror::default();
    mirror
        .follow(&mut sub, 1, Duration::from_secs(10), "sub")
        .await;
    let hour = now() + 3600;
    let publish_things = publish_token(SECRET, &["e2e-things?site=auth"], hour);
    let publish_prefix = publish_token(SECRET, &["e2e-things?*"], hour);
    let publish_other = publish_token(SECRET, &[OTHER, "e2e-things?site=elsewhere"], hour);
    let expired = publish_token(SECRET, &[THINGS], now() - 600);
    let forged = publish_token("not-the-secret-0123456789abcdef", &[THINGS], hour);
    let subscribe_only = subscribe_token(SECRET, &[THINGS], hour);
    let body = |n: u64| json!({"id": format!("i{n}"), "n": n});
    let refusals: [(&str, Option<&str>, u16, &str); 7] = [
        ("no credential", None, 401, "unauthorized"),
        (
            "a token for other channels",
            Some(&publish_other),
            403,
            "forbidden",
        ),
        (
            "an expired token",
            Some(&expired),
            401,
            "invalid_credential",
        ),
        ("a forged token", Some(&forged), 401, "invalid_credential"),
        (
            "a subscribe-only token",
            Some(&subscribe_only),
            403,
            "forbidden",
        ),
        (
            "another channel's producer key",
            Some(OTHER_KEY),
            403,
            "forbidden",
        ),
        (
            "an unknown key",
            Some("pk-nobody-knows-this-key-0000"),
            401,
            "invalid_credential",
        ),
    ];
    for (i, (what, credential, status, code)) in refusals.iter().enumerate() {
        let mut request = Publish::post(THINGS, q).json(&body(i as u64));
        if let Some(c) = credential {
            request = request.bearer(c);
        }
        let answer = request.send(&stack.http_url).await;
        assert_eq!(
            (answer.status, answer.code()),
            (*status, *code),
            "{what}: {:?}",
            answer.body
        );
        if *status == 401 && credential.is_none() {
            let challenge = answer.header("www-authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{what}: {challenge:?}");
        }
    }
    // A credential in the query string is not one (Pushpin logs URLs: this token is a
    // throwaway, left out of the log check below).
    let in_url = publish_token(SECRET, &[THINGS], hour - 60);
    let in_query = Publish::post(THINGS, &format!("{q}&token={in_url}"))
        .json(&body(20))
        .send(&stack.http_url)
        .await;
    assert!(matches!(in_query.status, 400 | 401), "{:?}", in_query.body);
    assert_eq!(
        items_page(&stack, THINGS, q).await.0,
        1,
        "nothing committed"
    );
    assert_eq!(
        sub.next(Duration::from_millis(300)).await,
        None,
        "nothing sent"
    );

    // Accepted: the publish claim (exact and prefix), the channel's producer key.
    let accepted = [publish_things.as_str(), publish_prefix.as_str(), THINGS_KEY];
    for (i, credential) in accepted.iter().enumerate() {
        let answer = Publish::post(THINGS, q)
            .json(&body(100 + i as u64))
            .bearer(credential)
            .send(&stack.http_url)
            .await;
        assert_eq!(answer.seq(), 2 + i as u64);
    }
    mirror
        .follow(&mut sub, 4, Duration::from_secs(10), "sub")
        .await;
    let ids: Vec<&str> = mirror.items.keys().map(String::as_str).collect();
    assert_eq!(ids, ["i100", "i101", "i102"]);
    let results = publish_results(&stack).await;
    for (result, n) in [("ok", 3.0), ("unauthorized", 2.0), ("forbidden", 3.0)] {
        assert_eq!(
            results(result),
            n,
            "restream_publishes_total{{result={result:?}}}"
        );
    }
    assert_eq!(results("invalid_credential"), 3.0);

    // No secret in the backend's log (nor in Pushpin's).
    let mut logs = vec![("backend".to_string(), stack.backend.log_text())];
    for entry in std::fs::read_dir(stack.dir().join("pp/log"))
        .into_iter()
        .flatten()
    {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        logs.push((path.display().to_string(), text));
    }
    for secret in [
        THINGS_KEY,
        OTHER_KEY,
        SECRET,
        publish_things.as_str(),
        expired.as_str(),
    ] {
        let signature = secret.rsplit('.').next().unwrap();
        for (log, text) in &logs {
            assert!(
                !text.contains(signature),
                "a secret is in the {log} log: {signature}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_with_the_same_idempotency_key_is_committed_once() {
    let stack = push_stack(None).await;
    let q = "site=idem";
    let mut sub = Sub::sse(&stack, THINGS, q, None).await;
    let mut mirror = Mirror::default();
    mirror
        .follow(&mut sub, 1, Duration::from_secs(10), "sub")
        .await;
    let batch = json!([{"id": "x", "n": 1}, {"id": "y", "n": 1}]);
    let send = |body: &serde_json::Value, key: &str| {
        Publish::post(THINGS, q)
            .json(body)
            .bearer(THINGS_KEY)
            .idempotency_key(key)
    };
    let first = send(&batch, "order-17").send(&stack.http_url).await;
    assert_eq!((first.seq(), counts(first.receipt())), (3, (2, 0, 0, 0)));
    assert_eq!(first.receipt()["replayed"], false);
    let again = send(&batch, "order-17").send(&stack.http_url).await;
    assert_eq!((again.seq(), counts(again.receipt())), (3, (2, 0, 0, 0)));
    assert_eq!(again.receipt()["replayed"], true);
    assert_eq!(again.receipt()["channel"], first.receipt()["channel"]);
    // The same key with another batch: refused, nothing committed.
    let other = json!([{"id": "x", "n": 2}]);
    let reused = send(&other, "order-17").send(&stack.http_url).await;
    assert_eq!(
        (reused.status, reused.code()),
        (422, "idempotency_key_reused")
    );
    // Still replayed after a refusal, and as NDJSON with the same entries.
    let nd = Publish::post(THINGS, q)
        .ndjson(batch.as_array().unwrap())
        .bearer(THINGS_KEY)
        .idempotency_key("order-17")
        .send(&stack.http_url)
        .await;
    assert_eq!(nd.status, 200, "{:?}", nd.body);
    assert_eq!(
        (nd.seq(), nd.receipt()["replayed"].clone()),
        (3, json!(true))
    );
    // A new key: a real publish again (here: unchanged items, so nothing sent).
    let fresh = send(&batch, "order-18").send(&stack.http_url).await;
    assert_eq!((fresh.seq(), counts(fresh.receipt())), (3, (0, 0, 0, 2)));
    assert_eq!(fresh.receipt()["replayed"], false);
    let changed = send(&other, "order-19").send(&stack.http_url).await;
    assert_eq!(
        (changed.seq(), counts(changed.receipt())),
        (4, (0, 1, 0, 0))
    );

    mirror
        .follow(&mut sub, 4, Duration::from_secs(10), "sub")
        .await;
    assert_eq!(sub.next(Duration::from_millis(300)).await, None);
    let events: Vec<_> = mirror
        .events
        .iter()
        .map(|(k, s, id)| (k.as_str(), *s, id.as_str()))
        .collect();
    assert_eq!(
        events,
        [("new", 2, "x"), ("new", 3, "y"), ("updated", 4, "x")]
    );
    let results = publish_results(&stack).await;
    for (result, n) in [
        ("ok", 3.0),
        ("replayed", 2.0),
        ("idempotency_key_reused", 1.0),
    ] {
        assert_eq!(
            results(result),
            n,
            "restream_publishes_total{{result={result:?}}}"
        );
    }
}

/// `restream_publishes_total` by result, from the backend's `/metrics`.
async fn publish_results(stack: &Stack) -> impl Fn(&str) -> f64 {
    let m = scrape(&format!("http://{}/metrics", stack.backend.addr)).await;
    move |result| value(&m, "restream_publishes_total", &[("result", result)])
}
