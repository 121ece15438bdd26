//! HTTP routes served to Pushpin (and, for health checks, to operators).

mod health;
mod woh;

use actix_web::web;

pub use woh::AppState;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        // The WebSocket endpoint: `/ws`, and `/channels` as the original restream clients used.
        .route("/ws", web::post().to(woh::websocket_over_http))
        .route("/channels", web::post().to(woh::websocket_over_http));
}
