//! A page of an allowed origin may publish; other origins may not; elsewhere CORS stays read-only.

use super::*;

#[actix_web::test]
async fn a_page_of_an_allowed_origin_may_publish() {
    let (state, _dir) = state().await;
    let app = app!(state);
    let uri = "/channels/photon/items?site=tst";
    let preflight = |origin: &str, method: &str| {
        test::TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri(uri)
            .insert_header(("Origin", origin.to_string()))
            .insert_header(("Access-Control-Request-Method", method.to_string()))
            .insert_header((
                "Access-Control-Request-Headers",
                "authorization, content-type, idempotency-key",
            ))
    };
    for method in ["POST", "PUT", "DELETE"] {
        let (status, _, _, headers) = call!(app, preflight(ORIGIN, method));
        assert_eq!(status, 204);
        assert_eq!(headers.get("Access-Control-Allow-Origin").unwrap(), ORIGIN);
        let methods = headers.get("Access-Control-Allow-Methods").unwrap();
        assert!(methods.to_str().unwrap().contains(method));
        let allowed = headers.get("Access-Control-Allow-Headers").unwrap();
        let allowed = allowed.to_str().unwrap().to_ascii_lowercase();
        for h in ["authorization", "content-type", "idempotency-key"] {
            assert!(allowed.contains(h), "{allowed}");
        }
    }
    // Elsewhere the API stays read-only over CORS.
    let other = test::TestRequest::default()
        .method(actix_web::http::Method::OPTIONS)
        .uri("/channels/photon?site=tst")
        .insert_header(("Origin", ORIGIN))
        .insert_header(("Access-Control-Request-Method", "GET"));
    let (_, _, _, headers) = call!(app, other);
    let methods = headers.get("Access-Control-Allow-Methods").unwrap();
    assert!(!methods.to_str().unwrap().contains("POST"));

    let (status, code, _, _) = call!(app, preflight("https://evil.example", "POST"));
    assert_eq!((status, code.as_str()), (403, "origin_not_allowed"));

    // The publish itself carries the CORS headers (the browser reads its answer).
    let publish = post(uri, Some(PHOTON_KEY), r#"{"id": 1}"#).insert_header(("Origin", ORIGIN));
    let answer = call!(app, publish);
    assert_reached_the_writer(&answer);
    assert_eq!(answer.3.get("Access-Control-Allow-Origin").unwrap(), ORIGIN);
    assert_eq!(
        answer.3.get("Access-Control-Expose-Headers").unwrap(),
        "Retry-After"
    );
    let foreign = post(uri, Some(PHOTON_KEY), r#"{"id": 1}"#)
        .insert_header(("Origin", "https://evil.example"));
    let (status, code, _, _) = call!(app, foreign);
    assert_eq!((status, code.as_str()), (403, "origin_not_allowed"));
}
