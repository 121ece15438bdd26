//! Issue 19 through a real Pushpin: the push channels every `push_*` module publishes to, the
//! subscribers that mirror them (WebSocket and SSE alike, checking seq order and patches), and
//! the items-mode flow: 100 subscribers see `new`, `updated` (RFC 6902) and `removed` exactly
//! once and in order, a late subscriber's snapshot is the items API's page, resumes replay
//! exactly what was missed.

use std::collections::BTreeMap;
use std::time::Duration;

use restream::config::Settings;
use restream_testkit::clients::ws::{self, Ws};
pub(crate) use restream_testkit::push::{
    events_channel, items_channel, keys_json, now, publish_token, subscribe_token, Answer, Publish,
};
use serde_json::{json, Value};

use crate::support::*;

pub(crate) const SECRET: &str = "e2e-push-jwt-secret-0123456789abcdef";
/// Items mode, keyed by `id`, one required param `site`.
pub(crate) const THINGS: &str = "e2e-things";
/// Events mode, the last [`KEEP`] events in its snapshot, one required param `site`.
pub(crate) const FEED: &str = "e2e-feed";
pub(crate) const KEEP: usize = 3;
/// Items mode, no params: another channel for the 403s.
pub(crate) const OTHER: &str = "e2e-other";
pub(crate) const THINGS_KEY: &str = "pk-things-6f1c0e9a2b7d4e11";
pub(crate) const FEED_KEY: &str = "pk-feed-0b8e5c2f9a13d6e7";
pub(crate) const OTHER_KEY: &str = "pk-other-93d7a1c4e5f60b28";

/// A stack serving the three push channels, with their producer keys and the JWT secret;
/// `configure` changes the settings last.
pub(crate) async fn push_stack(configure: Option<fn(&mut Settings)>) -> Stack {
    Stack::start_with(push_options(configure)).await
}

pub(crate) fn push_options(configure: Option<fn(&mut Settings)>) -> StackOptions {
    StackOptions {
        keys: Some(keys_json(
            SECRET,
            &[(THINGS, THINGS_KEY), (FEED, FEED_KEY), (OTHER, OTHER_KEY)],
        )),
        extra_channels: vec![
            ("e2e-things.toml", items_channel(THINGS, "id", &["site"])),
            ("e2e-feed.toml", events_channel(FEED, KEEP, &["site"])),
            ("e2e-other.toml", items_channel(OTHER, "id", &[])),
        ],
        configure,
        ..StackOptions::default()
    }
}

/// A subscriber over either transport, yielding the channel's messages (`snapshot`, `new`,
/// `updated`, `removed`) as the WebSocket protocol spells them.
pub(crate) enum Sub {
    Ws(Ws),
    Sse(SseClient),
}

impl Sub {
    /// Subscribes over WebSocket (`since` to resume); the `subscribed` reply is skipped later.
    pub(crate) async fn ws(stack: &Stack, channel: &str, params: Value, since: Option<u64>) -> Sub {
        let mut ws = ws::connect(&stack.ws_url).await.expect("a WebSocket");
        Sub::subscribe(&mut ws, channel, params, since).await;
        Sub::Ws(ws)
    }

    async fn subscribe(ws: &mut Ws, channel: &str, params: Value, since: Option<u64>) {
        let mut m = json!({"action": "subscribe", "channel": channel, "params": params});
        if let Some(since) = since {
            m["since"] = json!(since);
        }
        ws::send_json(ws, &m).await.expect("subscribe sent");
    }

    /// Opens `/channels/{channel}/events?{query}` (with `Last-Event-ID` to resume).
    pub(crate) async fn sse(
        stack: &Stack,
        channel: &str,
        query: &str,
        last_event_id: Option<&str>,
    ) -> Sub {
        let path = format!("/channels/{channel}/events?{query}");
        Sub::Sse(SseClient::connect(&stack.http_url, &path, last_event_id).await)
    }

    /// The next channel message, or None when nothing comes within `timeout`. SSE events
    /// must be named by their type and carry their seq as the event id.
    pub(crate) async fn next(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = match self {
                Sub::Ws(w) => match ws::next_message(w, left).await {
                    Ok(Some(m)) => m,
                    Err(ws::WsError::Schema(e)) => panic!("{e}"),
                    Ok(None) | Err(_) => return None,
                },
                Sub::Sse(s) => {
                    let e = s.next(left).await?;
                    assert_eq!(e.data["type"], e.event.as_str(), "SSE event name: {e:?}");
                    assert_eq!(
                        e.id,
                        e.data["seq"].as_u64().map(|s| s.to_string()),
                        "SSE id is the seq: {e:?}"
                    );
                    e.data
                }
            };
            if matches!(
                m["type"].as_str(),
                Some("snapshot" | "new" | "updated" | "removed")
            ) {
                return Some(m);
            }
            assert!(
                matches!(m["type"].as_str(), Some("subscribed" | "status")),
                "unexpected message {m}"
            );
        }
    }
}

/// One subscriber's copy of a channel, kept as the protocol's client rule says, strictly:
/// the first message is a snapshot, then every event has the next seq exactly (or is one a
/// resync snapshot already covered, once).
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    pub seq: Option<u64>,
    pub items: BTreeMap<String, Value>,
    /// `(type, seq, item id)` of every event applied.
    pub events: Vec<(String, u64, String)>,
    pub snapshots: usize,
    /// Every message applied, in order.
    pub log: Vec<Value>,
    /// Seqs a resync snapshot jumped over: their events may still arrive once (published
    /// before the snapshot, delivered after it) and are dropped by seq, as clients do; a
    /// second copy is a duplicate like any other.
    pub covered: std::collections::BTreeSet<u64>,
}

pub(crate) fn item_id(item: &Value) -> String {
    match &item["id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Mirror {
    /// Applies one channel message; an error says which rule it broke.
    pub(crate) fn apply(&mut self, m: &Value) -> Result<(), String> {
        self.log.push(m.clone());
        let kind = m["type"].as_str().unwrap_or_default();
        let seq = m["seq"].as_u64().ok_or(format!("no seq in {m}"))?;
        if kind == "snapshot" {
            self.snapshots += 1;
            if self.seq.is_none_or(|at| seq > at) || m["reset"] == true {
                if let Some(at) = self.seq.filter(|at| seq > *at) {
                    self.covered.extend(at + 1..=seq);
                }
                self.seq = Some(seq);
                let items = m["items"].as_array().ok_or(format!("no items: {m}"))?;
                self.items = items.iter().map(|i| (item_id(i), i.clone())).collect();
            }
            return Ok(());
        }
        let at = self
            .seq
            .ok_or(format!("an event before any snapshot: {m}"))?;
        if self.covered.remove(&seq) {
            return Ok(());
        }
        if seq != at + 1 {
            return Err(format!("seq {seq} after {at}: {m}"));
        }
        let item = &m["item"];
        let id = item_id(item);
        match kind {
            "new" => {
                if self.items.insert(id.clone(), item.clone()).is_some() {
                    return Err(format!("new for a known item: {m}"));
                }
            }
            "updated" => {
                let stored = self
                    .items
                    .get_mut(&id)
                    .ok_or(format!("updated for an unknown item: {m}"))?;
                let patch: json_patch::Patch = serde_json::from_value(m["patch"].clone())
                    .map_err(|e| format!("not an RFC 6902 patch ({e}): {m}"))?;
                json_patch::patch(stored, &patch).map_err(|e| format!("patch fails ({e}): {m}"))?;
                if stored != item {
                    return Err(format!("patched {stored} differs from the item: {m}"));
                }
            }
            "removed" => {
                let stored = self
                    .items
                    .remove(&id)
                    .ok_or(format!("removed for an unknown item: {m}"))?;
                if &stored != item {
                    return Err(format!("removed item {item} is not the stored {stored}"));
                }
            }
            other => return Err(format!("unknown type {other}: {m}")),
        }
        self.seq = Some(seq);
        self.events.push((kind.to_string(), seq, id));
        Ok(())
    }

    /// Reads `sub` until this mirror is at `seq` (panicking on a broken rule or a timeout).
    pub(crate) async fn follow(&mut self, sub: &mut Sub, seq: u64, within: Duration, who: &str) {
        let deadline = tokio::time::Instant::now() + within;
        while self.seq.is_none_or(|at| at < seq) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(m) = sub.next(left).await else {
                panic!("{who}: not at seq {seq} within {within:?}: {self:?}");
            };
            if let Err(e) = self.apply(&m) {
                panic!("{who}: {e}\nseen: {:?}", self.log);
            }
        }
    }
}

/// `GET /channels/{channel}/items?{query}` through Pushpin: the seq and the items.
pub(crate) async fn items_page(stack: &Stack, channel: &str, query: &str) -> (u64, Vec<Value>) {
    let url = format!(
        "{}/channels/{channel}/items?{query}&limit=1000",
        stack.http_url
    );
    let (status, body) = get_json(&url).await;
    assert_eq!(status, 200, "{url}: {body}");
    let items = body["items"].as_array().cloned().unwrap_or_default();
    (body["seq"].as_u64().unwrap_or(0), items)
}

/// Publishes with the producer key of `THINGS`.
pub(crate) async fn publish_things(stack: &Stack, request: Publish) -> Answer {
    request.bearer(THINGS_KEY).send(&stack.http_url).await
}

/// The counts of a receipt as `(new, updated, removed, unchanged)`.
pub(crate) fn counts(receipt: &Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| receipt[k].as_u64().unwrap_or(u64::MAX);
    (n("new"), n("updated"), n("removed"), n("unchanged"))
}

const SUBSCRIBERS: usize = 50; // of each transport

fn thing(id: &str, v: u64) -> Value {
    json!({"id": id, "v": v, "tags": ["t"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_subscribers_see_published_items_change_in_order() {
    let stack = push_stack(None).await;
    let q = "site=fan";
    let params = json!({"site": "fan"});

    // 50 WebSocket and 50 SSE subscribers, opened in batches; each gets the empty snapshot
    // the first subscribe makes the writer commit (seq 1).
    let mut subs = Vec::new();
    for ws in ws::connect_many(&stack.ws_url, SUBSCRIBERS).await.unwrap() {
        let mut ws = ws;
        Sub::subscribe(&mut ws, THINGS, params.clone(), None).await;
        subs.push(Sub::Ws(ws));
    }
    for i in 0..SUBSCRIBERS {
        subs.push(Sub::sse(&stack, THINGS, q, None).await);
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut mirrors: Vec<Mirror> = (0..subs.len()).map(|_| Mirror::default()).collect();
    for (i, (sub, mirror)) in subs.iter_mut().zip(&mut mirrors).enumerate() {
        mirror
            .follow(sub, 1, Duration::from_secs(20), &format!("subscriber {i}"))
            .await;
        assert!(mirror.items.is_empty(), "{mirror:?}");
    }

    // One object, an array, NDJSON (a new item and an update).
    let one = publish_things(&stack, Publish::post(THINGS, q).json(&thing("a", 1))).await;
    assert_eq!(one.receipt()["channel"], "e2e-things?site=fan");
    assert_eq!((one.seq(), counts(one.receipt())), (2, (1, 0, 0, 0)));
    assert_eq!(one.receipt()["replayed"], false);
    let array = Publish::post(THINGS, q).json(&json!([thing("b", 1), thing("c", 1)]));
    let array = publish_things(&stack, array).await;
    assert_eq!((array.seq(), counts(array.receipt())), (4, (2, 0, 0, 0)));
    let a2 = json!({"id": "a", "v": 2, "tags": ["t", "u"], "extra": {"k": true}});
    let nd = Publish::post(THINGS, q).ndjson(&[thing("d", 1), a2.clone()]);
    let nd = publish_things(&stack, nd).await;
    assert_eq!((nd.seq(), counts(nd.receipt())), (6, (1, 1, 0, 0)));
    // Unchanged: nothing written, nothing sent, seq stays.
    let same = publish_things(&stack, Publish::post(THINGS, q).json(&thing("b", 1))).await;
    assert_eq!((same.seq(), counts(same.receipt())), (6, (0, 0, 0, 1)));
    // DELETE one; PUT a set that keeps a (unchanged), adds e and so removes b and d.
    let del = publish_things(&stack, Publish::delete(THINGS, "c", q)).await;
    assert_eq!((del.seq(), counts(del.receipt())), (7, (0, 0, 1, 0)));
    let put = Publish::put(THINGS, q).json(&json!([a2.clone(), thing("e", 1)]));
    let put = publish_things(&stack, put).await;
    assert_eq!((put.seq(), counts(put.receipt())), (10, (1, 0, 2, 1)));

    let expected: BTreeMap<String, Value> = [("a", a2.clone()), ("e", thing("e", 1))]
        .map(|(k, v)| (k.to_string(), v))
        .into();
    let (page_seq, page) = items_page(&stack, THINGS, q).await;
    assert_eq!(page_seq, 10);
    assert_eq!(page, expected.values().cloned().collect::<Vec<_>>());
    let reads =
        subs.iter_mut()
            .zip(&mut mirrors)
            .enumerate()
            .map(|(i, (sub, mirror))| async move {
                let who = format!("subscriber {i}");
                mirror.follow(sub, 10, Duration::from_secs(20), &who).await;
                let extra = sub.next(Duration::from_millis(300)).await;
                assert_eq!(extra, None, "{who}: nothing after seq 10");
            });
    futures_util::future::join_all(reads).await;
    for (i, m) in mirrors.iter().enumerate() {
        assert_eq!(m.items, expected, "subscriber {i}");
        let head: Vec<_> = m.events[..6]
            .iter()
            .map(|(k, s, id)| (k.as_str(), *s, id.as_str()))
            .collect();
        assert_eq!(
            head,
            [
                ("new", 2, "a"),
                ("new", 3, "b"),
                ("new", 4, "c"),
                ("new", 5, "d"),
                ("updated", 6, "a"),
                ("removed", 7, "c")
            ],
            "subscriber {i}"
        );
        let mut put: Vec<_> = m.events[6..]
            .iter()
            .map(|(k, _, id)| (k.as_str(), id.as_str()))
            .collect();
        put.sort();
        assert_eq!(put, [("new", "e"), ("removed", "b"), ("removed", "d")]);
    }
    drop(subs);

    // A late subscriber's snapshot is the items API's page, over both transports.
    let mut late = Sub::ws(&stack, THINGS, params.clone(), None).await;
    let snap = late
        .next(Duration::from_secs(10))
        .await
        .expect("a snapshot");
    assert_eq!(
        (snap["type"].as_str(), snap["seq"].as_u64()),
        (Some("snapshot"), Some(10))
    );
    assert_eq!(snap["items"], json!(page));
    let mut late_sse = Sub::sse(&stack, THINGS, q, None).await;
    let snap_sse = late_sse
        .next(Duration::from_secs(10))
        .await
        .expect("a snapshot");
    assert_eq!(snap_sse, snap);

    // Resume: SSE with Last-Event-ID 5 and WebSocket with since 7 get exactly what followed.
    let mut sse = Sub::sse(&stack, THINGS, q, Some("5")).await;
    let mut ws = Sub::ws(&stack, THINGS, params.clone(), Some(7)).await;
    for (sub, after) in [(&mut sse, 5), (&mut ws, 7)] {
        let mut got = Vec::new();
        while let Some(m) = sub.next(Duration::from_millis(1500)).await {
            got.push(m);
        }
        let seqs: Vec<_> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            seqs,
            (after + 1..=10).collect::<Vec<_>>(),
            "resume after {after}: {got:?}"
        );
        assert!(got.iter().all(|m| m["type"] != "snapshot"), "{got:?}");
        // The replayed events are the ones the live subscribers saw.
        let live: Vec<Value> = mirrors[0]
            .log
            .iter()
            .filter(|m| m["type"] != "snapshot" && m["seq"].as_u64() > Some(after))
            .cloned()
            .collect();
        assert_eq!(got, live);
    }
}
