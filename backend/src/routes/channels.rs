//! The channel API: `GET /channels` (catalog), `GET /channels/{name}?params` (status of one
//! channel) and `GET /channels/{name}/items?params&limit=&cursor=` (its current items).

use std::time::{Duration, SystemTime};

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::api_error::ApiError;
use super::channel_query::{reject_options, resolve};
use super::AppState;
use crate::fetcher::Metadata;
use crate::status::ChannelStatus;

/// Items per page unless `limit` says otherwise, and the most a page may hold.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

fn catalog_entry(m: &Metadata, access: crate::auth::Access) -> Value {
    json!({
        "name": m.name,
        "description": m.description,
        "id_field": m.id_field,
        "params": m.params.iter().map(|(name, spec)| (name.clone(), json!({
            "required": spec.required,
            "default": spec.default,
            "description": spec.description,
        }))).collect::<serde_json::Map<_, _>>(),
        "poll_interval_secs": m.poll_interval.as_secs_f64(),
        "rate_limit": m.rate_limit.iter().map(|(window, calls)| json!({
            "window_secs": window.as_secs(),
            "calls": calls,
        })).collect::<Vec<_>>(),
        "doc_url": m.doc_url,
        "api_url": m.api_url,
        "access": access.as_str(),
    })
}

/// `GET /channels`: every channel type, by name.
pub async fn catalog(state: web::Data<AppState>) -> HttpResponse {
    let registry = state.registry.current();
    let channels: Vec<Value> = registry
        .names()
        .filter_map(|n| registry.get(n))
        .map(|e| {
            let access = state.auth.access(&e.metadata.name, e.metadata.access);
            catalog_entry(&e.metadata, access)
        })
        .collect();
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-cache"))
        .json(json!({ "channels": channels }))
}

/// RFC 3339 in UTC; `None` for a time no calendar date can hold.
fn rfc3339(t: SystemTime) -> Option<String> {
    let nanos = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::try_from(nanos).ok()?)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// `GET /channels/{name}?params`: one channel's activity and health.
pub async fn status(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut q = resolve(&state.registry.current(), &name, req.query_string())?;
    super::auth::require(&state, &req, &mut q, "status").await?;
    reject_options(&q.options, &[])?;
    let id = q.id.to_string();
    let subscribers = state.demand.subscribers(&q.id, tokio::time::Instant::now());
    let polled = state.status.get(&q.id);
    let (seq, item_count) = match &polled {
        Some(s) => (s.seq, s.item_count),
        // Not polled by this process: what the store holds (possibly from another replica).
        None => {
            let (meta, items) = state.store.load(&q.id).await.map_err(|e| {
                tracing::error!(error = %e, "cannot read channel state for the status API");
                ApiError::unavailable("the item store is unavailable; try again")
            })?;
            (meta.seq, items.len())
        }
    };
    let (active, last_poll, next_poll, upstream) = match &polled {
        Some(s) => (
            s.active,
            s.last_poll.as_ref().map(|p| {
                json!({
                    "at": rfc3339(p.at),
                    "outcome": p.outcome,
                    "duration_ms": p.duration.as_millis() as u64,
                })
            }),
            s.next_poll.and_then(rfc3339),
            upstream(s),
        ),
        None => (false, None, None, json!({"status": "unknown"})),
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-cache"))
        .json(json!({
            "channel": q.id.name(),
            "params": q.id.params(),
            "id": id,
            "active": active,
            "subscribers": {
                "total": subscribers.total(),
                "websocket": subscribers.websocket,
                "sse": subscribers.sse,
                "other": subscribers.other,
            },
            "poll_interval_secs": secs(q.entry.metadata.poll_interval),
            "last_poll": last_poll,
            "next_poll_at": next_poll,
            "seq": seq,
            "item_count": item_count,
            "upstream": upstream,
        })))
}

fn upstream(s: &ChannelStatus) -> Value {
    match &s.degraded {
        Some(code) => json!({
            "status": "degraded",
            "code": code,
            "error": code.message(),
            "retry_in_secs": s.retry_in.map(secs),
        }),
        None if s.last_poll.is_none() => json!({"status": "unknown"}),
        None => json!({"status": "ok"}),
    }
}

/// `GET /channels/{name}/items?params&limit=N&cursor=ID`: the channel's current items in item
/// id order, a page at a time; `next_cursor` continues after the last item of this page.
pub async fn items(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut q = resolve(&state.registry.current(), &name, req.query_string())?;
    super::auth::require(&state, &req, &mut q, "items").await?;
    reject_options(&q.options, &["limit", "cursor"])?;
    let limit = match q.options.get("limit") {
        None => DEFAULT_PAGE,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "bad_limit",
                    format!("limit must be a whole number from 1 to {MAX_PAGE}"),
                ))
            }
        },
    };
    let cursor = q.options.get("cursor");
    let (meta, stored) = state.store.load(&q.id).await.map_err(|e| {
        tracing::error!(error = %e, "cannot read items for the items API");
        ApiError::unavailable("the item store is unavailable; try again")
    })?;
    let mut after = stored
        .into_iter()
        .filter(|i| cursor.is_none_or(|c| i.id.as_str() > c.as_str()));
    let page: Vec<_> = after.by_ref().take(limit).collect();
    let next_cursor = match after.next() {
        Some(_) => page.last().map(|i| i.id.clone()),
        None => None,
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-cache"))
        .json(json!({
            "channel": q.id.name(),
            "params": q.id.params(),
            "seq": meta.seq,
            "items": page.into_iter().map(|i| i.data).collect::<Vec<_>>(),
            "next_cursor": next_cursor,
        })))
}
