//! `POST /internal/snapshot`: cluster mode's hand-over of a subscriber's snapshot request to
//! the replica polling its channel, on the backend port only (never through Pushpin). The
//! wire format and the sending side live in `cluster/`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use super::{ApiError, AppState};
use crate::cluster::ForwardedSnapshots;

pub async fn snapshot(
    req: HttpRequest,
    body: web::Json<ForwardedSnapshots>,
    state: web::Data<AppState>,
) -> HttpResponse {
    // Pushpin signs what it proxies: this route is for replicas on the backend port only.
    if super::via_pushpin(&req) {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found").error_response();
    }
    match body.into_inner().parse() {
        Ok(batch) => {
            state.scheduler.hand_over(batch);
            HttpResponse::Accepted().finish()
        }
        Err(e) => {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()).error_response()
        }
    }
}
