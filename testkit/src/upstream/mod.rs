//! The fake upstream API on loopback, read by the real fetchers in `functions/` (USGS,
//! Open-Meteo, NYT base URLs point here) and by declarative channels: `GET /feed/{n}.json`
//! answers a JSON array of items for feed `n` (the benchmark's channel).
//!
//! Every [`Upstream::bump`] makes the data change: one more quake in every USGS feed and every
//! `/feed/`, a new temperature in the forecast. Each `/feed/` item carries `stamp_us`, the wall
//! clock (µs) when the upstream first served its generation, so a client can tell how long a
//! change took to reach it. Tests can also fix bodies, fail, throttle or delay paths, and read
//! what was asked (request times, `Authorization` headers, conditional requests).

mod serve;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::TcpListener;

/// How the upstream answers.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Like a static file server: an ETag per content, and 304 when the client has it.
    pub etags: bool,
    /// Keeps each connection open for the client's next request (HTTP/1.1 keep-alive), as most
    /// APIs do; otherwise every answer closes its connection.
    pub keep_alive: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            etags: true,
            keep_alive: false,
        }
    }
}

/// What the fake upstream serves and what it was asked.
#[derive(Default)]
pub struct UpstreamState {
    /// Bumped by tests to make upstream data change.
    pub generation: u64,
    /// When each generation was first served (µs since the epoch).
    pub stamps: Vec<u64>,
    /// Request path (with query) → arrival times.
    pub requests: HashMap<String, Vec<Instant>>,
    /// Path prefix → exact JSON body to serve instead of the generated one.
    pub bodies: HashMap<String, Value>,
    /// Path prefix → exact text to serve (a feed's XML, Google Finance's `// [...]`), before
    /// `bodies`.
    pub raw: HashMap<String, String>,
    /// Path prefixes answered with 500 and a body echoing the request (as some APIs do).
    pub failing: Vec<String>,
    /// Path prefix → (answers left, seconds): answered 429 with `Retry-After: seconds`.
    pub throttled: HashMap<String, (u32, u64)>,
    /// `Authorization` header values received, in order.
    pub authorizations: Vec<String>,
    /// Requests that carried `If-None-Match`, and how many of those got a 304.
    pub conditional: usize,
    pub not_modified: usize,
    /// Path prefix → how long to hold each answer.
    pub delays: HashMap<String, Duration>,
}

/// A fake USGS + Open-Meteo + `/feed/` server on loopback.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<UpstreamState>>,
}

impl Upstream {
    /// With ETags; panics if loopback cannot be bound.
    pub async fn start() -> Upstream {
        Upstream::start_with(Options::default())
            .await
            .expect("bind the fake upstream on loopback")
    }

    pub async fn start_with(options: Options) -> std::io::Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(UpstreamState::default()));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve::serve_connection(sock, st.clone(), options));
            }
        });
        Ok(Upstream { addr, state })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, UpstreamState> {
        self.state.lock().expect("upstream lock")
    }

    /// Serves `body` for every path starting with `prefix` from now on.
    pub fn set_body(&self, prefix: &str, body: Value) {
        self.state().bodies.insert(prefix.to_string(), body);
    }

    /// Serves the text `body` as is for every path starting with `prefix` (a proxied request's
    /// path is its whole URL, `http://host/path`).
    pub fn set_raw_body(&self, prefix: &str, body: &str) {
        self.state()
            .raw
            .insert(prefix.to_string(), body.to_string());
    }

    /// Answers every path starting with `prefix` with a 500 that echoes the request path.
    pub fn fail(&self, prefix: &str) {
        self.state().failing.push(prefix.to_string());
    }

    /// Answers the next `times` requests under `prefix` with 429 and `Retry-After: seconds`.
    pub fn throttle(&self, prefix: &str, times: u32, seconds: u64) {
        self.state()
            .throttled
            .insert(prefix.to_string(), (times, seconds));
    }

    /// Holds every answer under `prefix` for `delay` (a slow upstream).
    pub fn delay(&self, prefix: &str, delay: Duration) {
        self.state().delays.insert(prefix.to_string(), delay);
    }

    /// Serves a USGS feed with exactly these features.
    pub fn set_quakes(&self, feed: &str, features: Vec<Value>) {
        self.set_body(
            &format!("/earthquakes/feed/v1.0/summary/{feed}.geojson"),
            json!({"type": "FeatureCollection", "features": features}),
        );
    }

    /// New data from the next request on; returns its generation.
    pub fn bump(&self) -> u64 {
        let mut s = self.state();
        s.generation += 1;
        s.generation
    }

    /// Request times for every path containing `needle`.
    pub fn requests(&self, needle: &str) -> Vec<Instant> {
        let s = self.state();
        let mut v: Vec<_> = s
            .requests
            .iter()
            .filter(|(p, _)| p.contains(needle))
            .flat_map(|(_, t)| t.iter().copied())
            .collect();
        v.sort();
        v
    }

    /// Request times for every path containing `needle`, from `since` on.
    pub fn requests_since(&self, needle: &str, since: Instant) -> Vec<Instant> {
        let mut v = self.requests(needle);
        v.retain(|t| *t >= since);
        v
    }

    /// Request times of every path.
    pub fn all_requests(&self) -> HashMap<String, Vec<Instant>> {
        self.state().requests.clone()
    }

    /// (requests with If-None-Match, of which answered 304).
    pub fn conditional(&self) -> (usize, usize) {
        let s = self.state();
        (s.conditional, s.not_modified)
    }

    pub fn authorizations(&self) -> Vec<String> {
        self.state().authorizations.clone()
    }

    pub fn paths(&self) -> Vec<String> {
        self.state().requests.keys().cloned().collect()
    }
}
