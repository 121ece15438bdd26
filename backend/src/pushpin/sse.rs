//! Server-Sent Events over GRIP: event framing, `Last-Event-ID`, and the hold instructions for
//! Pushpin (`Grip-Hold: stream`).
//!
//! An SSE subscriber receives exactly the messages a WebSocket subscriber does: each is one
//! event named after the message `type` (`snapshot`, `new`, `updated`, `removed`, `status`),
//! its data the same JSON, its `id` the channel `seq`, so the browser's automatic reconnect
//! (`Last-Event-ID`) resumes like `since` on WebSocket.

use std::time::Duration;

use thiserror::Error;

pub const CONTENT_TYPE: &str = "text/event-stream";

/// Milliseconds a client waits before reconnecting (the SSE `retry` field).
pub const RETRY_MS: u32 = 2000;

/// The `Grip-Keep-Alive` header value: after `silence` (whole seconds) Pushpin sends the
/// stream a comment line (C-string escaped here), so proxies and load balancers keep it open.
pub fn keep_alive_header(silence: Duration) -> String {
    format!(":\\n\\n; format=cstring; timeout={}", silence.as_secs())
}

/// The first bytes of a stream, sent at once so clients see the stream open.
pub fn preamble(channel: &str) -> String {
    format!("retry: {RETRY_MS}\n: restream {channel}\n\n")
}

/// One event. `data` is split at line breaks (LF, CRLF or a lone CR, all of which end an SSE
/// line) into `data:` lines, as the format requires.
pub fn frame(event: &str, id: Option<u64>, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 40);
    out.push_str("event: ");
    out.push_str(event);
    out.push('\n');
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(&id.to_string());
        out.push('\n');
    }
    for line in data.replace("\r\n", "\n").split(['\n', '\r']) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// The `type` of a server message's JSON (`{"type":"new",...}`: serde writes the tag first),
/// or `message` for anything else.
pub fn event_type(json: &str) -> &str {
    json.strip_prefix(r#"{"type":""#)
        .and_then(|rest| rest.split_once('"'))
        .map(|(kind, _)| kind)
        .filter(|kind| {
            !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .unwrap_or("message")
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("Last-Event-ID must be the seq of an event this stream sent (a number), not {0:?}")]
pub struct BadLastEventId(pub String);

/// The resume point in a `Last-Event-ID` header; `None` when absent or empty (a browser sends
/// an empty one after an event without id).
pub fn last_event_id(header: Option<&[u8]>) -> Result<Option<u64>, BadLastEventId> {
    let Some(raw) = header else { return Ok(None) };
    let text = String::from_utf8_lossy(raw);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    trimmed
        .parse::<u64>()
        .map(Some)
        .map_err(|_| BadLastEventId(trimmed.chars().take(40).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Health, ServerMessage};
    use proptest::prelude::*;

    #[test]
    fn frames_name_the_event_and_carry_the_id() {
        assert_eq!(
            frame("new", Some(3), r#"{"a":1}"#),
            "event: new\nid: 3\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            frame("status", None, "a\nb\r\nc"),
            "event: status\ndata: a\ndata: b\ndata: c\n\n"
        );
    }

    #[test]
    fn the_event_type_is_the_message_type() {
        let status = ServerMessage::Status {
            channel: "c".into(),
            params: Default::default(),
            seq: 2,
            status: Health::Ok,
            code: None,
            error: None,
            retry_in: None,
        };
        assert_eq!(event_type(&status.to_json()), "status");
        assert_eq!(event_type(r#"{"type":"updated","seq":1}"#), "updated");
        assert_eq!(event_type(r#"{"seq":1,"type":"new"}"#), "message");
        assert_eq!(event_type(r#"{"type":"a\nb"}"#), "message");
        assert_eq!(event_type(""), "message");
    }

    #[test]
    fn last_event_id_is_a_seq() {
        assert_eq!(last_event_id(None), Ok(None));
        assert_eq!(last_event_id(Some(b"")), Ok(None));
        assert_eq!(last_event_id(Some(b" 42 ")), Ok(Some(42)));
        assert!(last_event_id(Some(b"-1")).is_err());
        assert!(last_event_id(Some(b"abc")).is_err());
    }

    #[test]
    fn the_keep_alive_is_a_comment() {
        assert_eq!(
            keep_alive_header(Duration::from_secs(20)),
            ":\\n\\n; format=cstring; timeout=20"
        );
    }

    proptest! {
        #[test]
        fn any_header_bytes_parse_or_fail_cleanly(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = last_event_id(Some(&raw));
        }

        #[test]
        fn any_data_stays_inside_its_event(data in "(?s).{0,80}", id in any::<u64>()) {
            let f = frame("new", Some(id), &data);
            // Every SSE line is a field of this event, and only the last one is blank: the
            // event cannot be split, merged or given other fields.
            let lines: Vec<&str> = f.split(['\n', '\r']).collect();
            prop_assert_eq!(lines[lines.len() - 2..].to_vec(), vec!["", ""]);
            prop_assert!(lines[..lines.len() - 2].iter().all(|l| l.starts_with("event: ") || l.starts_with("id: ") || l.starts_with("data: ")));
        }
    }
}
