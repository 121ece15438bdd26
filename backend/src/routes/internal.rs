//! Cluster mode's routes between replicas, on the backend port only (never through Pushpin),
//! with the cluster secret: `POST /internal/snapshot` (a subscriber's snapshot request handed
//! to the replica polling its channel) and `POST /internal/publish` (a push batch handed to
//! the replica holding its channel's lease). Wire formats and sending sides live in `cluster/`.

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

/// `POST /internal/publish`: a push batch another replica received for a channel whose lease
/// this replica holds (cluster mode). Answers the receipt, or the push error's code, which
/// the sender relays to the producer.
pub async fn publish(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(refused) = super::edge::refuse_internal(&req, &state) {
        return refused;
    }
    let forwarded: crate::cluster::ForwardedPublish = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
                .error_response()
        }
    };
    let Ok(channel) = crate::channel::ChannelId::parse(&forwarded.channel) else {
        return ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "not a channel id")
            .error_response();
    };
    match state
        .publishing
        .publish_forwarded(&channel, forwarded.batch)
        .await
    {
        Ok(receipt) => HttpResponse::Ok().json(receipt),
        Err(e) => {
            let status = match e {
                crate::push::PushError::Invalid(_) | crate::push::PushError::NotPush(_) => {
                    StatusCode::BAD_REQUEST
                }
                crate::push::PushError::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            ApiError::new(status, e.code(), e.to_string()).error_response()
        }
    }
}
