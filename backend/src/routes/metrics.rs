//! `GET /metrics`: Prometheus exposition text, on the backend port (never through Pushpin)
//! and on the private metrics listener (`server.metrics_listen`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use super::{ApiError, AppState};

/// Pushpin signs every request it proxies with `Grip-Sig`; metrics are for operators, so a
/// request that came through the public port is refused.
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if super::via_pushpin(&req) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "metrics are served on the backend port only (server.listen)",
        )
        .error_response();
    }
    exposition(&state)
}

/// The private listener's `/metrics`: nothing but the operator's scraper can reach that
/// port (no Pushpin route or load balancer target points at it), so there is no caller to
/// tell apart.
pub async fn private_metrics(state: web::Data<AppState>) -> HttpResponse {
    exposition(&state)
}

fn exposition(state: &AppState) -> HttpResponse {
    let text = crate::metrics::get().render(
        state.status.active_count(),
        state.demand.all_subscribers(tokio::time::Instant::now()),
        &state.budgets.usage(),
    );
    HttpResponse::Ok()
        .content_type(crate::metrics::CONTENT_TYPE)
        .body(text)
}
