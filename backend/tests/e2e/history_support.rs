//! What the issue 20 history tests share: GETs of `/channels/{name}/history` and `/history`
//! through Pushpin (with a bearer token when asked), a page read whole or followed by its
//! cursor, the order checks, and a brute-force merge of channels' own histories.

use std::time::Duration;

use restream::channel::encode_component;
use restream::history::parse_rfc3339;
use serde_json::Value;

use crate::push::Publish;

/// One answer of a history route: status, JSON body, `Retry-After`.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<String>,
}

impl Reply {
    /// The error code of a refusal (`""` when there is none).
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// GET `base` + `path`, `Authorization: Bearer` when a token is given.
pub(crate) async fn get(base: &str, path: &str, bearer: Option<&str>) -> Reply {
    let url = format!("{base}{path}");
    let mut request = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(20));
    if let Some(token) = bearer {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        body,
        retry_after,
    }
}

/// `/channels/{channel}/history?{query}` (`query` URL-encoded already; "" for none).
pub(crate) fn channel_path(channel: &str, query: &str) -> String {
    format!("/channels/{channel}/history?{query}")
}

/// `/history?channel=<id>&…&{query}`, each id URL-encoded.
pub(crate) fn coalesced_path(ids: &[&str], query: &str) -> String {
    let mut parts: Vec<String> = ids
        .iter()
        .map(|id| format!("channel={}", encode_component(id)))
        .collect();
    if !query.is_empty() {
        parts.push(query.to_string());
    }
    format!("/history?{}", parts.join("&"))
}

/// `path` with `cursor=<cursor>` added.
pub(crate) fn with_cursor(path: &str, cursor: &str) -> String {
    let sep = if path.ends_with('?') { "" } else { "&" };
    format!("{path}{sep}cursor={}", encode_component(cursor))
}

/// A 200 page of either route.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub body: Value,
    pub events: Vec<Value>,
    pub cursor: String,
    pub more: bool,
}

/// GETs a page and checks its shape: 200, `events`, a non-empty `cursor`, `more`.
pub(crate) async fn page(base: &str, path: &str, bearer: Option<&str>) -> Page {
    let reply = get(base, path, bearer).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    let body = reply.body;
    let events = body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {body}"))
        .clone();
    let cursor = body["cursor"]
        .as_str()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| panic!("no cursor in {body}"))
        .to_string();
    let more = body["more"]
        .as_bool()
        .unwrap_or_else(|| panic!("no more in {body}"));
    Page {
        body,
        events,
        cursor,
        more,
    }
}

/// Follows the cursor from `path` (which holds no cursor) until `more` is false: every
/// event, and the last cursor. An empty page must give back the cursor it was sent.
pub(crate) async fn read_all(base: &str, path: &str, bearer: Option<&str>) -> (Vec<Value>, String) {
    let mut events = Vec::new();
    let mut p = page(base, path, bearer).await;
    loop {
        events.extend(p.events.iter().cloned());
        if !p.more {
            return (events, p.cursor);
        }
        assert!(!p.events.is_empty(), "more with an empty page: {}", p.body);
        let next = page(base, &with_cursor(path, &p.cursor), bearer).await;
        if next.events.is_empty() {
            assert_eq!(next.cursor, p.cursor, "an empty page keeps the cursor");
        }
        p = next;
    }
}

/// The unix ms of an event's `"time"` (RFC 3339 UTC with ms, first key).
pub(crate) fn time_ms(event: &Value) -> u64 {
    let text = event["time"]
        .as_str()
        .unwrap_or_else(|| panic!("no time in {event}"));
    assert!(
        text.len() == 24 && text.ends_with('Z'),
        "RFC 3339 UTC with ms: {text}"
    );
    parse_rfc3339(text).unwrap_or_else(|| panic!("not RFC 3339: {text}"))
}

pub(crate) fn seq(event: &Value) -> u64 {
    event["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq in {event}"))
}

pub(crate) fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(seq).collect()
}

/// The message live subscribers got: the event without its `"time"`.
pub(crate) fn live(event: &Value) -> Value {
    let mut m = event.clone();
    m.as_object_mut().expect("an object").remove("time");
    m
}

/// One channel's page: strictly increasing seqs, times never going back.
pub(crate) fn check_channel_order(events: &[Value]) {
    for w in events.windows(2) {
        assert!(
            seq(&w[0]) < seq(&w[1]) && time_ms(&w[0]) <= time_ms(&w[1]),
            "out of order: {} then {}",
            w[0],
            w[1]
        );
    }
}

/// Events of several channels, each tagged with its canonical id, as a coalesced page
/// orders them: by (time, channel id, seq).
pub(crate) fn merge(channels: &[(String, Vec<Value>)]) -> Vec<Value> {
    let mut all: Vec<(u64, &str, u64, &Value)> = channels
        .iter()
        .flat_map(|(id, events)| {
            events
                .iter()
                .map(move |e| (time_ms(e), id.as_str(), seq(e), e))
        })
        .collect();
    all.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    all.into_iter().map(|(.., e)| e.clone()).collect()
}

/// The canonical id of a history event from its `channel` and `params` (what `merge` keys
/// by), as the routes spell it: `name?k=v&…`, keys sorted, components percent-encoded.
pub(crate) fn event_channel_id(event: &Value) -> String {
    let name = event["channel"].as_str().expect("a channel name");
    let params = event["params"].as_object().cloned().unwrap_or_default();
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (encode_component(k), encode_component(&v))
        })
        .collect();
    pairs.sort();
    match pairs.is_empty() {
        true => name.to_string(),
        false => {
            let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{name}?{}", q.join("&"))
        }
    }
}

/// Publishes `values` (one batch) to an events channel; the receipt's seq.
pub(crate) async fn publish(
    base: &str,
    channel: &str,
    query: &str,
    key: &str,
    values: &[Value],
) -> u64 {
    Publish::post(channel, query)
        .json(&Value::Array(values.to_vec()))
        .bearer(key)
        .send(base)
        .await
        .seq()
}
