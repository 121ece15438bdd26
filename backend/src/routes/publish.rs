//! The publish API of push channels: `POST /channels/{name}/items?params` (one entry, an array
//! or NDJSON), `PUT` (the whole set) and `DELETE /channels/{name}/items/{id}?params`, each a
//! batch committed atomically through [`Publishing`](crate::push::Publishing).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;

use super::api_error::ApiError;
use super::channel_query::{reject_options, resolve, ChannelQuery};
use super::publish_body::{self, BodyError, BodyFormat};
use super::AppState;
use crate::push::{PushBatch, PushError, PushMode, PushOp, PushReceipt};

/// `POST /channels/{name}/items`: adds or updates items (appends events).
pub async fn post(
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    answer(publish_entries(&req, &name, body, &state, false).await)
}

/// `PUT /channels/{name}/items`: the body is the whole set (`[]` empties the channel).
pub async fn put(
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    answer(publish_entries(&req, &name, body, &state, true).await)
}

/// `DELETE /channels/{name}/items/{id}`: removes one item.
pub async fn delete(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (name, item) = path.into_inner();
    let result = async {
        let q = admit(&req, &name, &state).await?;
        let batch = PushBatch {
            ops: vec![PushOp::Delete(item)],
            replace: false,
            idempotency_key: idempotency_key(&req)?,
        };
        commit(&state, &q, batch).await
    };
    answer(result.await)
}

/// The 200 answer, or the error; counted by result either way.
fn answer(result: Result<(String, PushReceipt), ApiError>) -> HttpResponse {
    use actix_web::ResponseError;
    let (label, response) = match result {
        Ok((channel, r)) => (
            if r.replayed { "replayed" } else { "ok" },
            HttpResponse::Ok()
                .insert_header(("Cache-Control", "no-store"))
                .json(json!({
                    "channel": channel,
                    "seq": r.seq,
                    "new": r.new,
                    "updated": r.updated,
                    "removed": r.removed,
                    "unchanged": r.unchanged,
                    "replayed": r.replayed,
                })),
        ),
        Err(e) => {
            let mut response = e.error_response();
            if e.status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            if e.status == StatusCode::METHOD_NOT_ALLOWED {
                response
                    .headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            }
            (e.code, response)
        }
    };
    crate::metrics::get()
        .publishes
        .with_label_values(&[label])
        .inc();
    response
}

/// The channel with its params, if it is a push channel and the credential may publish to it.
async fn admit(req: &HttpRequest, name: &str, state: &AppState) -> Result<ChannelQuery, ApiError> {
    let q = resolve(&state.registry.current(), name, req.query_string())?;
    // `?token=` is never a publish credential; it is only kept out of the params.
    reject_options(&q.options, &["token"])?;
    if q.entry.fetcher.push().is_none() {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "not_a_push_channel",
            format!(
                "channel {} is polled by restream and does not take publishes",
                q.id.name()
            ),
        ));
    }
    let credential = super::auth::bearer(req);
    super::publish_auth::check(state, &q.id, credential.as_deref()).await?;
    Ok(q)
}

/// `Idempotency-Key`, if sent (its length is checked with the batch).
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    match req.headers().get("Idempotency-Key") {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.to_string())).map_err(|_| {
            ApiError::bad_request(
                "invalid_items",
                format!(
                    "Idempotency-Key must be 1 to {} visible ASCII characters",
                    crate::push::batch::MAX_IDEMPOTENCY_KEY_BYTES
                ),
            )
        }),
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::bad_request(
        "too_large",
        format!("the body is larger than the {max} bytes one publish may carry"),
    )
}

/// The body, refused as soon as it is known to exceed `max` bytes (nothing more is read).
async fn read_body(
    req: &HttpRequest,
    mut body: web::Payload,
    max: usize,
) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            tracing::debug!(error = %e, "cannot read a publish body");
            ApiError::bad_request("invalid_json", "the body could not be read")
        })?;
        if out.len() + chunk.len() > max {
            return Err(too_large(max));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn publish_entries(
    req: &HttpRequest,
    name: &str,
    body: web::Payload,
    state: &AppState,
    replace: bool,
) -> Result<(String, PushReceipt), ApiError> {
    let q = admit(req, name, state).await?;
    let idempotency_key = idempotency_key(req)?;
    let settings = state.publishing.settings();
    let format = BodyFormat::from_content_type(
        req.headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("")),
    )
    .map_err(body_error)?;
    let bytes = read_body(req, body, settings.max_body_bytes).await?;
    let entries =
        publish_body::entries(format, &bytes, settings.max_batch_items).map_err(body_error)?;
    let mode = q.entry.fetcher.push().map_or(PushMode::Items, |s| s.mode);
    let ops = publish_body::ops(mode, entries, replace)
        .map_err(|m| ApiError::bad_request("invalid_items", m))?;
    let batch = PushBatch {
        ops,
        replace,
        idempotency_key,
    };
    commit(state, &q, batch).await
}

fn body_error(e: BodyError) -> ApiError {
    let code = match e {
        BodyError::InvalidJson(_) => "invalid_json",
        BodyError::TooManyItems { .. } => "too_many_items",
    };
    ApiError::bad_request(code, e.to_string())
}

async fn commit(
    state: &AppState,
    q: &ChannelQuery,
    batch: PushBatch,
) -> Result<(String, PushReceipt), ApiError> {
    match state.publishing.publish(&q.id, batch).await {
        Ok(receipt) => Ok((q.id.to_string(), receipt)),
        Err(e) => Err(push_error(e)),
    }
}

/// The answer to a refused batch: 400, 405, 422, or 503 with `Retry-After: 1`.
pub fn push_error(e: PushError) -> ApiError {
    let status = match e {
        PushError::Invalid(_) => StatusCode::BAD_REQUEST,
        PushError::NotPush(_) => StatusCode::METHOD_NOT_ALLOWED,
        PushError::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
        PushError::Busy | PushError::ChannelCap | PushError::Unavailable => {
            return ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string())
            }
        }
    };
    ApiError::new(status, e.code(), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_push_error_has_its_status_and_code() {
        let cases = [
            (
                PushError::Invalid("entry 0: x".into()),
                400,
                "invalid_items",
                None,
            ),
            (
                PushError::NotPush("w".into()),
                405,
                "not_a_push_channel",
                None,
            ),
            (PushError::KeyReused, 422, "idempotency_key_reused", None),
            (PushError::Busy, 503, "busy", Some(1)),
            (PushError::ChannelCap, 503, "channel_limit", Some(1)),
            (PushError::Unavailable, 503, "unavailable", Some(1)),
        ];
        for (error, status, code, retry_after) in cases {
            let message = error.to_string();
            let e = push_error(error);
            assert_eq!(
                (e.status.as_u16(), e.code, e.retry_after),
                (status, code, retry_after)
            );
            assert_eq!(e.message, message);
        }
    }
}
