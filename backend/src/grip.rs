//! GRIP: the control messages we return to Pushpin in WOH responses and the items we publish.

use serde::Serialize;
use serde_json::json;

/// The WebSocket extension we negotiate: GRIP with no prefix on normal messages, so plain JSON
/// text reaches clients untouched (Pushpin drops unprefixed messages under the default `m:`).
pub const WS_EXTENSION: &str = "grip; message-prefix=\"\"";

/// Pushpin hard-codes this prefix for control messages.
const CONTROL_PREFIX: &str = "c:";

/// A GRIP WebSocket control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Subscribe(String),
    Unsubscribe(String),
}

impl Control {
    /// The `c:{...}` text sent to Pushpin in a TEXT event.
    pub fn to_text(&self) -> String {
        let body = match self {
            Control::Subscribe(ch) => json!({"type": "subscribe", "channel": ch}),
            Control::Unsubscribe(ch) => json!({"type": "unsubscribe", "channel": ch}),
        };
        format!("{CONTROL_PREFIX}{body}")
    }
}

/// One GRIP publish item carrying a WebSocket text message.
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
    #[serde(rename = "ws-message")]
    pub ws_message: WsMessage,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WsMessage {
    pub content: String,
}

impl PublishItem {
    /// A text message for every subscriber of `channel`, ordered by `id`/`prev-id`.
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
                ws_message: WsMessage {
                    content: content.into(),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_have_the_c_prefix() {
        assert_eq!(
            Control::Subscribe("nyt-top?section=home".into()).to_text(),
            r#"c:{"channel":"nyt-top?section=home","type":"subscribe"}"#
        );
        assert!(Control::Unsubscribe("x".into())
            .to_text()
            .starts_with("c:{"));
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
