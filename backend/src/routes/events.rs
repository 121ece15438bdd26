//! `GET /channels/{name}/events?params`: a channel as Server-Sent Events, held open by Pushpin
//! (`Grip-Hold: stream`) on the same GRIP channel WebSocket subscribers use, so one poll serves
//! both. The snapshot (or, with `Last-Event-ID` / `since`, the missed events) comes from the
//! channel's poller on a private channel, in order with everything else the channel sends.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use super::api_error::ApiError;
use super::channel_query::{reject_options, resolve};
use super::AppState;
use crate::channel::GripChannel;
use crate::poller::SnapshotRequest;
use crate::pushpin::grip::{PublishItem, Transports};
use crate::pushpin::publisher::Publisher;
use crate::pushpin::sse;

/// When a stream refused by a channel cap is told to try again.
const RETRY_CAPPED_SECS: u64 = 60;

pub async fn events(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut q = resolve(&state.registry.current(), &name, req.query_string())?;
    let granted_until = super::auth::require(&state, &req, &mut q, "sse").await?;
    reject_options(&q.options, &["since"])?;
    // Each open is 60 s of demand with no WebSocket: bounded per client address, and by the
    // channel caps like a subscribe.
    let address = super::client_address(&req, &state);
    state.guard.sse_open(address).map_err(|wait| {
        ApiError::too_many(
            "rate_limited",
            "too many event streams opened from this address; slow down",
            wait,
        )
    })?;
    state
        .guard
        .admit_channel(&q.id, q.entry.metadata.max_channels)
        .map_err(|r| ApiError::too_many("too_many_channels", r.message, RETRY_CAPPED_SECS))?;
    // The browser's reconnect header wins over a `since` in the URL it reconnects to.
    let header = req
        .headers()
        .get("Last-Event-ID")
        .map(HeaderValue::as_bytes);
    let since = match header {
        Some(_) => sse::last_event_id(header),
        None => sse::last_event_id(q.options.get("since").map(String::as_bytes)),
    }
    .map_err(|e| ApiError::bad_request("bad_last_event_id", e.to_string()))?;
    let channel = q.id;
    let private = GripChannel::new_sse();
    // `admit_channel` hinted the channel's demand.
    let now = tokio::time::Instant::now();
    state.scheduler.request_snapshot(
        channel.clone(),
        SnapshotRequest {
            connection_channel: private.clone(),
            since,
            requested_at: now,
            transport: Transports::Sse,
        },
    );
    if let Some(exp) = granted_until {
        close_at_expiry(state.publisher.clone(), private.clone(), exp);
    }
    crate::metrics::get().sse_streams.inc();
    tracing::debug!(channel = %channel, since, "sse stream opened");
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, sse::CONTENT_TYPE))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("Grip-Hold", "stream"))
        // Channel ids never contain `,` or `;` (percent-encoded), so the list is unambiguous.
        .insert_header(("Grip-Channel", format!("{channel}, {private}")))
        .insert_header((
            "Grip-Keep-Alive",
            sse::keep_alive_header(state.sse_keep_alive),
        ))
        .body(sse::preamble(channel.as_str())))
}

/// Ends the stream when its token expires: Pushpin holds it, so the backend publishes a GRIP
/// `close` to the stream's private channel then. The browser's `EventSource` reconnects with
/// the same (expired) token and is refused with 401, which ends its retries. The timer lives
/// in this process: if it restarts first, the stream stays open until the client reconnects
/// (docs/security/auth.md).
fn close_at_expiry(publisher: Arc<dyn Publisher>, stream: GripChannel, exp: u64) {
    let wait = Duration::from_secs(exp.saturating_sub(crate::auth::now_unix()));
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        match publisher
            .publish(&[PublishItem::close_stream(&stream)])
            .await
        {
            Ok(()) => tracing::debug!(stream = %stream, "sse stream closed: token expired"),
            Err(e) => tracing::warn!(error = %e, "cannot close an SSE stream whose token expired"),
        }
    });
}
