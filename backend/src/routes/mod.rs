//! HTTP routes, all reached through Pushpin on the public port (`/metrics` may also be scraped
//! from the backend port directly, the admin API is for direct callers only), and the private
//! metrics listener's.

mod admin;
mod api_error;
mod auth;
mod channel_query;
mod channels;
mod demo;
pub mod edge;
mod events;
mod health;
mod history;
pub mod internal;
mod metrics;
pub mod private;
mod publish;
mod publish_auth;
mod publish_body;
mod state;
mod woh;

use actix_web::web;

pub use api_error::ApiError;
pub use state::AppState;

/// Whether a request came through Pushpin's public port: Pushpin signs every request it
/// proxies with `Grip-Sig` (one that does not verify was refused by [`edge::verify_grip_sig`]
/// before any route runs). Such a request is from a stranger; operator-only details (metrics,
/// readiness details) and replica-only routes are not for it.
fn via_pushpin(req: &actix_web::HttpRequest) -> bool {
    req.headers().contains_key(edge::GRIP_SIG)
}

/// The client's address as the abuse limits count it: from `X-Forwarded-For` as far as it is
/// trusted (`limits.client_address_from`, `limits.trusted_proxy_hops`), else the peer.
fn client_address(req: &actix_web::HttpRequest, state: &AppState) -> Option<std::net::IpAddr> {
    state.guard.client_address(
        req.headers()
            .get("X-Forwarded-For")
            .map(actix_web::http::header::HeaderValue::as_bytes),
        req.peer_addr().map(|a| a.ip()),
    )
}

/// Registers every route behind the edge checks (CORS outside, then the `Grip-Sig` check).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("")
            .wrap(actix_web::middleware::from_fn(edge::verify_grip_sig))
            .wrap(actix_web::middleware::from_fn(edge::cors))
            .configure(routes),
    );
}

fn routes(cfg: &mut web::ServiceConfig) {
    // The WebSocket endpoint first: every client message is a request to it, and routes are
    // matched in order. `/channels` (POST) also serves it, as the original restream clients
    // used, further down beside the catalog.
    cfg.route("/ws", web::post().to(woh::websocket_over_http))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/internal/snapshot", web::post().to(internal::snapshot))
        .route("/internal/publish", web::post().to(internal::publish))
        .route("/", web::get().to(demo::demo))
        .route("/demo", web::get().to(demo::demo))
        .route("/demo/restream.js", web::get().to(demo::library))
        .route("/channels", web::get().to(channels::catalog))
        .route("/channels/{name}", web::get().to(channels::status))
        .route("/channels/{name}/items", web::get().to(channels::items))
        .route("/channels/{name}/items", web::post().to(publish::post))
        .route("/channels/{name}/items", web::put().to(publish::put))
        .route(
            "/channels/{name}/items/{id}",
            web::delete().to(publish::delete),
        )
        .route("/channels/{name}/events", web::get().to(events::events))
        .route("/channels/{name}/history", web::get().to(history::channel))
        .route("/history", web::get().to(history::coalesced))
        .route("/channels", web::post().to(woh::websocket_over_http))
        .configure(admin::configure);
}

/// Wraps every request in a `http` span (method, path; never the query or headers) and logs
/// its status and duration.
pub async fn request_span(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let span = tracing::debug_span!("http", method = %req.method(), path = %req.path());
    let started = std::time::Instant::now();
    let response = next.call(req).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::debug!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        )
    });
    Ok(response)
}

/// Any other path: a JSON 404 that points at the API.
pub async fn not_found(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    let path: String = req.path().chars().take(100).collect();
    ApiError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route for {} {path}; try GET /channels, GET /demo or a WebSocket to /ws",
            req.method()
        ),
    )
    .error_response()
}
