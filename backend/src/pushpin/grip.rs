//! GRIP: the control messages we return to Pushpin in WOH responses and the items we publish.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::channel::GripChannel;

/// The WebSocket extension we negotiate: GRIP with no prefix on normal messages, so plain JSON
/// text reaches clients untouched (Pushpin drops unprefixed messages under the default `m:`).
pub const WS_EXTENSION: &str = "grip; message-prefix=\"\"";

/// Pushpin hard-codes this prefix for control messages.
const CONTROL_PREFIX: &str = "c:";

/// The payload of the ping frames Pushpin sends idle WebSocket clients (clients answer with
/// a pong carrying it; nothing reads it). Not empty: Pushpin turns keep-alives off when the
/// content is missing (null); an empty string works on 1.36 (tested) but is one Qt
/// null-versus-empty conversion away from missing.
pub const KEEP_ALIVE_PAYLOAD: &str = "ka";

/// A GRIP WebSocket control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Subscribe(GripChannel),
    Unsubscribe(GripChannel),
    /// After this long without a message to the client, Pushpin sends it a ping frame (and
    /// again after each such silence); whole seconds, at least 1.
    KeepAlive(Duration),
}

impl Control {
    /// The `c:{...}` text sent to Pushpin in a TEXT event.
    pub fn to_text(&self) -> String {
        /// A subscription change, written straight (one per subscribe and unsubscribe).
        #[derive(Serialize)]
        struct Membership<'a> {
            channel: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        let membership = |channel: &GripChannel, kind| {
            let body = Membership {
                channel: &channel.to_string(),
                kind,
            };
            let body = serde_json::to_string(&body).expect("strings serialize");
            format!("{CONTROL_PREFIX}{body}")
        };
        let body = match self {
            Control::Subscribe(ch) => return membership(ch, "subscribe"),
            Control::Unsubscribe(ch) => return membership(ch, "unsubscribe"),
            Control::KeepAlive(silence) => json!({
                "type": "keep-alive",
                "content": KEEP_ALIVE_PAYLOAD,
                "message-type": "ping",
                "mode": "idle",
                "timeout": silence.as_secs().max(1),
            }),
        };
        format!("{CONTROL_PREFIX}{body}")
    }
}

/// Which client transports a publish item is formatted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transports {
    WebSocket,
    Sse,
    /// A channel's broadcast: WebSocket and SSE subscribers share one GRIP channel, and
    /// Pushpin gives each subscriber the format of its own transport.
    Both,
}

/// One GRIP publish item: a server message for WebSocket (`ws-message`) and/or SSE
/// (`http-stream`) subscribers of one channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishItem {
    pub channel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "prev-id", skip_serializing_if = "Option::is_none")]
    pub prev_id: Option<String>,
    pub formats: Formats,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Formats {
    #[serde(rename = "ws-message", skip_serializing_if = "Option::is_none")]
    pub ws_message: Option<Content>,
    #[serde(rename = "http-stream", skip_serializing_if = "Option::is_none")]
    pub http_stream: Option<Content>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Content {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content: String,
    /// `close`: ends the SSE stream (or WebSocket) instead of sending anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
}

impl PublishItem {
    /// A text message for every WebSocket subscriber of `channel`, ordered by `id`/`prev-id`.
    pub fn ws_text(
        channel: impl Into<String>,
        content: impl Into<String>,
        id: Option<String>,
        prev_id: Option<String>,
    ) -> PublishItem {
        PublishItem {
            channel: channel.into(),
            id,
            prev_id,
            formats: Formats {
                ws_message: Some(Content {
                    content: content.into(),
                    action: None,
                }),
                http_stream: None,
            },
        }
    }

    /// A server message (`json`, which starts with its `type`) for the subscribers of
    /// `channel` on `transports`. SSE subscribers get it as an event named after its type,
    /// with `id: event_id` so a reconnect resumes from it.
    pub fn message(
        channel: impl Into<String>,
        transports: Transports,
        json: String,
        event_id: Option<u64>,
    ) -> PublishItem {
        let sse = matches!(transports, Transports::Sse | Transports::Both).then(|| {
            crate::pushpin::sse::frame(crate::pushpin::sse::event_type(&json), event_id, &json)
        });
        let ws = matches!(transports, Transports::WebSocket | Transports::Both).then_some(json);
        PublishItem {
            channel: channel.into(),
            id: None,
            prev_id: None,
            formats: Formats {
                ws_message: ws.map(|content| Content {
                    content,
                    action: None,
                }),
                http_stream: sse.map(|content| Content {
                    content,
                    action: None,
                }),
            },
        }
    }

    /// Ends the SSE streams subscribed to `channel` (an SSE stream's private channel).
    pub fn close_stream(channel: &GripChannel) -> PublishItem {
        PublishItem {
            channel: channel.to_string(),
            id: None,
            prev_id: None,
            formats: Formats {
                ws_message: None,
                http_stream: Some(Content {
                    content: String::new(),
                    action: Some("close"),
                }),
            },
        }
    }

    /// Event `seq` of its channel: GRIP ids follow the seq so Pushpin delivers in order.
    pub fn ordered(mut self, seq: u64) -> PublishItem {
        self.id = Some(seq.to_string());
        self.prev_id = (seq > 1).then(|| (seq - 1).to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_have_the_c_prefix() {
        assert_eq!(
            Control::Subscribe(GripChannel::parse("nyt-top?section=home").unwrap()).to_text(),
            r#"c:{"channel":"nyt-top?section=home","type":"subscribe"}"#
        );
        assert_eq!(
            Control::Unsubscribe(GripChannel::parse("x").unwrap()).to_text(),
            r#"c:{"channel":"x","type":"unsubscribe"}"#
        );
    }

    #[test]
    fn a_keep_alive_asks_for_ping_frames_after_the_silence() {
        let text = Control::KeepAlive(Duration::from_secs(30)).to_text();
        let body: serde_json::Value =
            serde_json::from_str(text.strip_prefix("c:").unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"type": "keep-alive", "content": "ka", "message-type": "ping", "mode": "idle", "timeout": 30})
        );
    }

    #[test]
    fn a_broadcast_carries_both_formats_and_the_sse_event_id() {
        let item = PublishItem::message(
            "ch",
            Transports::Both,
            r#"{"type":"new","seq":7}"#.into(),
            Some(7),
        )
        .ordered(7);
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({"channel":"ch","id":"7","prev-id":"6","formats":{
                "ws-message":{"content":"{\"type\":\"new\",\"seq\":7}"},
                "http-stream":{"content":"event: new\nid: 7\ndata: {\"type\":\"new\",\"seq\":7}\n\n"}}})
        );
        let private = PublishItem::message("_sse:1", Transports::Sse, "{}".into(), None);
        assert!(private.formats.ws_message.is_none());
        assert!(private.id.is_none());
    }

    #[test]
    fn publish_items_use_grip_field_names() {
        let item = PublishItem::ws_text("ch", "{}", Some("e:2".into()), Some("e:1".into()));
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({"channel":"ch","id":"e:2","prev-id":"e:1","formats":{"ws-message":{"content":"{}"}}})
        );
        let first = PublishItem::ws_text("ch", "{}", Some("e:1".into()), None);
        assert!(serde_json::to_value(&first)
            .unwrap()
            .get("prev-id")
            .is_none());
    }
}
