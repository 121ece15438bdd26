//! `POST /internal/snapshot`: cluster mode's hand-over of a subscriber's snapshot request to
//! the replica polling its channel, on the backend port only (never through Pushpin), with
//! the cluster secret. The wire format and the sending side live in `cluster/`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use super::{ApiError, AppState};
use crate::cluster::ForwardedSnapshots;

pub async fn snapshot(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    // Checked before the body is even parsed.
    if let Some(refused) = super::edge::refuse_internal(&req, &state) {
        return refused;
    }
    let batch: ForwardedSnapshots = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
                .error_response()
        }
    };
    match batch.parse() {
        Ok(batch) => match state.scheduler.hand_over(batch).await {
            true => HttpResponse::Accepted().finish(),
            false => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "this replica is shutting down",
            )
            .error_response(),
        },
        Err(e) => {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()).error_response()
        }
    }
}
