//! `POST /internal/snapshot`: cluster mode's hand-over of a subscriber's snapshot request to
//! the replica polling its channel, on the backend port only (never through Pushpin).

use std::sync::LazyLock;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::channel::{ChannelId, GripChannel};
use crate::poller::SnapshotRequest;
use crate::pushpin::grip::Transports;

/// Snapshot requests of one channel as they travel between replicas.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedSnapshots {
    pub channel: String,
    pub requests: Vec<ForwardedSnapshot>,
}

/// One subscriber's snapshot request.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedSnapshot {
    pub connection_channel: String,
    pub since: Option<u64>,
    /// `ws` or `sse`.
    pub transport: String,
    /// Milliseconds since the subscribe was handled (replicas share no clock).
    pub age_ms: u64,
}

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("reqwest client")
});

/// Sends `requests` for `channel` to the replica at `base_url`.
pub async fn send_snapshot_requests(
    base_url: &str,
    channel: &str,
    requests: &[SnapshotRequest],
) -> Result<(), String> {
    let body = ForwardedSnapshots {
        channel: channel.to_string(),
        requests: requests
            .iter()
            .map(|r| ForwardedSnapshot {
                connection_channel: r.connection_channel.to_string(),
                since: r.since,
                transport: match r.transport {
                    Transports::Sse => "sse",
                    _ => "ws",
                }
                .into(),
                age_ms: r.requested_at.elapsed().as_millis() as u64,
            })
            .collect(),
    };
    let url = format!("{}/internal/snapshot", base_url.trim_end_matches('/'));
    let response = CLIENT
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {}", response.status()))
    }
}

pub async fn snapshot(
    req: HttpRequest,
    body: web::Json<ForwardedSnapshots>,
    state: web::Data<AppState>,
) -> HttpResponse {
    // Pushpin signs what it proxies: this route is for replicas on the backend port only.
    if req.headers().contains_key("Grip-Sig") {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found").error_response();
    }
    let body = body.into_inner();
    let Ok(channel) = ChannelId::parse(&body.channel) else {
        return bad("channel must be a canonical channel id".into());
    };
    let mut requests = Vec::with_capacity(body.requests.len());
    let now = tokio::time::Instant::now();
    for r in body.requests {
        let transport = match r.transport.as_str() {
            "ws" => Transports::WebSocket,
            "sse" => Transports::Sse,
            other => return bad(format!("unknown transport {other:?} (ws or sse)")),
        };
        // Only a connection's own channel may receive a private snapshot.
        let connection_channel = match GripChannel::parse(&r.connection_channel) {
            Ok(c) if c.is_private() => c,
            _ => return bad("connection_channel must be a connection's channel".into()),
        };
        requests.push(SnapshotRequest {
            connection_channel,
            since: r.since,
            transport,
            requested_at: now
                .checked_sub(Duration::from_millis(r.age_ms))
                .unwrap_or(now),
        });
    }
    for request in requests {
        state.scheduler.request_snapshot(channel.clone(), request);
    }
    HttpResponse::Accepted().finish()
}

fn bad(message: String) -> HttpResponse {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message).error_response()
}
