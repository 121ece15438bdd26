//! A plain streaming HTTP client reading Server-Sent Events through Pushpin, like `curl -N`;
//! panics where a test should fail. Every event's data is checked against the protocol's
//! schema ([`super::schema`]), and its event name and id against the message's `type` and `seq`.

use std::time::Duration;

use serde_json::Value;

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

/// A plain streaming HTTP client reading an SSE stream through Pushpin, like `curl -N`.
pub struct SseClient {
    response: reqwest::Response,
    buf: String,
    /// Comment lines seen (keep-alives and the preamble).
    pub comments: usize,
}

impl SseClient {
    /// Opens `path` (with query) on `base`; `last_event_id` is sent as the reconnect header.
    pub async fn connect(base: &str, path: &str, last_event_id: Option<&str>) -> SseClient {
        let mut request = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "GET {path}"
        );
        SseClient::from_response(response)
    }

    /// Reads the SSE stream of a response the caller requested (with its own headers).
    pub fn from_response(response: reqwest::Response) -> SseClient {
        assert!(
            !response.headers().contains_key("grip-hold"),
            "Pushpin consumes the GRIP headers"
        );
        SseClient {
            response,
            buf: String::new(),
            comments: 0,
        }
    }

    /// The next event, or None on timeout or end of stream.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = ("message".to_string(), None, Vec::new());
                for line in block.lines() {
                    match line.split_once(": ").unwrap_or((line, "")) {
                        ("event", v) => event = v.to_string(),
                        ("id", v) => id = Some(v.to_string()),
                        ("data", v) => data.push(v.to_string()),
                        _ if line.starts_with(':') => self.comments += 1,
                        _ => {}
                    }
                }
                if data.is_empty() {
                    continue; // A comment or `retry:` block.
                }
                let data: Value =
                    serde_json::from_str(&data.join("\n")).expect("events carry JSON");
                super::schema::check_server_message(&data, "Server-Sent Event");
                assert_eq!(
                    data["type"],
                    event.as_str(),
                    "an SSE event is named after its type"
                );
                if let Some(id) = &id {
                    assert_eq!(
                        Some(id.as_str()),
                        data["seq"].as_u64().map(|s| s.to_string()).as_deref(),
                        "an SSE event's id is its seq: {data}"
                    );
                }
                return Some(SseEvent { event, id, data });
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8 stream"));
        }
    }

    /// Reads until an event of `kind`; returns it and everything before it.
    pub async fn next_of(&mut self, kind: &str, timeout: Duration) -> (SseEvent, Vec<SseEvent>) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(e) if e.event == kind => return (e, skipped),
                Some(e) => skipped.push(e),
                None => panic!("no {kind} event within {timeout:?}; got {skipped:?}"),
            }
        }
    }
}
