//! WebSocket clients through Pushpin: opened gradually (Pushpin 1.36 answers 502 to large
//! bursts of simultaneous opens), each consuming the `ready` message first.

use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens (and subscribes) in batches of this many at once, each batch awaited before the next:
/// Pushpin 1.36 fails WOH requests, and resets their connections, once about 100 are queued…
pub const BATCH: usize = 50;
/// …with this pause between batches (about 1,000 opens a second).
pub const PAUSE: Duration = Duration::from_millis(50);

/// One client, retried a few times, after its `ready` message.
pub async fn connect(url: &str) -> anyhow::Result<Ws> {
    let mut last = None;
    for attempt in 0..8 {
        match tokio_tungstenite::connect_async(url).await {
            Ok((mut ws, _)) => {
                let ready = next_json(&mut ws, Duration::from_secs(10))
                    .await?
                    .context("closed before ready")?;
                anyhow::ensure!(ready["type"] == "ready", "expected ready, got {ready}");
                return Ok(ws);
            }
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
            }
        }
    }
    anyhow::bail!("cannot connect to {url}: {last:?}")
}

/// `n` clients, opened gradually.
pub async fn connect_many(url: &str, n: usize) -> anyhow::Result<Vec<Ws>> {
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

pub async fn send_json(ws: &mut Ws, v: &Value) -> anyhow::Result<()> {
    ws.send(Message::text(v.to_string())).await?;
    Ok(())
}

/// The next JSON text message; `None` when closed; an error on timeout.
pub async fn next_json(ws: &mut Ws, timeout: Duration) -> anyhow::Result<Option<Value>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("timed out waiting for a message")?;
        match msg {
            None | Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(Message::Text(t))) => return Ok(Some(serde_json::from_str(&t)?)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}
