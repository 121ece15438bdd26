//! The hand-over wire format: snapshot requests of one channel as they travel to the replica
//! polling it (`POST /internal/snapshot`), and their parsed form.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::channel::{ChannelId, GripChannel};
use crate::pushpin::grip::Transports;

/// Snapshot requests of one channel as they travel between replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardedSnapshots {
    pub channel: String,
    pub requests: Vec<ForwardedSnapshot>,
    /// The sending replica's id (absent from replicas that predate it): a receiver that does
    /// not know it yet refreshes membership first, so the sender's Pushpin gets the answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// One subscriber's snapshot request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardedSnapshot {
    pub connection_channel: String,
    pub since: Option<u64>,
    /// `ws` or `sse`.
    pub transport: String,
    /// Milliseconds since the subscribe was handled (replicas share no clock).
    pub age_ms: u64,
}

impl ForwardedSnapshot {
    pub fn new(
        connection_channel: &GripChannel,
        since: Option<u64>,
        transport: Transports,
        age: Duration,
    ) -> ForwardedSnapshot {
        ForwardedSnapshot {
            connection_channel: connection_channel.to_string(),
            since,
            transport: match transport {
                Transports::Sse => "sse",
                _ => "ws",
            }
            .into(),
            age_ms: age.as_millis() as u64,
        }
    }
}

/// A hand-over as the receiving replica understands it.
#[derive(Debug, Clone)]
pub struct HandOver {
    pub channel: ChannelId,
    pub requests: Vec<HandedRequest>,
    /// The sending replica, when it said.
    pub from: Option<String>,
}

/// One subscriber's request, parsed.
#[derive(Debug, Clone)]
pub struct HandedRequest {
    /// Always a private channel: only a connection's own channel may receive a snapshot.
    pub connection_channel: GripChannel,
    pub since: Option<u64>,
    pub transport: Transports,
    /// How long ago the subscribe was handled.
    pub age: Duration,
}

/// Why a hand-over is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("channel must be a canonical channel id")]
    Channel,
    #[error("unknown transport {0:?} (ws or sse)")]
    Transport(String),
    #[error("connection_channel must be a connection's channel")]
    ConnectionChannel,
}

impl ForwardedSnapshots {
    pub fn new(channel: &ChannelId, requests: Vec<ForwardedSnapshot>) -> ForwardedSnapshots {
        ForwardedSnapshots {
            channel: channel.to_string(),
            requests,
            from: None,
        }
    }

    /// The same batch, saying it comes from replica `id`.
    pub fn sent_by(self, id: &str) -> ForwardedSnapshots {
        ForwardedSnapshots {
            from: Some(id.to_string()),
            ..self
        }
    }

    /// Parses the whole batch, or refuses it at the first bad field.
    pub fn parse(self) -> Result<HandOver, WireError> {
        let channel = ChannelId::parse(&self.channel).map_err(|_| WireError::Channel)?;
        let requests = self
            .requests
            .into_iter()
            .map(|r| {
                let transport = match r.transport.as_str() {
                    "ws" => Transports::WebSocket,
                    "sse" => Transports::Sse,
                    _ => return Err(WireError::Transport(r.transport)),
                };
                let connection_channel = match GripChannel::parse(&r.connection_channel) {
                    Ok(c) if c.is_private() => c,
                    _ => return Err(WireError::ConnectionChannel),
                };
                Ok(HandedRequest {
                    connection_channel,
                    since: r.since,
                    transport,
                    age: Duration::from_millis(r.age_ms),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(HandOver {
            channel,
            requests,
            from: self.from,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_and_bad_fields_are_refused() {
        let channel = ChannelId::parse("ch").unwrap();
        let conn = GripChannel::connection("c1");
        let wire = ForwardedSnapshots::new(
            &channel,
            vec![ForwardedSnapshot::new(
                &conn,
                Some(4),
                Transports::Sse,
                Duration::from_millis(30),
            )],
        );
        let parsed = wire.clone().parse().unwrap();
        assert_eq!(parsed.channel, channel);
        assert_eq!(parsed.from, None);
        let json = serde_json::to_value(wire.clone().sent_by("r2")).unwrap();
        assert_eq!(json["from"], "r2");
        let old: ForwardedSnapshots = serde_json::from_value(serde_json::json!({
            "channel": "ch", "requests": []
        }))
        .unwrap();
        assert_eq!(old.from, None, "a batch without `from` still parses");
        let from = serde_json::from_value::<ForwardedSnapshots>(json).unwrap();
        assert_eq!(from.parse().unwrap().from.as_deref(), Some("r2"));
        let r = &parsed.requests[0];
        assert_eq!(
            (&r.connection_channel, r.since, r.transport, r.age),
            (&conn, Some(4), Transports::Sse, Duration::from_millis(30))
        );
        let mut public = wire.clone();
        public.requests[0].connection_channel = "ch".into();
        assert_eq!(public.parse().unwrap_err(), WireError::ConnectionChannel);
        let mut carrier = wire.clone();
        carrier.requests[0].transport = "pigeon".into();
        assert_eq!(
            carrier.parse().unwrap_err(),
            WireError::Transport("pigeon".into())
        );
        let mut bad = wire;
        bad.channel = "_conn:x".into();
        assert_eq!(bad.parse().unwrap_err(), WireError::Channel);
    }
}
