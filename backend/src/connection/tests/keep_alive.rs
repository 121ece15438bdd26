//! Transcripts with client keep-alives: the OPEN answer asks Pushpin to ping an idle client;
//! the client's pongs (and pings) cost nothing more.

use std::time::Duration;

use super::*;

fn pinging(silence: u64) -> Context<'static> {
    let limits: &'static Limits = Box::leak(Box::new(Limits {
        client_keep_alive: Some(Duration::from_secs(silence)),
        ..LIMITS
    }));
    Context {
        limits,
        ..context()
    }
}

#[test]
fn open_asks_pushpin_to_ping_after_the_silence() {
    let r = handle(
        "cid",
        vec![Event::Open],
        Subscriptions::default(),
        &pinging(25),
    );
    assert_eq!(
        texts(&r),
        vec![
            json!({"event": "OPEN"}),
            json!({"control": {"type": "subscribe", "channel": "_conn:cid"}}),
            json!({"control": {"type": "keep-alive", "content": "ka", "message-type": "ping", "mode": "idle", "timeout": 25}}),
            json!({"type": "ready", "protocol": 1})
        ]
    );
}

#[test]
fn only_the_open_answer_carries_it() {
    let subs = Subscriptions::from_meta(Some("a"));
    let r = handle(
        "cid",
        vec![text(
            json!({"action": "subscribe", "channel": "w", "params": {"lat": 1}}),
        )],
        subs.clone(),
        &pinging(25),
    );
    assert!(
        texts(&r)
            .iter()
            .all(|m| m["control"]["type"] != "keep-alive"),
        "{:?}",
        texts(&r)
    );
    // Pushpin's own keep-alive request (empty) and the client's pong answering a ping: no
    // events back, the subscriptions still live (demand hints).
    for events in [vec![], vec![Event::Pong(b"ka".to_vec())]] {
        let r = handle("cid", events, subs.clone(), &pinging(25));
        assert!(r.events.is_empty(), "{:?}", texts(&r));
        assert!(!r.subscriptions_changed);
        assert_eq!(r.live_channels, vec!["a"]);
    }
}

#[test]
fn no_keep_alive_when_off() {
    let r = handle(
        "cid",
        vec![Event::Open],
        Subscriptions::default(),
        &context(),
    );
    assert!(texts(&r)
        .iter()
        .all(|m| m["control"]["type"] != "keep-alive"));
}
