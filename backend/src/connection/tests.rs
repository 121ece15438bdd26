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
    client_keep_alive: None,
};

/// Abuse bounds as a test scripts them: churn tokens, channels admitted, snapshot re-sends.
#[derive(Default)]
struct Scripted {
    /// Subscribes left before `rate_limited`; `None` = unlimited.
    churn_left: std::cell::Cell<Option<usize>>,
    /// Channels admitted before `too_many_channels`; `None` = unlimited.
    channels_left: std::cell::Cell<Option<usize>>,
    refuse_resends: bool,
    admitted: std::cell::RefCell<Vec<String>>,
}

fn take(left: &std::cell::Cell<Option<usize>>) -> bool {
    match left.get() {
        None => true,
        Some(0) => false,
        Some(n) => {
            left.set(Some(n - 1));
            true
        }
    }
}

impl Admission for Scripted {
    fn subscribe_attempt(&self) -> Result<(), Limited> {
        take(&self.churn_left).then_some(()).ok_or(Limited {
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            retry_after: Some(3),
        })
    }
    fn admit_channel(&self, channel: &ChannelId, _: Option<usize>) -> Result<(), Limited> {
        if !take(&self.channels_left) {
            return Err(Limited {
                code: ErrorCode::TooManyChannels,
                message: "full".into(),
                retry_after: None,
            });
        }
        self.admitted.borrow_mut().push(channel.to_string());
        Ok(())
    }
    fn resend_snapshot(&self, _: &ChannelId) -> bool {
        !self.refuse_resends
    }
    fn snapshot_sent(&self, _: &ChannelId) {}
}

fn context() -> Context<'static> {
    context_with(Scripted::default())
}

fn public() -> RequestAuth<'static> {
    let auth: &'static crate::auth::Auth = Box::leak(Box::new(crate::auth::Auth::public()));
    RequestAuth {
        auth,
        connection: crate::auth::Credential::Absent,
        grants: Grants::default(),
        now: 0,
    }
}

fn context_with(admission: Scripted) -> Context<'static> {
    build(admission, public())
}

fn with_auth(auth: RequestAuth<'static>) -> Context<'static> {
    build(Scripted::default(), auth)
}

fn build(admission: Scripted, auth: RequestAuth<'static>) -> Context<'static> {
    let registry: &'static Registry = Box::leak(Box::new(registry()));
    Context {
        registry,
        limits: &LIMITS,
        admission: Box::leak(Box::new(admission)),
        auth: Box::leak(Box::new(auth)),
        snapshots: Box::leak(Box::default()),
        now: tokio::time::Instant::now(),
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
fn a_fresh_subscribe_gets_a_kept_snapshot_inline_and_the_poller_hears_nothing_of_it() {
    let snapshots: &'static SnapshotCache = Box::leak(Box::new(SnapshotCache::new(1 << 20)));
    let a = ChannelId::parse("a").unwrap();
    let kept = json!({"type": "snapshot", "channel": "a", "params": {}, "seq": 7, "items": []});
    let (_tx, mut poller_queue) = crate::poller::requests::channel(8);
    snapshots.offer(&a, 7, &kept.to_string(), &poller_queue.requeue());
    let context = Context {
        snapshots,
        ..context()
    };
    let events = vec![
        subscribe("a", 1),
        text(json!({"action": "subscribe", "channel": "w", "params": {"lat": 1}})),
    ];
    let r = handle("cid", events, Subscriptions::default(), &context);
    let t = texts(&r);
    assert_eq!(t[1]["type"], "subscribed");
    assert_eq!(t[2], kept, "right after its subscribed: {t:?}");
    assert_eq!(t.len(), 5, "none kept for w: {t:?}");
    let wanted: Vec<_> = r.snapshots.iter().map(|w| w.channel.as_str()).collect();
    assert_eq!(wanted, vec!["w?lat=1&u=c"], "a is the cache's to watch");

    // A subscriber resuming at the kept seq is up to date: nothing to send, nothing to ask.
    let current = text(json!({"action": "subscribe", "channel": "a", "since": 7}));
    let r = handle("c2", vec![current], Subscriptions::default(), &context);
    assert_eq!(texts(&r).len(), 2, "control and subscribed only");
    assert!(r.snapshots.is_empty());

    // One resuming at its own seq is the poller's to answer.
    let resume = text(json!({"action": "subscribe", "channel": "a", "since": 3}));
    let r = handle("c3", vec![resume], Subscriptions::default(), &context);
    assert_eq!(texts(&r).len(), 2, "control and subscribed only");
    assert_eq!(r.snapshots[0].since, Some(3));

    // The channel changes: the two it served are owed a resume after seq 7.
    assert!(poller_queue.try_recv().is_none());
    snapshots.forget(&a);
    let owed: Vec<_> = std::iter::from_fn(|| poller_queue.try_recv())
        .map(|r| (r.connection_channel.to_string(), r.since))
        .collect();
    assert_eq!(
        owed,
        vec![("_conn:cid".into(), Some(7)), ("_conn:c2".into(), Some(7))]
    );
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

fn subscribe(channel: &str, r: i64) -> Event {
    text(json!({"action": "subscribe", "channel": channel, "ref": r}))
}

#[test]
fn a_channel_beyond_its_cap_is_refused_and_starts_nothing() {
    let context = context_with(Scripted {
        channels_left: std::cell::Cell::new(Some(0)),
        ..Default::default()
    });
    let r = handle(
        "cid",
        vec![subscribe("a", 1)],
        Subscriptions::default(),
        &context,
    );
    assert_eq!(
        texts(&r),
        vec![json!({"type": "error", "code": "too_many_channels", "message": "full", "ref": 1})]
    );
    assert!(r.snapshots.is_empty());
    assert!(!r.subscriptions_changed);
    assert!(r.live_channels.is_empty(), "no demand hint");
}

#[test]
fn a_channel_the_connection_holds_is_never_refused_by_a_cap() {
    let context = context_with(Scripted {
        channels_left: std::cell::Cell::new(Some(0)),
        ..Default::default()
    });
    let held = Subscriptions::from_meta(Some("a"));
    let r = handle("cid", vec![subscribe("a", 1)], held, &context);
    assert_eq!(
        texts(&r),
        vec![json!({"type": "subscribed", "channel": "a", "params": {}, "ref": 1})]
    );
    assert_eq!(r.snapshots.len(), 1);
}

#[test]
fn churn_beyond_the_rate_gets_rate_limited_with_retry_after() {
    let context = context_with(Scripted {
        churn_left: std::cell::Cell::new(Some(1)),
        ..Default::default()
    });
    let events = vec![
        subscribe("a", 1),
        text(json!({"action": "subscribe", "channel": "w", "params": {"lat": 1}, "ref": 2})),
    ];
    let r = handle("cid", events, Subscriptions::default(), &context);
    let t = texts(&r);
    assert_eq!(t.len(), 3, "{t:?}");
    assert_eq!(
        t[2],
        json!({"type": "error", "code": "rate_limited", "message": "slow down", "ref": 2, "retry_after": 3})
    );
    assert_eq!(r.subscriptions.to_meta(), "a");
    assert_eq!(r.snapshots.len(), 1);
}

#[test]
fn invalid_params_are_refused_before_any_admission() {
    let admission = Scripted::default();
    let context = context_with(admission);
    let r = handle(
        "cid",
        vec![text(
            json!({"action": "subscribe", "channel": "w", "params": {"u": "x"}}),
        )],
        Subscriptions::default(),
        &context,
    );
    assert_eq!(texts(&r)[0]["code"], "invalid_params");
    assert!(r.snapshots.is_empty());
}

#[test]
fn a_repeated_subscribe_within_the_resend_window_is_confirmed_without_a_snapshot() {
    let context = context_with(Scripted {
        refuse_resends: true,
        ..Default::default()
    });
    let r = handle(
        "cid",
        vec![subscribe("a", 1), subscribe("a", 2)],
        Subscriptions::default(),
        &context,
    );
    let t = texts(&r);
    assert_eq!(t.iter().filter(|m| m["type"] == "subscribed").count(), 2);
    assert_eq!(r.snapshots.len(), 1, "only the first subscribe's snapshot");
}

#[test]
fn the_meta_header_is_capped_when_read_and_written() {
    let id = format!("w?lat={}", "9".repeat(200));
    let long = vec![id.as_str(); 200].join(" ");
    let subs = Subscriptions::from_meta(Some(&long));
    assert!(subs.to_meta().len() <= MAX_META_LEN);
    assert!(subs.len() < 200 && !subs.is_empty());
    assert!(subs.iter().all(|s| s.as_str() == id), "no id is cut");
}

proptest::proptest! {
    #[test]
    fn any_meta_header_reads_without_panicking_and_within_the_cap(s in "\\PC{0,40}", n in 0usize..2000) {
        let value = s.repeat(n);
        let subs = Subscriptions::from_meta(Some(&value));
        proptest::prop_assert!(subs.to_meta().len() <= MAX_META_LEN);
    }
}

mod auth;
mod keep_alive;

#[test]
fn a_fetcher_without_declared_params_takes_free_form_ones_within_bounds() {
    let context = context_with(Scripted::default());
    let r = handle(
        "cid",
        vec![
            text(
                json!({"action": "subscribe", "channel": "a", "params": {"section": "world"}, "ref": 1}),
            ),
            text(
                json!({"action": "subscribe", "channel": "a", "params": {"k": "v".repeat(300)}, "ref": 2}),
            ),
            text(
                json!({"action": "subscribe", "channel": "a", "params": (0..9).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>(), "ref": 3}),
            ),
            text(
                json!({"action": "subscribe", "channel": "w", "params": {"lat": "1", "section": "x"}, "ref": 4}),
            ),
        ],
        Subscriptions::default(),
        &context,
    );
    let t = texts(&r);
    let of = |reference: i64| {
        t.iter()
            .find(|m| m["ref"] == reference)
            .cloned()
            .unwrap_or_else(|| panic!("no reply to {reference}: {t:?}"))
    };
    assert_eq!(of(1)["type"], "subscribed");
    assert_eq!(of(1)["params"], json!({"section": "world"}));
    assert_eq!(of(2)["code"], "param_too_long");
    assert_eq!(of(3)["code"], "too_many_params");
    assert_eq!(
        of(4)["code"],
        "invalid_params",
        "declared params stay strict"
    );
    assert_eq!(r.subscriptions.to_meta(), "a?section=world");
}
