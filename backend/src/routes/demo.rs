//! The demo page (`/` and `/demo`), built on the JavaScript client library (served as
//! `/demo/restream.js`, the same file as `clients/js/restream.js`): pick a channel and params,
//! watch the item table update live over WebSocket and SSE with status, seq and reconnects,
//! and publish JSON to a push channel (its form calls the publish API with the credential
//! typed in, which the page never stores). Static files, built into the binary.

use actix_web::HttpResponse;

const PAGE: &str = include_str!("../../static/demo.html");
const LIBRARY: &str = include_str!("../../../clients/js/restream.js");

pub async fn demo() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(PAGE)
}

/// The client library as an ES module, for the demo page (`import … from '/demo/restream.js'`).
pub async fn library() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(LIBRARY)
}
