//! `GET /metrics`: Prometheus exposition text, on the backend port only.

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
    let text = crate::metrics::get().render(
        state.status.active_count(),
        state.demand.all_subscribers(tokio::time::Instant::now()),
        &state.budgets.usage(),
    );
    HttpResponse::Ok()
        .content_type(crate::metrics::CONTENT_TYPE)
        .body(text)
}
