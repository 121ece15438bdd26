//! The history API: `GET /channels/{name}/history?params&from&to&limit&cursor` (one channel)
//! and `GET /history?channel=<id>…&from&to&limit&cursor` (many channels merged), pages of
//! events in time order with an opaque cursor (docs/history.md).

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::api_error::ApiError;
use super::channel_query::{page_limit, reject_options, resolve, ChannelQuery};
use super::AppState;
use crate::channel::ChannelId;
use crate::history::{self, Cursor, Range, ReadError, Source};

/// What the two routes take beside the channels.
struct Paging {
    range: Range,
    limit: usize,
    cursor: Option<String>,
}

fn time(options: &BTreeMap<String, String>, key: &str) -> Result<Option<u64>, ApiError> {
    options
        .get(key)
        .map(|text| {
            history::parse_rfc3339(text).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_time",
                    format!("{key} must be an RFC 3339 time such as 2026-12-02T08:00:00Z"),
                )
            })
        })
        .transpose()
}

fn paging(options: &BTreeMap<String, String>, state: &AppState) -> Result<Paging, ApiError> {
    let settings = &state.history.settings;
    let range = Range {
        from_ms: time(options, "from")?,
        to_ms: time(options, "to")?,
    };
    if let (Some(from), Some(to)) = (range.from_ms, range.to_ms) {
        if from > to {
            return Err(ApiError::bad_request(
                "invalid_range",
                "from is after to; from is inclusive, to exclusive",
            ));
        }
    }
    let limit = page_limit(options, settings.page_default, settings.page_max)?;
    Ok(Paging {
        range,
        limit,
        cursor: options.get("cursor").cloned(),
    })
}

/// Reads one page of `channels` and renders the answer's shared part.
async fn read(
    state: &AppState,
    channels: &[ChannelId],
    paging: &Paging,
) -> Result<(Vec<String>, String, bool), ApiError> {
    let cursor = match &paging.cursor {
        Some(text) => Cursor::decode(text, channels)
            .map_err(|e| ApiError::bad_request("invalid_cursor", e.to_string()))?,
        None => Cursor::start(channels.len()),
    };
    let service = &state.history;
    let sources = channels
        .iter()
        .zip(&cursor.positions)
        .map(|(id, at)| {
            Source::new(
                state.store.as_ref(),
                service.archive.as_deref(),
                id.clone(),
                paging.range,
                *at,
                service.settings.archive_objects_per_read,
            )
        })
        .collect();
    let page = history::page(sources, cursor, paging.limit)
        .await
        .map_err(|e| match e {
            ReadError::Store(e) => {
                tracing::error!(error = %e, "cannot read history from the item store");
                ApiError {
                    retry_after: Some(2),
                    ..ApiError::unavailable("the item store is unavailable; try again")
                }
            }
            ReadError::Archive(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read history from the archive");
                ApiError {
                    retry_after: Some(5),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "archive_unavailable",
                        "the archive holding this range is unavailable; try again",
                    )
                }
            }
        })?;
    let events = page
        .events
        .iter()
        .map(|(_, e)| history::to_line(e))
        .collect();
    Ok((events, page.cursor.encode(channels), page.more))
}

/// The answer: `head` (JSON members) then the events, cursor and more.
fn answer(head: String, events: &[String], cursor: &str, more: bool) -> HttpResponse {
    let body = format!(
        r#"{{{head},"events":[{}],"cursor":{},"more":{more}}}"#,
        events.join(","),
        serde_json::Value::String(cursor.to_string()),
    );
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-cache"))
        .content_type("application/json")
        .body(body)
}

fn counted(
    route: &'static str,
    result: Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let label = match &result {
        Ok(_) => "ok",
        Err(e) => e.code,
    };
    crate::metrics::get()
        .history_requests
        .with_label_values(&[route, label])
        .inc();
    result
}

/// `GET /channels/{name}/history?params&from&to&limit&cursor`.
pub async fn channel(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    counted("channel", channel_page(&req, &name, &state).await)
}

async fn channel_page(
    req: &HttpRequest,
    name: &str,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let mut q = resolve(&state.registry.current(), name, req.query_string())?;
    super::auth::require(state, req, &mut q, "history").await?;
    reject_options(&q.options, &["from", "to", "limit", "cursor"])?;
    let paging = paging(&q.options, state)?;
    let channels = [q.id];
    let (events, cursor, more) = read(state, &channels, &paging).await?;
    let head = format!(
        r#""channel":{}"#,
        serde_json::Value::String(channels[0].to_string())
    );
    Ok(answer(head, &events, &cursor, more))
}

/// `GET /history?channel=<id>&channel=<id>…&from&to&limit&cursor`.
pub async fn coalesced(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    counted("coalesced", coalesced_page(&req, &state).await)
}

/// The query's `channel` values (in order) and its other names (each at most once).
fn split_query(query: &str) -> Result<(Vec<String>, BTreeMap<String, String>), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::bad_request("bad_query", format!("malformed query string: {e}")))?;
    let mut channels = Vec::new();
    let mut options = BTreeMap::new();
    for (k, v) in pairs {
        match k.as_str() {
            "channel" => channels.push(v),
            "from" | "to" | "limit" | "cursor" | "token" => {
                if options.insert(k.clone(), v).is_some() {
                    return Err(ApiError::bad_request(
                        "bad_query",
                        format!("query parameter {k:?} is given more than once"),
                    ));
                }
            }
            _ => {
                let shown: String = k.chars().take(64).collect();
                return Err(ApiError::bad_request(
                    "bad_query",
                    format!("{shown:?} is not accepted here; channels go in channel=<id>"),
                ));
            }
        }
    }
    Ok((channels, options))
}

async fn coalesced_page(req: &HttpRequest, state: &AppState) -> Result<HttpResponse, ApiError> {
    let (texts, options) = split_query(req.query_string())?;
    let max = state.history.settings.max_channels;
    if texts.is_empty() {
        return Err(ApiError::bad_request(
            "no_channels",
            "name the channels with channel=<id>, e.g. channel=usgs%3Ffeed%3Dall_hour",
        ));
    }
    if texts.len() > max {
        return Err(ApiError::bad_request(
            "too_many_channels",
            format!("at most {max} channels per request"),
        ));
    }
    let registry = state.registry.current();
    let mut channels: Vec<ChannelId> = Vec::with_capacity(texts.len());
    for text in &texts {
        let (name, params) = text.split_once('?').unwrap_or((text, ""));
        let mut q: ChannelQuery = resolve(&registry, name, params)?;
        if !q.options.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_params",
                "a channel id holds the channel's params only",
            ));
        }
        if let Some(token) = options.get("token") {
            q.options.insert("token".into(), token.clone());
        }
        super::auth::require(state, req, &mut q, "history").await?;
        if channels.contains(&q.id) {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("channel {} is given more than once", q.id),
            ));
        }
        channels.push(q.id);
    }
    let paging = paging(&options, state)?;
    let (events, cursor, more) = read(state, &channels, &paging).await?;
    let ids: Vec<String> = channels.iter().map(ToString::to_string).collect();
    let head = format!(
        r#""channels":{}"#,
        serde_json::to_string(&ids).expect("strings")
    );
    Ok(answer(head, &events, &cursor, more))
}
