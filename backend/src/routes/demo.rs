//! The demo page (`/` and `/demo`): pick a channel, subscribe over WebSocket and SSE, watch
//! events arrive, and publish JSON to a push channel (its form calls the publish API with the
//! credential typed in, which the page never stores). One static file, built into the binary.

use actix_web::HttpResponse;

const PAGE: &str = include_str!("../../static/demo.html");

pub async fn demo() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(PAGE)
}
