//! Transcripts of WOH requests: what a connection sends and what it gets back.

use super::*;
use crate::fetcher::{FetchError, FetchOutcome, FetchRequest, Fetcher, FetcherEntry, Metadata};
use async_trait::async_trait;
use serde_json::json;
use std::sync::Arc;

struct Unused;

#[async_trait]
impl Fetcher for Unused {
    fn label(&self) -> &str {
        "unused"
    }
    async fn metadata(&self) -> Result<Value, FetchError> {
        unreachable!("connection handling never calls fetchers")
    }
    async fn fetch(&self, _: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        unreachable!("connection handling never calls fetchers")
    }
}

fn registry() -> Registry {
    let entry = |m: Value| FetcherEntry {
        metadata: Metadata::from_value(&m).unwrap(),
        fetcher: Arc::new(Unused),
    };
    Registry::from_entries([
        entry(json!({"name": "a", "id_field": "id"})),
        entry(json!({"name": "secret", "id_field": "id", "access": "token"})),
        entry(
            json!({"name": "w", "id_field": "id", "params": {"lat": {"required": true}, "u": {"default": "c"}}}),
        ),
    ])
}

fn texts(reply: &Reply) -> Vec<Value> {
    reply
        .events
        .iter()
        .map(|e| match e {
            Event::Text(t) => {
                let s = String::from_utf8(t.clone()).unwrap();
                match s.strip_prefix("c:") {
                    Some(c) => json!({"control": serde_json::from_str::<Value>(c).unwrap()}),
                    None => serde_json::from_str(&s).unwrap(),
                }
            }
            other => json!({"event": other.name()}),
        })
        .collect()
}

fn text(v: Value) -> Event {
    Event::text(v.to_string())
}

const LIMITS: Limits = Limits {
    max_subscriptions: 2,
};

fn context() -> Context<'static> {
    let auth: &'static crate::auth::Auth = Box::leak(Box::new(crate::auth::Auth::public()));
    with_auth(RequestAuth {
        auth,
        connection: crate::auth::Credential::Absent,
        grants: Grants::default(),
        now: 0,
    })
}

fn with_auth(auth: RequestAuth<'static>) -> Context<'static> {
    let registry: &'static Registry = Box::leak(Box::new(registry()));
    Context {
        registry,
        limits: &LIMITS,
        auth: Box::leak(Box::new(auth)),
    }
}

#[test]
fn open_is_answered_with_open_and_ready() {
    let r = handle(
        "cid",
        vec![Event::Open],
        Subscriptions::default(),
        &context(),
    );
    assert_eq!(
        texts(&r),
        vec![
            json!({"event": "OPEN"}),
            json!({"control": {"type": "subscribe", "channel": "_conn:cid"}}),
            json!({"type": "ready", "protocol": 1})
        ]
    );
    assert!(!r.subscriptions_changed);
}

#[test]
fn subscribe_emits_control_then_reply_and_updates_meta() {
    let r = handle(
        "cid",
        vec![text(
            json!({"action": "subscribe", "channel": "w", "params": {"lat": 5}, "ref": "x"}),
        )],
        Subscriptions::default(),
        &context(),
    );
    assert_eq!(
        texts(&r),
        vec![
            json!({"control": {"type": "subscribe", "channel": "w?lat=5&u=c"}}),
            json!({"type": "subscribed", "channel": "w", "params": {"lat": "5", "u": "c"}, "ref": "x"}),
        ]
    );
    assert!(r.subscriptions_changed);
    assert_eq!(r.subscriptions.to_meta(), "w?lat=5&u=c");
    assert_eq!(r.live_channels, vec!["w?lat=5&u=c"]);
}

#[test]
fn batched_events_are_all_handled_in_order() {
    let r = handle(
        "cid",
        vec![
            text(json!({"action": "subscribe", "channel": "a"})),
            Event::Ping(b"p".to_vec()),
            text(json!({"action": "subscribe", "channel": "a"})),
            text(json!({"action": "subscribe", "channel": "w", "params": {"lat": 1}})),
            text(json!({"action": "subscribe", "channel": "w", "params": {"lat": 2}})),
        ],
        Subscriptions::default(),
        &context(),
    );
    let kinds: Vec<_> = texts(&r)
        .iter()
        .map(|v| {
            v.get("type")
                .or(v.get("event"))
                .or(v.pointer("/control/type"))
                .unwrap()
                .clone()
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            json!("subscribe"),
            json!("subscribed"),
            json!("PONG"),
            json!("subscribed"),
            json!("subscribe"),
            json!("subscribed"),
            json!("error")
        ]
    );
    assert_eq!(r.subscriptions.len(), 2);
}

#[test]
fn unsubscribe_all_uses_the_meta_from_pushpin() {
    let subs = Subscriptions::from_meta(Some("a w?lat=5&u=c"));
    let r = handle(
        "cid",
        vec![text(json!({"action": "unsubscribe_all", "ref": 3}))],
        subs,
        &context(),
    );
    let t = texts(&r);
    assert_eq!(t.len(), 4);
    assert_eq!(
        t[0],
        json!({"control": {"type": "unsubscribe", "channel": "a"}})
    );
    assert_eq!(t[3]["ref"], 3);
    assert!(r.subscriptions.is_empty() && r.subscriptions_changed);
    assert_eq!(r.subscriptions.to_meta(), "");
}

#[test]
fn close_and_disconnect_end_the_batch_without_hints() {
    let subs = Subscriptions::from_meta(Some("a"));
    let r = handle(
        "cid",
        vec![
            Event::close(1000, ""),
            text(json!({"action": "unsubscribe_all"})),
        ],
        subs.clone(),
        &context(),
    );
    assert_eq!(r.events, vec![Event::close(1000, "")]);
    assert!(r.live_channels.is_empty());
    let r = handle("cid", vec![Event::Disconnect], subs.clone(), &context());
    assert!(r.events.is_empty() && r.live_channels.is_empty());
    let keep_alive = handle("cid", vec![], subs, &context());
    assert_eq!(keep_alive.live_channels, vec!["a"]);
}

#[test]
fn meta_ignores_entries_it_did_not_write() {
    let s = Subscriptions::from_meta(Some("a  bad?b=1&a=2 w?lat=1&u=c"));
    assert_eq!(s.to_meta(), "a w?lat=1&u=c");
}

mod auth;
