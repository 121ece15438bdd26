//! `GET /metrics`: Prometheus exposition text.

use actix_web::{web, HttpResponse};

use super::AppState;

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let text = crate::metrics::get().render(
        state.status.active_count(),
        state.demand.all_subscribers(tokio::time::Instant::now()),
        &state.budgets.usage(),
    );
    HttpResponse::Ok()
        .content_type(crate::metrics::CONTENT_TYPE)
        .body(text)
}
