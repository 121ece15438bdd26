//! Issue 18, idle connections survive: Pushpin pings an idle WebSocket client every
//! `server.client_keep_alive_secs` (so a load balancer's idle timeout never fires), and not at
//! all when it is 0. (SSE's keep-alive comments: `sse::an_idle_stream_gets_keep_alive_comments`.)

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// Every non-text frame the client receives within `window` (text messages are skipped).
async fn control_frames(ws: &mut Client, window: Duration) -> Vec<(Duration, Message)> {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + window;
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, ws.ws.next()).await {
        match frame {
            Ok(Message::Text(_)) => {}
            Ok(m) => frames.push((start.elapsed(), m)),
            Err(e) => panic!("connection broke: {e}"),
        }
    }
    frames
}

fn stack_with(secs: &str) -> StackOptions {
    StackOptions {
        env: vec![(
            "RESTREAM_SERVER__CLIENT_KEEP_ALIVE_SECS".into(),
            secs.into(),
        )],
        ..StackOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_client_is_pinged() {
    let stack = Stack::start_with(stack_with("2")).await;
    let mut ws = Client::connect(&stack.ws_url).await;
    ws.subscribe("usgs-earthquakes", json!({})).await;
    ws.recv_type("snapshot", Duration::from_secs(10)).await;

    // Idle: nothing is published (the upstream does not change), only pings arrive.
    let frames = control_frames(&mut ws, Duration::from_secs(7)).await;
    let pings: Vec<Duration> = frames
        .iter()
        .filter_map(|(at, m)| match m {
            Message::Ping(payload) if payload.as_ref() == b"ka" => Some(*at),
            _ => None,
        })
        .collect();
    assert!(
        pings.len() >= 2,
        "a ping every ~2 s of silence, got {frames:?}"
    );
    assert!(
        pings
            .windows(2)
            .all(|w| w[1] - w[0] >= Duration::from_millis(900)),
        "not more often than the silence asks: {pings:?}"
    );
    // The client's pongs (sent by the client library) reached the backend as WOH events, and
    // the connection still works.
    let woh = scrape(&format!("http://{}/metrics", stack.backend.addr)).await;
    assert!(value(&woh, "restream_woh_events_total", &[("event", "PONG")]) >= 1.0);
    stack.upstream.bump();
    ws.recv_type("new", Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pings_when_keep_alives_are_off() {
    let stack = Stack::start_with(stack_with("0")).await;
    let mut ws = Client::connect(&stack.ws_url).await;
    ws.subscribe("usgs-earthquakes", json!({})).await;
    let frames = control_frames(&mut ws, Duration::from_secs(4)).await;
    assert!(frames.is_empty(), "{frames:?}");
}
