//! GRIP channel names: a channel's public GRIP channel, or the private one of a single
//! WebSocket connection or SSE stream.

use std::fmt;

use thiserror::Error;

use super::{ChannelId, ParseError};

/// A GRIP channel as Pushpin names it: a public channel that every subscriber of a
/// [`ChannelId`] shares, or a private one that reaches a single client. Private names start
/// with `_`, which no channel name may, so the two kinds can never clash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GripChannel {
    /// Every subscriber of one channel.
    Public(ChannelId),
    /// One WebSocket connection (`_conn:<Connection-Id>`): its snapshots and resumes.
    Connection(String),
    /// One SSE stream (`_sse:<random>`): its snapshot or missed events.
    Sse(String),
}

const CONNECTION_PREFIX: &str = "_conn:";
const SSE_PREFIX: &str = "_sse:";

/// Why a string is not a GRIP channel of ours.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum GripChannelError {
    #[error("unknown private channel kind")]
    UnknownPrivate,
    #[error("empty private channel id")]
    EmptyPrivate,
    #[error(transparent)]
    Public(#[from] ParseError),
}

impl GripChannel {
    /// The private channel of the connection with Pushpin's `Connection-Id`.
    pub fn connection(connection_id: &str) -> GripChannel {
        GripChannel::Connection(connection_id.to_string())
    }

    /// A new private channel for one SSE stream.
    pub fn new_sse() -> GripChannel {
        GripChannel::Sse(format!("{:032x}", rand::random::<u128>()))
    }

    /// Reads a channel name from Pushpin (stats reports) or a peer replica.
    pub fn parse(s: &str) -> Result<GripChannel, GripChannelError> {
        let private = |rest: &str, make: fn(String) -> GripChannel| match rest {
            "" => Err(GripChannelError::EmptyPrivate),
            id => Ok(make(id.to_string())),
        };
        if let Some(rest) = s.strip_prefix(CONNECTION_PREFIX) {
            private(rest, GripChannel::Connection)
        } else if let Some(rest) = s.strip_prefix(SSE_PREFIX) {
            private(rest, GripChannel::Sse)
        } else if s.starts_with('_') {
            Err(GripChannelError::UnknownPrivate)
        } else {
            Ok(GripChannel::Public(ChannelId::parse(s)?))
        }
    }

    /// Whether it reaches a single client rather than a channel's subscribers.
    pub fn is_private(&self) -> bool {
        !matches!(self, GripChannel::Public(_))
    }

    /// The public channel, if it is one.
    pub fn public(&self) -> Option<&ChannelId> {
        match self {
            GripChannel::Public(id) => Some(id),
            _ => None,
        }
    }
}

impl From<ChannelId> for GripChannel {
    fn from(id: ChannelId) -> GripChannel {
        GripChannel::Public(id)
    }
}

impl fmt::Display for GripChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GripChannel::Public(id) => f.write_str(id.as_str()),
            GripChannel::Connection(id) => write!(f, "{CONNECTION_PREFIX}{id}"),
            GripChannel::Sse(id) => write!(f, "{SSE_PREFIX}{id}"),
        }
    }
}
