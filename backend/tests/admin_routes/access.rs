//! Who reaches the admin API: nobody without a token set, nobody through Pushpin unless
//! `admin.public`, only callers with the whole admin token; what is logged; the private
//! metrics listener serving it too.

use super::*;

const EVERY_ROUTE: [(&str, &str); 7] = [
    ("GET", "/admin/sinks"),
    ("GET", "/admin/channels/feed/sinks"),
    ("GET", "/admin/channels/feed/sinks/local"),
    ("PUT", "/admin/channels/feed/sinks/local"),
    ("DELETE", "/admin/channels/feed/sinks/local"),
    // Methods the paths do not take: refused the same way (nothing tells them apart).
    ("POST", "/admin/channels/feed/sinks/local"),
    ("DELETE", "/admin/sinks"),
];

fn request(method: &str, uri: &str) -> test::TestRequest {
    let req = match method {
        "GET" => test::TestRequest::get(),
        "PUT" => test::TestRequest::put(),
        "POST" => test::TestRequest::post(),
        _ => test::TestRequest::delete(),
    };
    with_token(req.uri(uri), TOKEN)
}

#[actix_web::test]
async fn without_a_token_set_the_admin_api_is_not_there() {
    let sinks = Arc::new(Sinks::new());
    let app = app!(state(Admin::default(), Some(sinks.clone())).await);
    for (method, uri) in EVERY_ROUTE {
        let (status, code, body, _) = call!(app, request(method, uri));
        assert_eq!(
            (status, code.as_str()),
            (404, "not_found"),
            "{method} {uri}"
        );
        assert!(!body.to_string().contains("admin token"), "{body}");
    }
    assert_eq!(sinks.on.lock().unwrap().len(), 1, "nothing changed");
}

#[actix_web::test]
async fn requests_through_pushpin_are_refused_unless_public() {
    let sinks = Arc::new(Sinks::new());
    let signed =
        |method, uri| request(method, uri).insert_header(("Grip-Sig", grip_sig(&pushpin_key())));
    let app = app!(state(on(false), Some(sinks.clone())).await);
    for (method, uri) in EVERY_ROUTE {
        let (status, code, _, _) = call!(app, signed(method, uri));
        assert_eq!(
            (status, code.as_str()),
            (404, "not_found"),
            "{method} {uri}"
        );
    }
    assert_eq!(sinks.on.lock().unwrap().len(), 1, "nothing changed");
    // The same requests straight to the backend port are served (or get a 405 for a method
    // the path does not take).
    assert_eq!(call!(app, get("/admin/sinks")).0, 200);
    let (status, code, _, _) = call!(app, request("POST", "/admin/channels/feed/sinks/local"));
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));

    let public = app!(state(on(true), Some(sinks)).await);
    let (status, _, body, _) = call!(public, signed("GET", "/admin/sinks"));
    assert_eq!(status, 200, "{body}");
    // Public still needs the token.
    let anonymous = test::TestRequest::get()
        .uri("/admin/sinks")
        .insert_header(("Grip-Sig", grip_sig(&pushpin_key())));
    assert_eq!(call!(public, anonymous).1, "unauthorized");
}

#[actix_web::test]
async fn only_the_whole_admin_token_is_accepted() {
    let app = app!(state(on(false), Some(Arc::new(Sinks::new()))).await);
    let uri = "/admin/channels/photon/sinks/local?site=tst";
    let missing_before = admin_requests("unauthorized");
    for req in [
        test::TestRequest::put().uri(uri),
        test::TestRequest::put()
            .uri(uri)
            .insert_header(("Authorization", format!("Basic {TOKEN}"))),
        test::TestRequest::put().uri(&format!("{uri}&token={TOKEN}")),
    ] {
        let (status, code, body, headers) = call!(app, req);
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{body}");
        assert_eq!(headers.get("WWW-Authenticate").unwrap(), "Bearer");
    }
    assert!(admin_requests("unauthorized") >= missing_before + 3);

    // A prefix, a longer one, another case, another secret: the compare is of the whole
    // token (both sides hashed, then compared in constant time).
    let upper = TOKEN.to_uppercase();
    let longer = format!("{TOKEN}0");
    for wrong in [
        &TOKEN[..TOKEN.len() - 1],
        longer.as_str(),
        upper.as_str(),
        "x",
    ] {
        let (status, code, body, headers) =
            call!(app, with_token(test::TestRequest::put().uri(uri), wrong));
        assert_eq!(
            (status, code.as_str()),
            (401, "invalid_credential"),
            "{wrong}"
        );
        assert_eq!(headers.get("WWW-Authenticate").unwrap(), "Bearer");
        assert!(!body.to_string().contains(TOKEN) && !body.to_string().contains(wrong));
    }
    let (status, _, body, _) = call!(app, put(uri));
    assert_eq!(status, 200, "{body}");
}

/// Log lines written while the guard lives (this test's thread only).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[actix_web::test]
async fn every_call_is_logged_with_its_operation_and_channel_never_the_token() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = app!(state(on(false), Some(Arc::new(Sinks::new()))).await);
    // Tests on other threads may have met the log line's callsite first, without this
    // subscriber: meet it here too, then have every callsite ask the subscribers again.
    call!(app, get("/admin/sinks"));
    tracing::callsite::rebuild_interest_cache();
    logs.0.lock().unwrap().clear();
    call!(app, put("/admin/channels/photon/sinks/local?site=tst"));
    call!(app, delete("/admin/channels/photon/sinks/local?site=tst"));
    call!(
        app,
        with_token(
            test::TestRequest::get().uri("/admin/sinks"),
            "wrong-admin-token"
        )
    );
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("admin request"))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, op, result) in [
        (lines[0], "op=\"enable\"", "result=\"ok\""),
        (lines[1], "op=\"disable\"", "result=\"ok\""),
        (lines[2], "op=\"list\"", "result=\"invalid_credential\""),
    ] {
        assert!(
            line.contains(" INFO ") && line.contains(op) && line.contains(result),
            "{line}"
        );
    }
    assert!(
        lines[0].contains("channel=\"photon?site=tst\""),
        "{}",
        lines[0]
    );
    assert!(
        !text.contains(TOKEN) && !text.contains("wrong-admin-token"),
        "{text}"
    );
}

#[actix_web::test]
async fn the_private_metrics_listener_serves_it_too() {
    let listener = routes::private::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let private = routes::private::Private::start(
        listener,
        state(on(false), Some(Arc::new(Sinks::new()))).await,
    )
    .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let sinks = client
        .get(format!("{base}/admin/sinks"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(sinks.status(), 200);
    let body: Value = sinks.json().await.unwrap();
    assert_eq!(body["sinks"][0]["channel"], SETTINGS_CHANNEL);
    let anonymous = client
        .get(format!("{base}/admin/sinks"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let other = client.get(format!("{base}/channels")).send().await.unwrap();
    assert_eq!(other.status(), 404);
    let body: Value = other.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/admin/*"),
        "{body}"
    );
    private.stop().await;
}
