//! The edge checks in front of every route (see `edge/` for the decisions): a `Grip-Sig`
//! that does not verify is refused; CORS for the HTTP API, SSE and the publish API (preflights answered,
//! `Access-Control-Allow-Origin` on allowed origins, other origins refused); and the checks
//! the WebSocket endpoint and `/internal/*` make of their callers.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use super::{ApiError, AppState};
use crate::edge::{cluster_secret, OriginDecision};

/// The header Pushpin signs proxied requests with.
pub const GRIP_SIG: &str = "Grip-Sig";
/// Request headers a cross-origin page may send: a token, and SSE's resume position.
const ALLOW_HEADERS: &str = "Authorization, Last-Event-ID";
/// The API is read-only over CORS...
const ALLOW_METHODS: &str = "GET, HEAD, OPTIONS";
/// ...but for the publish API (`/channels/{name}/items[/{id}]`): its methods and headers.
const PUBLISH_ALLOW_HEADERS: &str = "Authorization, Content-Type, Idempotency-Key";
const PUBLISH_ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS";
/// Response headers a cross-origin publisher may read (when to retry a 503).
const PUBLISH_EXPOSE_HEADERS: &str = "Retry-After";

/// `/channels/{name}/items` and `/channels/{name}/items/{id}`: the publish API's paths.
fn is_publish_path(path: &str) -> bool {
    let mut parts = path.split('/');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(""), Some("channels"), Some(name), Some("items"), id, None)
            if !name.is_empty() && id.is_none_or(|id| !id.is_empty())
    )
}
/// How long a browser may cache a preflight answer (seconds; Chromium caps it at 7200).
const PREFLIGHT_MAX_AGE: &str = "3600";

fn refusal(status: StatusCode, code: &'static str, message: &str) -> HttpResponse {
    ApiError::new(status, code, message).error_response()
}

fn app_state(req: &ServiceRequest) -> Option<web::Data<AppState>> {
    req.app_data::<web::Data<AppState>>().cloned()
}

/// Refuses a request whose `Grip-Sig` does not verify with Pushpin's key: only Pushpin can
/// say a request came through its public port (and so that its `Connection-Id` and `Meta-*`
/// headers are Pushpin's, not a client's).
pub async fn verify_grip_sig<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let state = app_state(&req);
    let key = state.as_ref().and_then(|s| s.edge.grip_sig.as_ref());
    if let (Some(key), Some(sig)) = (key, req.headers().get(GRIP_SIG)) {
        if let Err(e) = key.verify(sig.as_bytes()) {
            tracing::debug!(error = %e, "refused a request whose Grip-Sig does not verify");
            crate::metrics::get()
                .grip_sig_refusals
                .with_label_values(&["invalid"])
                .inc();
            let response = refusal(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "request signature not accepted",
            );
            return Ok(req.into_response(response).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// CORS for the HTTP API and SSE (GET, HEAD and their preflights) and the publish API (POST,
/// PUT, DELETE); other POST routes (the WebSocket endpoint, replica hand-overs) check their
/// callers themselves.
pub async fn cors<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let publish = is_publish_path(req.path());
    let decision = match app_state(&req) {
        Some(state) if *req.method() != Method::POST || publish => state.edge.origins.decide(
            req.headers().get(header::ORIGIN).map(HeaderValue::as_bytes),
            req.headers().get(header::HOST).map(HeaderValue::as_bytes),
        ),
        _ => OriginDecision::Unchecked,
    };
    let preflight = *req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let refused = |req: ServiceRequest, kind: &str| {
        crate::metrics::get()
            .origin_refusals
            .with_label_values(&[kind])
            .inc();
        let response = refusal(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin may not use the API",
        );
        Ok(req.into_response(response).map_into_right_body())
    };
    match decision {
        OriginDecision::Unchecked => Ok(next.call(req).await?.map_into_left_body()),
        OriginDecision::Refused if preflight => refused(req, "preflight"),
        OriginDecision::Refused => refused(req, "http"),
        OriginDecision::Allowed(origin) if preflight => {
            let (methods, headers) = match publish {
                // The same path serves reads (GET) and publishes.
                true => (PUBLISH_ALLOW_METHODS, PUBLISH_ALLOW_HEADERS),
                false => (ALLOW_METHODS, ALLOW_HEADERS),
            };
            let response = HttpResponse::NoContent()
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, methods))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, headers))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE))
                .insert_header((header::VARY, "Origin"))
                .finish();
            Ok(req.into_response(response).map_into_right_body())
        }
        decision => {
            let mut response = next.call(req).await?;
            let headers = response.headers_mut();
            if let OriginDecision::Allowed(origin) = decision {
                if let Ok(v) = HeaderValue::from_str(&origin) {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
                }
                if publish {
                    headers.insert(
                        header::ACCESS_CONTROL_EXPOSE_HEADERS,
                        HeaderValue::from_static(PUBLISH_EXPOSE_HEADERS),
                    );
                }
            }
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
            Ok(response.map_into_left_body())
        }
    }
}

/// The WebSocket endpoint's check of a WOH request, before anything else: it must come from
/// Pushpin (a verified `Grip-Sig`; forged `Connection-Id` / `Meta-*` headers sent straight to
/// the backend port change nothing), and the client's handshake `Origin` (Pushpin replays it
/// on every request) must be allowed. A refusal during OPEN is passed by Pushpin to the
/// client as the handshake's answer.
pub fn refuse_websocket(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    if state.edge.grip_sig.is_some() && !req.headers().contains_key(GRIP_SIG) {
        // (A Grip-Sig that is present but does not verify never gets here: `verify_grip_sig`.)
        crate::metrics::get()
            .grip_sig_refusals
            .with_label_values(&["missing"])
            .inc();
        return Some(plain(StatusCode::UNAUTHORIZED, "connect through Pushpin"));
    }
    let decision = state.edge.origins.decide(
        req.headers().get(header::ORIGIN).map(HeaderValue::as_bytes),
        req.headers().get(header::HOST).map(HeaderValue::as_bytes),
    );
    if decision == OriginDecision::Refused {
        crate::metrics::get()
            .origin_refusals
            .with_label_values(&["websocket"])
            .inc();
        return Some(plain(StatusCode::FORBIDDEN, "origin not allowed"));
    }
    None
}

fn plain(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain")
        .insert_header(("Cache-Control", "no-store"))
        .body(format!("{message}\n"))
}

/// `/internal/*` is for replicas: never through Pushpin, and only with the cluster secret
/// (none on a single node, so always refused there).
pub fn refuse_internal(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    let presented = req
        .headers()
        .get(cluster_secret::HEADER)
        .map(HeaderValue::as_bytes);
    let admitted = !super::via_pushpin(req)
        && state
            .edge
            .cluster_secret
            .as_ref()
            .is_some_and(|s| s.admits(presented));
    if admitted {
        return None;
    }
    crate::metrics::get().cluster_secret_refusals.inc();
    Some(refusal(StatusCode::FORBIDDEN, "forbidden", "forbidden"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn publish_paths_are_the_items_routes() {
        for p in ["/channels/a/items", "/channels/a/items/x%2Fy"] {
            assert!(super::is_publish_path(p), "{p}");
        }
        for p in [
            "/channels",
            "/channels/a",
            "/channels//items",
            "/channels/a/items/",
            "/channels/a/items/x/y",
            "/ws",
            "/channels/a/events",
        ] {
            assert!(!super::is_publish_path(p), "{p}");
        }
    }
}
