//! The client protocol: JSON text frames between a WebSocket client and restream.
//!
//! Client → server actions are exact, case-sensitive strings: `subscribe`, `unsubscribe`,
//! `unsubscribe_all`. Every server → client message carries a `type`.

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Version announced in the `ready` message.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest accepted `ref` once serialized; it is echoed back, so it stays small.
pub const MAX_REF_LEN: usize = 256;
/// Longest accepted client message.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// A parsed client request.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Subscribe {
        channel: String,
        params: Option<Value>,
        since: Option<u64>,
        reference: Option<Value>,
        /// A channel token for this subscribe alone (docs/security/auth.md).
        token: Option<Token>,
    },
    Unsubscribe {
        channel: String,
        params: Option<Value>,
        reference: Option<Value>,
    },
    UnsubscribeAll {
        reference: Option<Value>,
    },
}

/// A token a client sent; never printed, so a logged message cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Error codes sent in `error` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadMessage,
    UnknownAction,
    UnknownChannel,
    InvalidParams,
    NotSubscribed,
    TooManySubscriptions,
    Unauthorized,
    /// The channel would be active beyond its fetcher's or the service's channel cap.
    TooManyChannels,
    /// Too many subscribes from this connection or client address; see `retry_after`.
    RateLimited,
    /// More free-form params than `limits.max_free_params` (fetchers that declare none).
    TooManyParams,
    /// A free-form param name or value over `limits.max_free_param_*_len`.
    ParamTooLong,
    /// A declarative channel's `url` param names a host not on the operator's allowlist.
    UrlNotAllowed,
}

impl ErrorCode {
    /// The code of a subscribe whose params make no channel: the free-form bounds have their
    /// own, everything else is `invalid_params`.
    pub fn for_params(e: &crate::channel::ParamError) -> ErrorCode {
        match e.free_limit() {
            Some(crate::channel::FreeLimit::Count) => ErrorCode::TooManyParams,
            Some(_) => ErrorCode::ParamTooLong,
            None => ErrorCode::InvalidParams,
        }
    }

    /// The code's text, as sent.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnknownAction => "unknown_action",
            ErrorCode::UnknownChannel => "unknown_channel",
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooManyChannels => "too_many_channels",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyParams => "too_many_params",
            ErrorCode::ParamTooLong => "param_too_long",
            ErrorCode::UrlNotAllowed => "url_not_allowed",
        }
    }
}

/// A channel's upstream health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Ok,
    Degraded,
}

/// Why a channel is degraded, as subscribers and the public status API see it: a code and a
/// generic sentence. What exactly failed (a fetcher's stderr, an upstream's or AWS's error
/// text) stays in the logs: it may name internals, and it is not a stranger's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// The upstream API answered with an error or could not be reached.
    UpstreamUnavailable,
    /// The upstream API is limiting our calls (HTTP 429).
    UpstreamRateLimited,
    /// The fetcher crashed, timed out or answered something unusable.
    FetcherFailed,
    /// The fetcher could not be run (not deployed, throttled by its platform, not startable).
    FetcherUnavailable,
    /// The channel's API keys could not be read.
    KeysUnavailable,
    /// A declarative channel's URL (param, redirect or next page) is not on the allowlist.
    UrlNotAllowed,
    /// A feed document is larger than the operator allows.
    FeedTooLarge,
    /// A declarative channel's transform failed or passed its limits.
    TransformFailed,
    /// The upstream host had all the calls the operator allows per minute.
    HostBudgetExhausted,
}

impl FailureCode {
    /// The sentence subscribers read.
    pub fn message(self) -> &'static str {
        match self {
            FailureCode::UpstreamUnavailable => "the upstream API is failing; retrying",
            FailureCode::UpstreamRateLimited => {
                "the upstream API is limiting requests; retrying later"
            }
            FailureCode::FetcherFailed => "fetching this channel failed; retrying",
            FailureCode::FetcherUnavailable => "this channel's fetcher is unavailable; retrying",
            FailureCode::KeysUnavailable => "this channel's API keys are unavailable; retrying",
            FailureCode::UrlNotAllowed => "this channel's URL is not allowed here",
            FailureCode::FeedTooLarge => "the feed is larger than allowed; retrying",
            FailureCode::TransformFailed => "reshaping the upstream answer failed; retrying",
            FailureCode::HostBudgetExhausted => {
                "the upstream host had all its calls for now; retrying later"
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::UpstreamUnavailable => "upstream_unavailable",
            FailureCode::UpstreamRateLimited => "upstream_rate_limited",
            FailureCode::FetcherFailed => "fetcher_failed",
            FailureCode::FetcherUnavailable => "fetcher_unavailable",
            FailureCode::KeysUnavailable => "keys_unavailable",
            FailureCode::UrlNotAllowed => "url_not_allowed",
            FailureCode::FeedTooLarge => "feed_too_large",
            FailureCode::TransformFailed => "transform_failed",
            FailureCode::HostBudgetExhausted => "host_budget_exhausted",
        }
    }
}

/// A request that could not be understood, with what is needed to answer it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    pub reference: Option<Value>,
}

impl Rejection {
    fn new(code: ErrorCode, message: impl Into<String>, reference: Option<Value>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
            reference,
        }
    }
}

/// Parses one text frame. Unknown fields are rejected so typos (`param` for `params`) surface
/// instead of silently subscribing to defaults.
pub fn parse(text: &[u8]) -> Result<ClientMessage, Rejection> {
    let bad = |m: String, r: Option<Value>| Rejection::new(ErrorCode::BadMessage, m, r);
    if text.len() > MAX_MESSAGE_LEN {
        return Err(bad(
            format!("message longer than {MAX_MESSAGE_LEN} bytes"),
            None,
        ));
    }
    let value: Value =
        serde_json::from_slice(text).map_err(|e| bad(format!("invalid JSON: {e}"), None))?;
    let Value::Object(mut obj) = value else {
        return Err(bad("message must be a JSON object".into(), None));
    };
    let reference = match obj.remove("ref") {
        None | Some(Value::Null) => None,
        Some(r @ (Value::String(_) | Value::Number(_))) if r.to_string().len() <= MAX_REF_LEN => {
            Some(r)
        }
        Some(Value::String(_) | Value::Number(_)) => {
            return Err(bad(
                format!("ref longer than {MAX_REF_LEN} characters"),
                None,
            ))
        }
        Some(_) => return Err(bad("ref must be a string or a number".into(), None)),
    };
    let action = match obj.remove("action") {
        Some(Value::String(a)) => a,
        Some(_) => return Err(bad("action must be a string".into(), reference)),
        None => return Err(bad("missing action".into(), reference)),
    };
    let allowed: &[&str] = match action.as_str() {
        "subscribe" => &["channel", "params", "since", "token"],
        "unsubscribe" => &["channel", "params"],
        "unsubscribe_all" => &[],
        other => {
            return Err(Rejection::new(
                ErrorCode::UnknownAction,
                format!(
                    "unknown action {:?}; expected subscribe, unsubscribe or unsubscribe_all",
                    other.chars().take(40).collect::<String>()
                ),
                reference,
            ))
        }
    };
    if let Some(extra) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        let field: String = extra.chars().take(40).collect();
        return Err(bad(
            format!("unexpected field {field:?} for action {action}"),
            reference,
        ));
    }
    if action == "unsubscribe_all" {
        return Ok(ClientMessage::UnsubscribeAll { reference });
    }
    let channel = match obj.remove("channel") {
        Some(Value::String(c)) if !c.is_empty() => c,
        Some(_) => return Err(bad("channel must be a non-empty string".into(), reference)),
        None => return Err(bad("missing channel".into(), reference)),
    };
    let params = obj.remove("params");
    if action == "unsubscribe" {
        return Ok(ClientMessage::Unsubscribe {
            channel,
            params,
            reference,
        });
    }
    let since = match obj.remove("since") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(_) => {
            return Err(bad(
                "since must be a non-negative integer".into(),
                reference,
            ))
        }
    };
    let token = match obj.remove("token") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(Token(t)),
        Some(_) => return Err(bad("token must be a string".into(), reference)),
    };
    Ok(ClientMessage::Subscribe {
        channel,
        params,
        since,
        reference,
        token,
    })
}

/// A message from restream to a client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Ready {
        protocol: u32,
    },
    Subscribed {
        channel: String,
        params: BTreeMap<String, String>,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    Unsubscribed {
        channel: String,
        params: BTreeMap<String, String>,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    /// The channel's current items: after its first poll, and to each new subscriber.
    Snapshot {
        channel: String,
        params: BTreeMap<String, String>,
        seq: u64,
        items: Vec<Map<String, Value>>,
        /// Set when a `since` resume could not be served from the change log.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        reset: bool,
    },
    /// An item the channel had not seen before.
    New {
        channel: String,
        params: BTreeMap<String, String>,
        seq: u64,
        item: Map<String, Value>,
    },
    /// A known item whose content changed: the new item and an RFC 6902 patch from the old one.
    Updated {
        channel: String,
        params: BTreeMap<String, String>,
        seq: u64,
        item: Map<String, Value>,
        patch: crate::changes::Patch,
    },
    /// An item gone from a complete fetch result: its last known content.
    Removed {
        channel: String,
        params: BTreeMap<String, String>,
        seq: u64,
        item: Map<String, Value>,
    },
    /// Upstream health of a channel, sent when it changes (and to new subscribers while
    /// degraded). `seq` is the channel's current seq; a status is not an event.
    Status {
        channel: String,
        params: BTreeMap<String, String>,
        seq: u64,
        status: Health,
        /// Why it is degraded.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<FailureCode>,
        /// The code's sentence, never the failure's details.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'static str>,
        /// Seconds until the next attempt.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_in: Option<f64>,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
        /// Whole seconds to wait before trying again (`rate_limited`).
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }

    /// An `error` message without `retry_after`.
    pub fn error(code: ErrorCode, message: impl Into<String>, reference: Option<Value>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
            reference,
            retry_after: None,
        }
    }

    /// A `rate_limited` error saying when to try again.
    pub fn rate_limited(
        message: impl Into<String>,
        reference: Option<Value>,
        retry_after: u64,
    ) -> Self {
        ServerMessage::Error {
            code: ErrorCode::RateLimited,
            message: message.into(),
            reference,
            retry_after: Some(retry_after),
        }
    }
}

impl From<Rejection> for ServerMessage {
    fn from(r: Rejection) -> ServerMessage {
        ServerMessage::error(r.code, r.message, r.reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_three_actions() {
        assert_eq!(
            parse(br#"{"action":"subscribe","channel":"nyt-top","params":{"section":"world"},"since":41,"ref":"x"}"#),
            Ok(ClientMessage::Subscribe {
                channel: "nyt-top".into(),
                params: Some(json!({"section":"world"})),
                since: Some(41),
                reference: Some(json!("x")),
                token: None,
            })
        );
        let with_token = parse(br#"{"action":"subscribe","channel":"a","token":"t.t.t"}"#).unwrap();
        assert!(
            matches!(&with_token, ClientMessage::Subscribe { token: Some(Token(t)), .. } if t == "t.t.t")
        );
        assert!(
            !format!("{with_token:?}").contains("t.t.t"),
            "tokens are never printed"
        );
        assert_eq!(
            parse(br#"{"action":"unsubscribe","channel":"a"}"#),
            Ok(ClientMessage::Unsubscribe {
                channel: "a".into(),
                params: None,
                reference: None
            })
        );
        assert_eq!(
            parse(br#"{"action":"unsubscribe_all","ref":7}"#),
            Ok(ClientMessage::UnsubscribeAll {
                reference: Some(json!(7))
            })
        );
    }

    #[test]
    fn rejects_bad_messages_with_codes() {
        let code = |b: &[u8]| parse(b).unwrap_err().code;
        assert_eq!(code(b"not json"), ErrorCode::BadMessage);
        assert_eq!(code(b"[1]"), ErrorCode::BadMessage);
        assert_eq!(code(br#"{"channel":"a"}"#), ErrorCode::BadMessage);
        assert_eq!(
            code(br#"{"action":"Subscribe","channel":"a"}"#),
            ErrorCode::UnknownAction
        );
        assert_eq!(
            code(br#"{"action":"unsubscribe-all"}"#),
            ErrorCode::UnknownAction
        );
        assert_eq!(code(br#"{"action":"subscribe"}"#), ErrorCode::BadMessage);
        assert_eq!(
            code(br#"{"action":"subscribe","channel":5}"#),
            ErrorCode::BadMessage
        );
        assert_eq!(
            code(br#"{"action":"subscribe","channel":"a","param":{}}"#),
            ErrorCode::BadMessage
        );
        assert_eq!(
            code(br#"{"action":"subscribe","channel":"a","since":-1}"#),
            ErrorCode::BadMessage
        );
        assert_eq!(
            code(br#"{"action":"subscribe","channel":"a","ref":{}}"#),
            ErrorCode::BadMessage
        );
        assert_eq!(
            code(br#"{"action":"subscribe","channel":"a","token":5}"#),
            ErrorCode::BadMessage
        );
        assert_eq!(
            code(br#"{"action":"unsubscribe","channel":"a","token":"x"}"#),
            ErrorCode::BadMessage
        );
    }

    #[test]
    fn ref_is_echoed_in_errors_when_readable() {
        let r = parse(br#"{"action":"nope","ref":"abc"}"#).unwrap_err();
        assert_eq!(r.reference, Some(json!("abc")));
        let long = format!(
            r#"{{"action":"subscribe","channel":"a","ref":"{}"}}"#,
            "x".repeat(300)
        );
        assert_eq!(parse(long.as_bytes()).unwrap_err().reference, None);
    }

    #[test]
    fn server_messages_are_tagged() {
        let m = ServerMessage::error(ErrorCode::UnknownChannel, "m", Some(json!(1)));
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"type":"error","code":"unknown_channel","message":"m","ref":1})
        );
        assert_eq!(
            ServerMessage::Ready { protocol: 1 }.to_json(),
            r#"{"type":"ready","protocol":1}"#
        );
        let limited = ServerMessage::rate_limited("slow down", None, 4);
        assert_eq!(
            serde_json::to_value(&limited).unwrap(),
            json!({"type":"error","code":"rate_limited","message":"slow down","retry_after":4})
        );
        assert_eq!(
            serde_json::to_value(ErrorCode::TooManyChannels).unwrap(),
            "too_many_channels"
        );
    }

    #[test]
    fn code_texts_are_what_is_sent() {
        use ErrorCode::*;
        for code in [
            BadMessage,
            UnknownAction,
            UnknownChannel,
            InvalidParams,
            NotSubscribed,
            TooManySubscriptions,
            Unauthorized,
            TooManyChannels,
            RateLimited,
            TooManyParams,
            ParamTooLong,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}
