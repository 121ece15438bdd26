//! Issue 22: the protocol as data. `schemas/protocol/*.schema.json` accept every message the
//! backend builds and every example in docs/protocol.md, and refuse what the parser refuses,
//! so the documents and the code cannot drift apart. (The e2e suite checks every message its
//! clients receive against the same schemas: `restream_testkit::clients::schema`.)

use std::collections::BTreeMap;

use restream::protocol::{self, ErrorCode, FailureCode, Health, ServerMessage};
use restream_testkit::clients::schema::{client_message_errors, server_message_errors};
use serde_json::{json, Map, Value};

fn params() -> BTreeMap<String, String> {
    BTreeMap::from([("feed".to_string(), "2.5_day".to_string())])
}

fn item(id: &str) -> Map<String, Value> {
    json!({"id": id, "properties": {"mag": 2.5}})
        .as_object()
        .unwrap()
        .clone()
}

/// Every error code. A new variant fails to compile in [`listed_error`] until it is added here
/// (and so checked against the schema).
const ERROR_CODES: [ErrorCode; 12] = [
    ErrorCode::BadMessage,
    ErrorCode::UnknownAction,
    ErrorCode::UnknownChannel,
    ErrorCode::InvalidParams,
    ErrorCode::NotSubscribed,
    ErrorCode::TooManySubscriptions,
    ErrorCode::Unauthorized,
    ErrorCode::TooManyChannels,
    ErrorCode::RateLimited,
    ErrorCode::TooManyParams,
    ErrorCode::ParamTooLong,
    ErrorCode::UrlNotAllowed,
];

/// Every failure code of a degraded status, kept complete by [`listed_failure`].
const FAILURE_CODES: [FailureCode; 9] = [
    FailureCode::UpstreamUnavailable,
    FailureCode::UpstreamRateLimited,
    FailureCode::FetcherFailed,
    FailureCode::FetcherUnavailable,
    FailureCode::KeysUnavailable,
    FailureCode::UrlNotAllowed,
    FailureCode::FeedTooLarge,
    FailureCode::TransformFailed,
    FailureCode::HostBudgetExhausted,
];

/// Exhaustive: adding an `ErrorCode` variant breaks this match, pointing at [`ERROR_CODES`].
fn listed_error(code: ErrorCode) -> bool {
    match code {
        ErrorCode::BadMessage
        | ErrorCode::UnknownAction
        | ErrorCode::UnknownChannel
        | ErrorCode::InvalidParams
        | ErrorCode::NotSubscribed
        | ErrorCode::TooManySubscriptions
        | ErrorCode::Unauthorized
        | ErrorCode::TooManyChannels
        | ErrorCode::RateLimited
        | ErrorCode::TooManyParams
        | ErrorCode::ParamTooLong
        | ErrorCode::UrlNotAllowed => ERROR_CODES.contains(&code),
    }
}

/// Exhaustive: adding a `FailureCode` variant breaks this match, pointing at [`FAILURE_CODES`].
fn listed_failure(code: FailureCode) -> bool {
    match code {
        FailureCode::UpstreamUnavailable
        | FailureCode::UpstreamRateLimited
        | FailureCode::FetcherFailed
        | FailureCode::FetcherUnavailable
        | FailureCode::KeysUnavailable
        | FailureCode::UrlNotAllowed
        | FailureCode::FeedTooLarge
        | FailureCode::TransformFailed
        | FailureCode::HostBudgetExhausted => FAILURE_CODES.contains(&code),
    }
}

#[test]
fn every_code_is_listed() {
    assert!(ERROR_CODES.into_iter().all(listed_error));
    assert!(FAILURE_CODES.into_iter().all(listed_failure));
}

/// One of each server message, as the backend serializes them.
fn every_server_message() -> Vec<ServerMessage> {
    let channel = || "usgs-earthquakes".to_string();
    let mut out = vec![
        ServerMessage::Ready {
            protocol: protocol::PROTOCOL_VERSION,
        },
        ServerMessage::Subscribed {
            channel: channel(),
            params: params(),
            reference: Some(json!("q1")),
        },
        ServerMessage::Unsubscribed {
            channel: channel(),
            params: BTreeMap::new(),
            reference: None,
        },
        ServerMessage::Snapshot {
            channel: channel(),
            params: params(),
            seq: 41,
            items: vec![item("a"), item("b")],
            reset: false,
        },
        ServerMessage::Snapshot {
            channel: channel(),
            params: params(),
            seq: 1,
            items: vec![],
            reset: true,
        },
        ServerMessage::New {
            channel: channel(),
            params: params(),
            seq: 42,
            item: item("c"),
        },
        ServerMessage::Updated {
            channel: channel(),
            params: params(),
            seq: 43,
            item: item("a"),
            patch: json!([{"op": "replace", "path": "/properties/mag", "value": 2.9}]).into(),
        },
        ServerMessage::Removed {
            channel: channel(),
            params: params(),
            seq: 44,
            item: item("b"),
        },
        ServerMessage::Status {
            channel: channel(),
            params: params(),
            seq: 44,
            status: Health::Ok,
            code: None,
            error: None,
            retry_in: None,
        },
        ServerMessage::rate_limited("slow down", Some(json!(7)), 3),
    ];
    for code in FAILURE_CODES {
        out.push(ServerMessage::Status {
            channel: channel(),
            params: params(),
            seq: 44,
            status: Health::Degraded,
            code: Some(code),
            error: Some(code.message()),
            retry_in: Some(60.0),
        });
    }
    for code in ERROR_CODES {
        out.push(ServerMessage::error(code, "m", None));
    }
    out
}

#[test]
fn every_message_the_backend_builds_matches_the_server_schema() {
    for m in every_server_message() {
        let value: Value = serde_json::from_str(&m.to_json()).unwrap();
        let errors = server_message_errors(&value);
        assert!(errors.is_empty(), "{value}: {errors:?}");
    }
}

#[test]
fn the_server_schema_refuses_what_the_protocol_does_not_send() {
    let bad = [
        json!({"type": "hello"}),
        json!({"protocol": 1}),
        json!({"type": "ready"}),
        json!({"type": "new", "channel": "a", "params": {}, "item": {"id": 1}}),
        json!({"type": "new", "channel": "a", "params": {}, "seq": -1, "item": {"id": 1}}),
        json!({"type": "new", "channel": "a", "params": {"n": 1}, "seq": 1, "item": {"id": 1}}),
        json!({"type": "new", "channel": "a", "params": {}, "seq": 1, "item": [1]}),
        json!({"type": "new", "channel": "a", "params": {}, "seq": 1, "item": {}, "extra": 1}),
        json!({"type": "updated", "channel": "a", "params": {}, "seq": 1, "item": {}}),
        json!({"type": "updated", "channel": "a", "params": {}, "seq": 1, "item": {}, "patch": [{"op": "replace", "path": "/a"}]}),
        json!({"type": "snapshot", "channel": "a", "params": {}, "seq": 1, "items": {}}),
        json!({"type": "snapshot", "channel": "a", "params": {}, "seq": 1, "items": [], "reset": false}),
        json!({"type": "status", "channel": "a", "params": {}, "seq": 1, "status": "degraded"}),
        json!({"type": "status", "channel": "a", "params": {}, "seq": 1, "status": "ok", "code": "fetcher_failed"}),
        json!({"type": "status", "channel": "a", "params": {}, "seq": 1, "status": "down"}),
        json!({"type": "error", "code": "teapot", "message": "m"}),
        json!({"type": "error", "code": "bad_message"}),
    ];
    for m in bad {
        assert!(!server_message_errors(&m).is_empty(), "accepted {m}");
    }
}

#[test]
fn the_client_schema_agrees_with_the_parser() {
    let accepted = [
        json!({"action": "subscribe", "channel": "nyt-top", "params": {"section": "world"}, "since": 41, "ref": "x"}),
        json!({"action": "subscribe", "channel": "a", "params": {"n": 1, "b": true}, "ref": 7, "token": "t.t.t"}),
        json!({"action": "subscribe", "channel": "a", "since": null, "token": null, "ref": null}),
        json!({"action": "unsubscribe", "channel": "a", "params": {}}),
        json!({"action": "unsubscribe_all"}),
        json!({"action": "unsubscribe_all", "ref": 7}),
    ];
    for m in accepted {
        assert!(
            protocol::parse(m.to_string().as_bytes()).is_ok(),
            "parser refused {m}"
        );
        let errors = client_message_errors(&m);
        assert!(errors.is_empty(), "{m}: {errors:?}");
    }
    let refused = [
        json!([1]),
        json!({"channel": "a"}),
        json!({"action": "Subscribe", "channel": "a"}),
        json!({"action": "unsubscribe-all"}),
        json!({"action": 5}),
        json!({"action": "subscribe"}),
        json!({"action": "subscribe", "channel": 5}),
        json!({"action": "subscribe", "channel": ""}),
        json!({"action": "subscribe", "channel": "a", "param": {}}),
        json!({"action": "subscribe", "channel": "a", "since": -1}),
        json!({"action": "subscribe", "channel": "a", "since": 1.5}),
        json!({"action": "subscribe", "channel": "a", "ref": {}}),
        json!({"action": "subscribe", "channel": "a", "ref": "x".repeat(300)}),
        json!({"action": "subscribe", "channel": "a", "token": 5}),
        json!({"action": "unsubscribe", "channel": "a", "token": "x"}),
        json!({"action": "unsubscribe", "channel": "a", "since": 1}),
        json!({"action": "unsubscribe_all", "channel": "a"}),
    ];
    for m in refused {
        assert!(
            protocol::parse(m.to_string().as_bytes()).is_err(),
            "parser accepted {m}"
        );
        assert!(!client_message_errors(&m).is_empty(), "schema accepted {m}");
    }
}

/// Every JSON example in docs/protocol.md is a valid client or server message.
#[test]
fn the_examples_in_the_protocol_docs_match_the_schemas() {
    let doc = include_str!("../../docs/protocol.md");
    let mut seen = 0;
    for block in doc.split("```json").skip(1) {
        let block = block.split("```").next().unwrap();
        for value in serde_json::Deserializer::from_str(block).into_iter::<Value>() {
            let value = value.unwrap_or_else(|e| panic!("an example is not JSON: {e}\n{block}"));
            let errors = if value.get("action").is_some() {
                client_message_errors(&value)
            } else {
                server_message_errors(&value)
            };
            assert!(errors.is_empty(), "{value}: {errors:?}");
            seen += 1;
        }
    }
    assert!(seen >= 14, "only {seen} examples found");
}

/// The AsyncAPI document names every message of both schemas, and only messages they define.
#[test]
fn the_asyncapi_document_covers_every_message() {
    let doc = include_str!("../../schemas/protocol/asyncapi.yaml");
    assert!(doc.contains("asyncapi: 3.0.0"));
    for (file, text, tag) in [
        (
            "client-message.schema.json",
            include_str!("../../schemas/protocol/client-message.schema.json"),
            "action",
        ),
        (
            "server-message.schema.json",
            include_str!("../../schemas/protocol/server-message.schema.json"),
            "type",
        ),
    ] {
        let schema: Value = serde_json::from_str(text).unwrap();
        let messages: Vec<&str> = schema["properties"][tag]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for m in &messages {
            assert!(schema["$defs"].get(*m).is_some(), "{file} defines no {m}");
            let reference = format!("payload: {{ $ref: '{file}#/$defs/{m}' }}");
            assert!(doc.contains(&reference), "asyncapi.yaml lacks {reference}");
        }
        let prefix = format!("'{file}#/$defs/");
        for rest in doc.split(&prefix).skip(1) {
            let name = rest.split('\'').next().unwrap();
            assert!(
                messages.contains(&name),
                "asyncapi.yaml names {file} {name}"
            );
        }
    }
}
