//! The WebSocket-over-HTTP endpoint Pushpin forwards client WebSockets to.

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use super::AppState;
use crate::auth::{self, Grants, RequestAuth};
use crate::channel::GripChannel;
use crate::connection::{self, Subscriptions};
use crate::poller::SnapshotRequest;
use crate::pushpin::grip;
use crate::pushpin::woh;

/// The connection meta headers: what Pushpin sends with each request (`Meta-*`) and what sets
/// it (`Set-Meta-*`), for the connection's subscriptions and its channel tokens' grants.
const SUBS_META_HEADER: &str = "meta-restream-subs";
const SET_SUBS_META_HEADER: &str = "set-meta-restream-subs";
const GRANTS_META_HEADER: &str = "meta-restream-grants";
const SET_GRANTS_META_HEADER: &str = "set-meta-restream-grants";

fn plain(status: actix_web::http::StatusCode, message: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain")
        .body(message + "\n")
}

pub async fn websocket_over_http(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(refused) = super::edge::refuse_websocket(&req, &state) {
        return refused;
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with(woh::CONTENT_TYPE) {
        return plain(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "this endpoint speaks WebSocket-over-HTTP ({}); connect through Pushpin",
                woh::CONTENT_TYPE
            ),
        );
    }
    let Some(connection_id) = req
        .headers()
        .get("Connection-Id")
        .and_then(|v| v.to_str().ok())
    else {
        return plain(
            actix_web::http::StatusCode::BAD_REQUEST,
            "missing Connection-Id header".into(),
        );
    };
    // Pushpin replays the client's URL on every request: the connection's token is checked
    // again each time, so its expiry is noticed by the next keep-alive at the latest. (Before
    // the span is entered: a refresh for an unknown key may wait.)
    let now = auth::now_unix();
    let token = super::auth::connection_token(&req);
    let connection = state.auth.credential(token.as_deref(), now).await;
    let span = tracing::debug_span!("woh", connection = %connection_id);
    let _enter = span.enter();
    let events = match woh::decode(&body) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "malformed WebSocket-over-HTTP body");
            return plain(
                actix_web::http::StatusCode::BAD_REQUEST,
                format!("malformed body: {e}"),
            );
        }
    };
    let meta = req
        .headers()
        .get(SUBS_META_HEADER)
        .and_then(|v| v.to_str().ok());
    let grants = req
        .headers()
        .get(GRANTS_META_HEADER)
        .and_then(|v| v.to_str().ok());
    let event_count = events.len();
    crate::metrics::get().woh_request(&events);
    let address = super::client_address(&req, &state);
    let request_auth = RequestAuth {
        auth: &state.auth,
        connection,
        grants: Grants::from_meta(grants),
        now,
    };
    let handled_at = tokio::time::Instant::now();
    let reply = connection::handle(
        connection_id,
        events,
        Subscriptions::from_meta(meta).capped(state.limits.max_subscriptions),
        &connection::Context {
            registry: &state.registry.current(),
            limits: &state.limits,
            admission: &state.guard.for_connection(connection_id, address),
            auth: &request_auth,
            snapshots: &state.snapshots,
            now: handled_at,
        },
    );
    for (channel, refusal) in &reply.refusals {
        auth::record(*refusal, channel, "websocket");
    }
    tracing::debug!(
        events = event_count,
        subscriptions = reply.live_channels.len(),
        "woh request"
    );
    for channel in &reply.live_channels {
        state.demand.hint(channel, handled_at);
    }
    for wanted in &reply.snapshots {
        state.scheduler.request_snapshot(
            wanted.channel.clone(),
            SnapshotRequest {
                connection_channel: GripChannel::connection(connection_id),
                since: wanted.since,
                transport: grip::Transports::WebSocket,
                requested_at: handled_at,
            },
        );
    }
    let mut response = HttpResponse::Ok();
    response
        .content_type(woh::CONTENT_TYPE)
        .insert_header(("Sec-WebSocket-Extensions", grip::WS_EXTENSION))
        .insert_header((
            "Keep-Alive-Interval",
            woh::keep_alive_secs(connection_id, state.keep_alive_interval).to_string(),
        ));
    if reply.subscriptions_changed {
        match HeaderValue::from_str(&reply.subscriptions.to_meta()) {
            Ok(v) => {
                let name = HeaderName::from_static(SET_SUBS_META_HEADER);
                response.insert_header((name, v));
            }
            Err(e) => tracing::error!(error = %e, "subscription meta is not a valid header value"),
        }
    }
    if reply.grants_changed {
        match HeaderValue::from_str(&reply.grants.to_meta()) {
            Ok(v) => {
                let name = HeaderName::from_static(SET_GRANTS_META_HEADER);
                response.insert_header((name, v));
            }
            Err(e) => tracing::error!(error = %e, "grants meta is not a valid header value"),
        }
    }
    response.body(woh::encode(&reply.events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::GRANTS_META;
    use crate::connection::SUBS_META;

    #[test]
    fn meta_header_names_are_the_metas_in_lower_case() {
        let lower = |s: String| s.to_ascii_lowercase();
        assert_eq!(SUBS_META_HEADER, lower(format!("Meta-{SUBS_META}")));
        assert_eq!(SET_SUBS_META_HEADER, lower(format!("Set-Meta-{SUBS_META}")));
        assert_eq!(GRANTS_META_HEADER, lower(format!("Meta-{GRANTS_META}")));
        assert_eq!(
            SET_GRANTS_META_HEADER,
            lower(format!("Set-Meta-{GRANTS_META}"))
        );
    }
}
