//! The channel API: `GET /channels` (catalog), `GET /channels/{name}?params` (status of one
//! channel) and `GET /channels/{name}/items?params&limit=&cursor=` (its current items).

use std::time::{Duration, SystemTime};

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::api_error::ApiError;
use super::channel_query::{page_limit, reject_options, resolve};
use super::AppState;
use crate::channel::ChannelId;
use crate::fetcher::Metadata;
use crate::read_cache::{Cached, ReadKey};
use crate::status::ChannelStatus;
use crate::store::{Page, StoreError};

/// A catalog entry. Push channels say so (`"kind": "push"`, their `mode`); the rest are
/// `"kind": "polled"`.
fn catalog_entry(
    m: &Metadata,
    access: crate::auth::Access,
    push: Option<&crate::push::PushSpec>,
) -> Value {
    let mode = push.map(|p| match p.mode {
        crate::push::PushMode::Items => "items",
        crate::push::PushMode::Events => "events",
    });
    json!({
        "kind": if push.is_some() { "push" } else { "polled" },
        "mode": mode,
        "name": m.name,
        "description": m.description,
        "id_field": m.id_field,
        // A fetcher without declared params (the original's shape) takes any, within bounds.
        "free_params": m.params.is_free(),
        "params": m.params.declared().iter().map(|(name, spec)| (name.clone(), json!({
            "required": spec.required,
            "default": spec.default,
            "description": spec.description,
            "type": spec.kind,
            "allowed": spec.allowed,
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
            catalog_entry(&e.metadata, access, e.fetcher.push().as_deref())
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
        // Not polled by this process: what the store holds (possibly from another replica),
        // the count read once per seq.
        None => stored_summary(&state, &q.id).await.map_err(|e| {
            tracing::error!(error = %e, "cannot read channel state for the status API");
            ApiError::unavailable("the item store is unavailable; try again")
        })?,
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

/// The stored seq and item count of a channel: its meta, and the count from the cache.
async fn stored_summary(state: &AppState, id: &ChannelId) -> Result<(u64, usize), StoreError> {
    let seq = state.store.meta(id).await?.seq;
    let key = ReadKey::Count {
        channel: id.clone(),
        seq,
    };
    if let Some(Cached::Count(n)) = state.read_cache.get(&key) {
        return Ok((seq, n as usize));
    }
    let count = state.store.item_count(id).await?;
    state.read_cache.insert(key, Cached::Count(count));
    Ok((seq, count as usize))
}

/// A page of the channel's items: from the cache when the channel is unchanged since (its seq
/// known from this process's poller, else from its meta), else from one paged store read.
async fn page(
    state: &AppState,
    id: &ChannelId,
    after: Option<&str>,
    limit: usize,
) -> Result<std::sync::Arc<Page>, StoreError> {
    let seq = match state.status.get(id) {
        Some(s) if s.active => s.seq,
        _ => state.store.meta(id).await?.seq,
    };
    let key = |seq| ReadKey::Page {
        channel: id.clone(),
        seq,
        after: after.map(str::to_string),
        limit,
    };
    if let Some(Cached::Page(page)) = state.read_cache.get(&key(seq)) {
        return Ok(page);
    }
    let page = std::sync::Arc::new(state.store.items_page(id, after, limit).await?);
    state
        .read_cache
        .insert(key(page.meta.seq), Cached::Page(page.clone()));
    Ok(page)
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
    let limit = page_limit(&q.options, state.items_page_default, state.items_page_max)?;
    let cursor = q.options.get("cursor").map(String::as_str);
    let page = page(&state, &q.id, cursor, limit).await.map_err(|e| {
        tracing::error!(error = %e, "cannot read items for the items API");
        ApiError::unavailable("the item store is unavailable; try again")
    })?;
    let next_cursor = match page.more {
        true => page.items.last().map(|i| i.id.clone()),
        false => None,
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-cache"))
        .json(json!({
            "channel": q.id.name(),
            "params": q.id.params(),
            "seq": page.meta.seq,
            "items": page.items.iter().map(|i| &i.data).collect::<Vec<_>>(),
            "next_cursor": next_cursor,
        })))
}
