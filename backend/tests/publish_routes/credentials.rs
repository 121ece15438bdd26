//! Who may publish (none, bad or expired token, wrong channel, producer keys), rights kept
//! apart, and the channel, its params and its mode checked before any body is read.

use super::*;

#[actix_web::test]
async fn credentials_decide_who_may_publish() {
    let (state, _dir) = state().await;
    let app = app!(state);
    let uri = "/channels/photon/items?site=tst";
    let item = r#"{"id": "a", "v": 1}"#;
    let refused_before = publishes("unauthorized");

    // None, or not a bearer: 401 unauthorized with a challenge; `?token=` is no credential.
    let valid = token(&[], &["photon"], in_an_hour());
    for req in [
        post(uri, None, item),
        post(uri, None, item).insert_header(("Authorization", format!("Basic {PHOTON_KEY}"))),
        post(&format!("{uri}&token={valid}"), None, item),
    ] {
        let (status, code, body, headers) = call!(app, req);
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{body}");
        assert_eq!(headers.get("WWW-Authenticate").unwrap(), "Bearer");
    }
    assert!(publishes("unauthorized") >= refused_before + 3);

    // A bad signature, an expired token, an unknown producer key: 401 invalid_credential.
    let forged = restream::auth::mint::hs256_with_publish(
        b"another-secret",
        None,
        &[],
        &["*".into()],
        in_an_hour(),
    )
    .unwrap();
    let expired = token(&[], &["photon"], restream::auth::now_unix() - 10);
    for (credential, says) in [
        (forged.as_str(), "not valid"),
        (expired.as_str(), "expired"),
        ("pk-photon-guess", "not valid"),
        ("a.b", "not valid"),
    ] {
        let (status, code, body, _) = call!(app, post(uri, Some(credential), item));
        assert_eq!(
            (status, code.as_str()),
            (401, "invalid_credential"),
            "{body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
        assert!(!body.to_string().contains(credential), "never echoed");
    }

    // Valid, but not for this channel: 403 forbidden.
    for credential in [
        token(&["photon"], &[], in_an_hour()), // subscribe rights only
        token(&[], &["feed"], in_an_hour()),
        token(&[], &["photon?site=other"], in_an_hour()),
        FEED_KEY.to_string(), // another push channel's producer key
    ] {
        let (status, code, body, _) = call!(app, post(uri, Some(&credential), item));
        assert_eq!((status, code.as_str()), (403, "forbidden"), "{body}");
        assert!(!body.to_string().contains(&credential));
    }

    // The channel's own producer key, or a token whose `publish` matches the canonical id.
    for credential in [
        PHOTON_KEY.to_string(),
        token(&[], &["photon"], in_an_hour()),
        token(&[], &["photon?site=tst"], in_an_hour()),
        token(&[], &["photon?site=*"], in_an_hour()),
        token(&[], &["*"], in_an_hour()),
    ] {
        assert_reached_the_writer(&call!(app, post(uri, Some(&credential), item)));
    }
}

#[actix_web::test]
async fn publish_and_subscribe_rights_stay_apart() {
    let (state, _dir) = state().await;
    let app = app!(state);
    let items = "/channels/photon/items?site=tst";
    let get = |credential: String| {
        test::TestRequest::get()
            .uri(items)
            .insert_header(("Authorization", format!("Bearer {credential}")))
    };
    // `photon` needs a token to read: a publish right or a producer key is not one.
    for credential in [
        token(&[], &["photon"], in_an_hour()),
        PHOTON_KEY.to_string(),
    ] {
        let (status, code, body, _) = call!(app, get(credential));
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{body}");
    }
    let (status, _, body, _) = call!(app, get(token(&["photon"], &[], in_an_hour())));
    assert_eq!(status, 200, "{body}");
}

#[actix_web::test]
async fn channels_params_and_modes_are_checked_first() {
    let (state, _dir) = state().await;
    let app = app!(state);
    let any = token(&[], &["*"], in_an_hour());
    let cases = [
        ("/channels/nope/items", 404, "unknown_channel"),
        ("/channels/weather/items", 405, "not_a_push_channel"),
        ("/channels/photon/items", 400, "invalid_params"),
        (
            "/channels/photon/items?site=tst&color=red",
            400,
            "invalid_params",
        ),
        ("/channels/photon/items?site=tst&limit=3", 400, "bad_query"),
    ];
    for (uri, status, code) in cases {
        let answer = call!(app, post(uri, Some(&any), r#"{"id": 1}"#));
        assert_eq!(
            (answer.0, answer.1.as_str()),
            (status, code),
            "{uri}: {}",
            answer.2
        );
    }
    let (_, _, _, headers) = call!(app, post("/channels/weather/items", Some(&any), "{}"));
    assert_eq!(headers.get("Allow").unwrap(), "GET, HEAD");
    let delete = test::TestRequest::delete()
        .uri("/channels/weather/items/1")
        .insert_header(("Authorization", format!("Bearer {any}")));
    assert_eq!(call!(app, delete).1, "not_a_push_channel");
}
