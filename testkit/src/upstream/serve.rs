//! The fake upstream's HTTP/1.1 exchanges: read each head, record it, answer (throttled,
//! failing, fixed or generated body, optionally delayed, with an ETag and 304 when asked).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Options, UpstreamState};

/// What to answer one request with, decided under the state lock.
enum Answer {
    /// 429 with `Retry-After: seconds`.
    Throttled(u64),
    Body {
        status: &'static str,
        body: String,
    },
}

/// Answers the requests of one connection: one, or (keep-alive) until the client closes it.
pub(super) async fn serve_connection(
    mut sock: TcpStream,
    state: Arc<Mutex<UpstreamState>>,
    options: Options,
) {
    let mut buf = Vec::new();
    while let Some(head) = read_request(&mut sock, &mut buf).await {
        let client_closes = head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("connection: close"));
        let keep_open = options.keep_alive && !client_closes;
        if !answer(&mut sock, &head, &state, options, keep_open).await || !keep_open {
            break;
        }
    }
    let _ = sock.shutdown().await;
}

/// Answers one request; false when the connection broke.
async fn answer(
    sock: &mut TcpStream,
    head: &str,
    state: &Arc<Mutex<UpstreamState>>,
    options: Options,
    keep_open: bool,
) -> bool {
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let answer = decide(head, &path, state);
    let delay = {
        let s = state.lock().expect("upstream lock");
        s.delays
            .iter()
            .find(|(p, _)| path.starts_with(p.as_str()))
            .map(|(_, d)| *d)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let response = match answer {
        Answer::Throttled(seconds) => format!(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {seconds}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        Answer::Body { status, body } if options.etags => with_etag(head, status, body, state),
        Answer::Body { status, body } => format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    };
    let response = match keep_open {
        true => response.replacen("Connection: close", "Connection: keep-alive", 1),
        false => response,
    };
    sock.write_all(response.as_bytes()).await.is_ok()
}

/// Reads the next request's head, and skips its body (`Content-Length`); `buf` keeps what was
/// read beyond it. `None` at the end of the connection.
async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let body_len = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < end + body_len {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf.drain(..end + body_len);
    Some(head)
}

/// Records the request and decides the answer.
fn decide(head: &str, path: &str, state: &Mutex<UpstreamState>) -> Answer {
    let authorization = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_string())
    });
    let mut s = state.lock().expect("upstream lock");
    s.authorizations.extend(authorization);
    s.requests
        .entry(path.to_string())
        .or_default()
        .push(Instant::now());
    let generation = s.generation as usize;
    while s.stamps.len() <= generation {
        s.stamps.push(now_us());
    }
    let throttled = s
        .throttled
        .iter_mut()
        .find(|(p, (left, _))| path.starts_with(p.as_str()) && *left > 0)
        .map(|(_, limit)| {
            limit.0 -= 1;
            limit.1
        });
    if let Some(seconds) = throttled {
        return Answer::Throttled(seconds);
    }
    if s.failing.iter().any(|p| path.starts_with(p.as_str())) {
        return Answer::Body {
            status: "500 Internal Server Error",
            body: format!("error for {path}"),
        };
    }
    if let Some((_, text)) = s.raw.iter().find(|(p, _)| path.starts_with(p.as_str())) {
        return Answer::Body {
            status: "200 OK",
            body: text.clone(),
        };
    }
    let fixed = s.bodies.iter().find(|(p, _)| path.starts_with(p.as_str()));
    let (status, body) = match fixed {
        Some((_, body)) => ("200 OK", body.to_string()),
        None => respond(path, &s),
    };
    Answer::Body { status, body }
}

/// Like a static file server: an ETag per content, and 304 when the client has it.
fn with_etag(
    head: &str,
    mut status: &'static str,
    mut body: String,
    state: &Mutex<UpstreamState>,
) -> String {
    let etag = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        format!("\"{:x}\"", h.finish())
    };
    let if_none_match = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("if-none-match: ")
                .or_else(|| l.strip_prefix("If-None-Match: "))
        })
        .map(str::trim);
    if let Some(tag) = if_none_match {
        let mut s = state.lock().expect("upstream lock");
        s.conditional += 1;
        if status == "200 OK" && tag == etag {
            s.not_modified += 1;
            status = "304 Not Modified";
            body = String::new();
        }
    }
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The generated body of `path` at the current generation.
fn respond(path: &str, s: &UpstreamState) -> (&'static str, String) {
    let generation = s.generation;
    if let Some(rest) = path.strip_prefix("/earthquakes/feed/v1.0/summary/") {
        let feed = rest.trim_end_matches(".geojson");
        // One quake per generation so far: every bump adds exactly one new item.
        let features: Vec<Value> = (0..=generation)
            .map(|g| json!({"type": "Feature", "id": format!("{feed}-g{g}"), "properties": {"mag": 2.5, "place": format!("gen {g}")}}))
            .collect();
        return (
            "200 OK",
            json!({"type": "FeatureCollection", "features": features}).to_string(),
        );
    }
    if let Some(feed) = path
        .strip_prefix("/feed/")
        .and_then(|p| p.strip_suffix(".json"))
    {
        let items: Vec<Value> = (0..=generation as usize)
            .map(|g| json!({"id": format!("{feed}-g{g}"), "stamp_us": s.stamps[g], "mag": 2.5, "place": format!("generation {g}")}))
            .collect();
        return ("200 OK", json!(items).to_string());
    }
    if path.starts_with("/v1/forecast") {
        // The single current-weather item changes with every generation.
        let body = json!({
            "current": {"time": "2026-11-22T10:00", "temperature_2m": generation as f64, "wind_speed_10m": 3.0},
            "current_units": {"temperature_2m": "°C"}
        });
        return ("200 OK", body.to_string());
    }
    if path.starts_with("/budgeted/") {
        return ("200 OK", json!([{"id": 1}]).to_string());
    }
    ("404 Not Found", json!({"error": "not found"}).to_string())
}

/// Wall clock, µs since the epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
