//! Must-show 4: every kind of bad client input gets its `error` reply through Pushpin, and the
//! connection keeps working.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

async fn expect_error(c: &mut Client, message: Message, code: &str) -> Value {
    c.ws.send(message.clone()).await.unwrap();
    let reply = c
        .recv(Duration::from_secs(10))
        .await
        .expect("an error reply");
    assert_eq!(reply["type"], "error", "{message:?} -> {reply}");
    assert_eq!(reply["code"], code, "{message:?} -> {reply}");
    assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    reply
}

fn text(v: Value) -> Message {
    Message::text(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_errors_and_the_connection_survives() {
    let stack = Stack::start().await;
    let mut c = Client::connect(&stack.ws_url).await;

    expect_error(&mut c, Message::text("{not json"), "bad_message").await;
    expect_error(&mut c, Message::text("[1,2]"), "bad_message").await;
    expect_error(&mut c, Message::binary(vec![1u8, 2, 3]), "bad_message").await;
    expect_error(
        &mut c,
        text(json!({"channel": "usgs-earthquakes"})),
        "bad_message",
    )
    .await;
    expect_error(&mut c, text(json!({"action": "subscribe"})), "bad_message").await;
    expect_error(
        &mut c,
        text(json!({"action": "subscribe", "channel": "usgs-earthquakes", "param": {}})),
        "bad_message",
    )
    .await;
    let r = expect_error(
        &mut c,
        text(json!({"action": "Subscribe", "channel": "x", "ref": "r1"})),
        "unknown_action",
    )
    .await;
    assert_eq!(r["ref"], "r1", "ref is echoed");
    expect_error(
        &mut c,
        text(json!({"action": "unsubscribe-all"})),
        "unknown_action",
    )
    .await;
    expect_error(
        &mut c,
        text(json!({"action": "subscribe", "channel": "no-such-channel"})),
        "unknown_channel",
    )
    .await;
    expect_error(
        &mut c,
        text(json!({"action": "subscribe", "channel": "open-meteo-current"})),
        "invalid_params",
    )
    .await;
    expect_error(
        &mut c,
        text(json!({"action": "subscribe", "channel": "open-meteo-current", "params": {"latitude": 1, "longitude": [2]}})),
        "invalid_params",
    )
    .await;
    expect_error(
        &mut c,
        text(json!({"action": "subscribe", "channel": "usgs-earthquakes", "params": {"bogus": 1}})),
        "invalid_params",
    )
    .await;
    expect_error(
        &mut c,
        text(json!({"action": "unsubscribe", "channel": "usgs-earthquakes"})),
        "not_subscribed",
    )
    .await;
    expect_error(
        &mut c,
        text(json!({"action": "unsubscribe_all"})),
        "not_subscribed",
    )
    .await;

    // Pushpin allows 20 subscriptions per connection; the 21st is refused, not silently lost.
    for i in 0..20 {
        c.subscribe("open-meteo-current", json!({"latitude": i, "longitude": 0}))
            .await;
    }
    let r = expect_error(
        &mut c,
        text(json!({"action": "subscribe", "channel": "usgs-earthquakes", "ref": 21})),
        "too_many_subscriptions",
    )
    .await;
    assert_eq!(r["ref"], 21);
    // A repeated subscribe is idempotent, even at the limit.
    c.subscribe(
        "open-meteo-current",
        json!({"latitude": 0, "longitude": "0"}),
    )
    .await;

    // Still fully working: ping/pong, unsubscribe, subscribe, live items.
    c.ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = match c.next_non_text(Duration::from_secs(5)).await {
        Message::Pong(p) => p,
        other => panic!("expected a pong, got {other:?}"),
    };
    assert_eq!(&pong[..], b"are you there");
    c.send(json!({"action": "unsubscribe_all"})).await;
    for _ in 0..20 {
        c.recv_type("unsubscribed", Duration::from_secs(10)).await;
    }
    c.subscribe("usgs-earthquakes", json!({"feed": "4.5_week"}))
        .await;
    let (m, _) = c.recv_type("snapshot", Duration::from_secs(10)).await;
    assert_eq!(m["params"]["feed"], "4.5_week");

    // A clean close is answered with the client's close code.
    c.ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 4100.into(),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let closed = match c.next_non_text(Duration::from_secs(5)).await {
        Message::Close(f) => f,
        other => panic!("expected a close frame, got {other:?}"),
    };
    assert_eq!(closed.map(|f| u16::from(f.code)), Some(4100));
}
