//! The fake upstream API: `GET /feed/{n}.json` answers a JSON array of items for channel `n`.
//!
//! Every [`Upstream::bump`] adds one item to every feed. Each item carries `stamp_us`: the wall
//! clock (µs) when the upstream first served it, so a client can tell how long the change took
//! from being fetched to reaching it. Request times are kept per path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::measure::now_us;

#[derive(Default)]
struct State {
    generation: u64,
    /// When each generation was first served (µs since the epoch).
    stamps: Vec<u64>,
    requests: HashMap<String, Vec<Instant>>,
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Upstream {
    pub async fn start() -> anyhow::Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, st.clone()));
            }
        });
        Ok(Upstream { addr, state })
    }

    /// One more item in every feed, from the next request on; returns its generation.
    pub fn bump(&self) -> u64 {
        let mut s = self.state.lock().expect("upstream lock");
        s.generation += 1;
        s.generation
    }

    /// Request times of one path, e.g. `/feed/0.json`.
    pub fn requests(&self, path: &str) -> Vec<Instant> {
        let s = self.state.lock().expect("upstream lock");
        s.requests.get(path).cloned().unwrap_or_default()
    }

    /// Request times of every path.
    pub fn all_requests(&self) -> HashMap<String, Vec<Instant>> {
        self.state.lock().expect("upstream lock").requests.clone()
    }
}

async fn serve(mut sock: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let body = {
        let mut s = state.lock().expect("upstream lock");
        s.requests
            .entry(path.clone())
            .or_default()
            .push(Instant::now());
        let generation = s.generation as usize;
        while s.stamps.len() <= generation {
            s.stamps.push(now_us());
        }
        path.strip_prefix("/feed/")
            .and_then(|p| p.strip_suffix(".json"))
            .map(|feed| {
                json!((0..=generation)
                    .map(|g| json!({"id": format!("{feed}-g{g}"), "stamp_us": s.stamps[g], "mag": 2.5, "place": format!("generation {g}")}))
                    .collect::<Vec<_>>())
                .to_string()
            })
    };
    let (status, body) = match body {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", "[]".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(response.as_bytes()).await;
    let _ = sock.shutdown().await;
}
