//! The operators' management API (`/admin/*`): list, read, turn on and off a channel's archive
//! sinks through [`SinkControl`]. Off unless `admin.token` is set; never for a request that
//! came through Pushpin unless `admin.public`; every call carries the admin token as a bearer
//! credential (compared in constant time). Served on the backend port and on the private
//! metrics listener.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

use super::api_error::ApiError;
use super::channel_query::{reject_options, resolve};
use super::publish_auth::same_secret;
use super::AppState;
use crate::archive::{SinkError, SinkState, SinkType};
use crate::channel::ChannelId;

/// Registers the admin routes (on the backend port and the private listener alike). Another
/// method on an admin path is refused only after the same admission checks, so a caller who
/// may not use the API cannot tell its paths from any other (404).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/sinks")
            .route(web::get().to(list))
            .default_service(web::to(other_method)),
    )
    .service(
        web::resource("/admin/channels/{name}/sinks")
            .route(web::get().to(channel_sinks))
            .default_service(web::to(other_method)),
    )
    .service(
        web::resource("/admin/channels/{name}/sinks/{type}")
            .route(web::get().to(get))
            .route(web::put().to(enable))
            .route(web::delete().to(disable))
            .default_service(web::to(other_method)),
    );
}

/// One admin call: what it does and on which channel, for its log line and metric.
struct Call {
    op: &'static str,
    channel: Option<String>,
}

impl Call {
    fn new(op: &'static str) -> Call {
        Call { op, channel: None }
    }

    /// Logs the call (never its credential), counts it and answers.
    fn finish(self, outcome: Result<HttpResponse, ApiError>) -> HttpResponse {
        let result = match &outcome {
            Ok(_) => "ok",
            Err(e) => e.code,
        };
        crate::metrics::get()
            .admin_requests
            .with_label_values(&[result])
            .inc();
        let channel = self.channel.as_deref().unwrap_or("-");
        match result {
            // The API is off, or the caller came through Pushpin: no admin call, as if the
            // path did not exist (strangers' probes do not fill the info log).
            "not_found" => tracing::debug!(op = self.op, result, "admin request refused"),
            _ => tracing::info!(op = self.op, channel, result, "admin request"),
        }
        outcome.unwrap_or_else(|e| {
            let mut response = e.error_response();
            if e.status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            response
        })
    }
}

/// What any unknown path answers: the admin API is not there for this caller.
fn not_found(req: &HttpRequest) -> ApiError {
    let path: String = req.path().chars().take(100).collect();
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {path}", req.method()),
    )
}

/// Whether the caller may use the admin API: it is on, the request did not come through
/// Pushpin (unless `admin.public`), and it carries the admin token.
fn admit(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(token) = state.admin.token.as_ref() else {
        return Err(not_found(req));
    };
    if super::via_pushpin(req) && !state.admin.public {
        return Err(not_found(req));
    }
    match super::auth::bearer(req) {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin API needs the admin token in an Authorization: Bearer header",
        )),
        Some(presented) if same_secret(&presented, token.expose()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credential",
            "the admin token is not valid",
        )),
    }
}

/// The channel of `/admin/channels/{name}/…?<params>` (no other query names).
fn channel(
    req: &HttpRequest,
    state: &AppState,
    name: &str,
    call: &mut Call,
) -> Result<ChannelId, ApiError> {
    let q = resolve(&state.registry.current(), name, req.query_string())?;
    reject_options(&q.options, &[])?;
    call.channel = Some(q.id.to_string());
    Ok(q.id)
}

fn sink_type(text: &str) -> Result<SinkType, ApiError> {
    SinkType::parse(text).ok_or_else(|| {
        let shown: String = text.chars().take(32).collect();
        ApiError::bad_request(
            "unknown_sink_type",
            format!("no sink type {shown:?}; the types are \"s3\" and \"local\""),
        )
    })
}

fn sink_error(e: SinkError) -> ApiError {
    match e {
        SinkError::NotConfigured(kind) => ApiError::new(
            StatusCode::CONFLICT,
            "sink_not_configured",
            format!("the {kind} sink is not configured on this deployment"),
        ),
        SinkError::InSettings => ApiError::new(
            StatusCode::CONFLICT,
            "sink_in_settings",
            "this sink is set in the settings (archive.sinks); only the settings can remove it",
        ),
        e => {
            tracing::error!(error = %e, "cannot read or change archive sinks");
            ApiError {
                retry_after: Some(1),
                ..ApiError::unavailable("sink state is unavailable right now; retry shortly")
            }
        }
    }
}

fn sink_not_found(sink: SinkType) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "sink_not_found",
        format!("this channel has no {} sink", sink.as_str()),
    )
}

fn ok(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(body)
}

/// Every sink, or none when this deployment has no archive.
async fn all_sinks(state: &AppState) -> Result<Vec<SinkState>, ApiError> {
    match &state.history.sinks {
        Some(sinks) => sinks.list().await.map_err(sink_error),
        None => Ok(Vec::new()),
    }
}

/// A method an admin path does not take: 405 to an admitted caller.
async fn other_method(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let call = Call::new("other");
    let outcome = admit(&req, &state).and_then(|()| {
        Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not accepted here", req.method()),
        ))
    });
    call.finish(outcome)
}

/// `GET /admin/sinks`: every channel's sinks.
async fn list(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let call = Call::new("list");
    let outcome = async {
        admit(&req, &state)?;
        Ok(ok(json!({ "sinks": all_sinks(&state).await? })))
    }
    .await;
    call.finish(outcome)
}

/// `GET /admin/channels/{name}/sinks?<params>`: one channel's sinks.
async fn channel_sinks(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mut call = Call::new("channel_sinks");
    let outcome = async {
        admit(&req, &state)?;
        let id = channel(&req, &state, &name, &mut call)?.to_string();
        let mut sinks = all_sinks(&state).await?;
        sinks.retain(|s| s.channel == id);
        Ok(ok(json!({ "channel": id, "sinks": sinks })))
    }
    .await;
    call.finish(outcome)
}

/// `GET /admin/channels/{name}/sinks/{type}?<params>`: one sink's state.
async fn get(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mut call = Call::new("get");
    let outcome = async {
        admit(&req, &state)?;
        let id = channel(&req, &state, &path.0, &mut call)?;
        let sink = sink_type(&path.1)?;
        let Some(sinks) = &state.history.sinks else {
            return Err(sink_not_found(sink));
        };
        match sinks.state(&id, sink).await.map_err(sink_error)? {
            Some(s) => Ok(ok(json!(s))),
            None => Err(sink_not_found(sink)),
        }
    }
    .await;
    call.finish(outcome)
}

/// `PUT /admin/channels/{name}/sinks/{type}?<params>`: turns a sink on (idempotent).
async fn enable(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mut call = Call::new("enable");
    let outcome = async {
        admit(&req, &state)?;
        let id = channel(&req, &state, &path.0, &mut call)?;
        let sink = sink_type(&path.1)?;
        let Some(sinks) = &state.history.sinks else {
            return Err(sink_error(SinkError::NotConfigured(sink.as_str())));
        };
        Ok(ok(json!(sinks
            .enable(&id, sink)
            .await
            .map_err(sink_error)?)))
    }
    .await;
    call.finish(outcome)
}

/// `DELETE /admin/channels/{name}/sinks/{type}?<params>`: turns a sink off (what it archived
/// stays).
async fn disable(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mut call = Call::new("disable");
    let outcome = async {
        admit(&req, &state)?;
        let id = channel(&req, &state, &path.0, &mut call)?;
        let sink = sink_type(&path.1)?;
        let Some(sinks) = &state.history.sinks else {
            return Err(sink_not_found(sink));
        };
        match sinks.disable(&id, sink).await.map_err(sink_error)? {
            true => Ok(HttpResponse::NoContent()
                .insert_header(("Cache-Control", "no-store"))
                .finish()),
            false => Err(sink_not_found(sink)),
        }
    }
    .await;
    call.finish(outcome)
}
