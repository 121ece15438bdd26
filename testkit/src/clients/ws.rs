//! WebSocket clients through Pushpin, each consuming the `ready` message first: fallible
//! functions on a raw stream (opened gradually in bulk: Pushpin 1.36 answers 502 to large
//! bursts of simultaneous opens) and [`Client`], the tests' panicking wrapper. The `ready`
//! message and every message a [`Client`] receives ([`next_message`]) are checked against the
//! protocol's schema ([`super::schema`]).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        source: tungstenite::Error,
    },
    #[error("closed before ready")]
    ClosedBeforeReady,
    #[error("expected ready, got {0}")]
    NotReady(Value),
    #[error("timed out waiting for a message")]
    Timeout,
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A message that does not match `schemas/protocol/server-message.schema.json`.
    #[error("{0}")]
    Schema(String),
    #[error(transparent)]
    WebSocket(#[from] tungstenite::Error),
}

/// Opens (and subscribes) in batches of this many at once, each batch awaited before the next:
/// Pushpin 1.36 fails WOH requests, and resets their connections, once about 100 are queued…
pub const BATCH: usize = 50;
/// …with this pause between batches (about 1,000 opens a second).
pub const PAUSE: Duration = Duration::from_millis(50);

/// How often to try opening a connection, and the pause after the n-th failure.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub pause: Duration,
    /// The pause grows with each attempt (`pause × n`) instead of staying fixed.
    pub growing: bool,
}

impl Retry {
    /// Bulk opens: 8 attempts, 100 ms more pause after each.
    pub const BULK: Retry = Retry {
        attempts: 8,
        pause: Duration::from_millis(100),
        growing: true,
    };
    /// One test client: 5 attempts, 200 ms apart.
    pub const ONE: Retry = Retry {
        attempts: 5,
        pause: Duration::from_millis(200),
        growing: false,
    };
}

/// One client, retried as `retry` says, after its `ready` message.
pub async fn connect_with(url: &str, retry: Retry) -> Result<Ws, WsError> {
    let mut attempt = 0;
    loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok((mut ws, _)) => {
                let ready = next_message(&mut ws, Duration::from_secs(10))
                    .await?
                    .ok_or(WsError::ClosedBeforeReady)?;
                if ready["type"] != "ready" {
                    return Err(WsError::NotReady(ready));
                }
                return Ok(ws);
            }
            Err(source) if attempt + 1 >= retry.attempts => {
                return Err(WsError::Connect {
                    url: url.to_string(),
                    source,
                })
            }
            Err(_) => {
                attempt += 1;
                let factor = if retry.growing { attempt } else { 1 };
                tokio::time::sleep(retry.pause * factor).await;
            }
        }
    }
}

/// One client opened as in bulk ([`Retry::BULK`]).
pub async fn connect(url: &str) -> Result<Ws, WsError> {
    connect_with(url, Retry::BULK).await
}

/// `n` clients, opened gradually.
pub async fn connect_many(url: &str, n: usize) -> Result<Vec<Ws>, WsError> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let batch = BATCH.min(n - out.len());
        let opened = futures_util::future::join_all((0..batch).map(|_| connect(url))).await;
        for ws in opened {
            out.push(ws?);
        }
        tokio::time::sleep(PAUSE).await;
    }
    Ok(out)
}

pub async fn send_json(ws: &mut Ws, v: &Value) -> Result<(), WsError> {
    ws.send(Message::text(v.to_string())).await?;
    Ok(())
}

/// The next JSON text message; `None` when closed; an error on timeout. Any JSON: the bench
/// publishes its own payloads straight to Pushpin. Protocol messages: [`next_message`].
pub async fn next_json(ws: &mut Ws, timeout: Duration) -> Result<Option<Value>, WsError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| WsError::Timeout)?;
        match msg {
            None | Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(Message::Text(t))) => return Ok(Some(serde_json::from_str(&t)?)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// The next protocol message, checked against `schemas/protocol/server-message.schema.json`
/// ([`WsError::Schema`] when it does not match); `None` when closed; an error on timeout.
pub async fn next_message(ws: &mut Ws, timeout: Duration) -> Result<Option<Value>, WsError> {
    let Some(message) = next_json(ws, timeout).await? else {
        return Ok(None);
    };
    let errors = super::schema::server_message_errors(&message);
    if !errors.is_empty() {
        return Err(WsError::Schema(format!(
            "a WebSocket message does not match schemas/protocol/server-message.schema.json:\n  {}\nmessage: {message}",
            errors.join("\n  ")
        )));
    }
    Ok(Some(message))
}

/// A WebSocket client connected through Pushpin; panics where a test should fail.
pub struct Client {
    pub ws: Ws,
}

impl Client {
    /// Connects and consumes the `ready` message.
    pub async fn connect(url: &str) -> Client {
        match connect_with(url, Retry::ONE).await {
            Ok(ws) => Client { ws },
            Err(e) => panic!("{e}"),
        }
    }

    pub async fn send(&mut self, v: Value) {
        send_json(&mut self.ws, &v).await.unwrap();
    }

    /// The next JSON text message, or None on timeout, close or a broken connection.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Value> {
        match next_message(&mut self.ws, timeout).await {
            Ok(v) => v,
            Err(WsError::Json(e)) => panic!("server sends JSON: {e}"),
            Err(WsError::Schema(e)) => panic!("{e}"),
            Err(_) => None,
        }
    }

    /// The next frame that is not a text message (pong, close), skipping text messages.
    pub async fn next_non_text(&mut self, timeout: Duration) -> Message {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(_)))) => continue,
                Ok(Some(Ok(m))) => return m,
                other => panic!("connection ended or timed out: {other:?}"),
            }
        }
    }

    /// Receives until a message of `kind` arrives; returns it and everything skipped.
    pub async fn recv_type(&mut self, kind: &str, timeout: Duration) -> (Value, Vec<Value>) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Some(v) if v["type"] == kind => return (v, skipped),
                Some(v) => skipped.push(v),
                None => panic!("no {kind} message within {timeout:?}; got {skipped:?}"),
            }
        }
    }

    /// Sends a request and returns the first reply that is not a channel event (items or a
    /// `status`, which a channel's poller publishes whenever its state changes).
    pub async fn request(&mut self, v: Value) -> Value {
        self.send(v).await;
        loop {
            let m = self.recv(Duration::from_secs(10)).await.expect("a reply");
            if !matches!(
                m["type"].as_str(),
                Some("snapshot" | "new" | "updated" | "removed" | "status")
            ) {
                return m;
            }
        }
    }

    pub async fn subscribe(&mut self, channel: &str, params: Value) -> Value {
        let message = json!({"action": "subscribe", "channel": channel, "params": params});
        super::schema::check_client_message(&message);
        let reply = self.request(message).await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        reply
    }
}
