//! WebSocket-over-HTTP codec: the `application/websocket-events` bodies Pushpin exchanges with us.
//!
//! An event is `NAME\r\n` (no content) or `NAME <hex length>\r\n<content>\r\n`. Pushpin batches
//! several events into one request body, so [`decode`] always returns every event in order.

use thiserror::Error;

/// The media type of WOH request and response bodies.
pub const CONTENT_TYPE: &str = "application/websocket-events";

/// A WebSocket event as carried over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Open,
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// Close payload: empty, or a 2-byte big-endian code followed by a UTF-8 reason.
    Close(Vec<u8>),
    Disconnect,
}

/// Why a body is not a valid sequence of WOH events.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event header at byte {offset} is not terminated by CRLF")]
    UnterminatedHeader { offset: usize },
    #[error("unknown event type {name:?} at byte {offset}")]
    UnknownEvent { name: String, offset: usize },
    #[error("invalid content length {value:?} at byte {offset}")]
    BadLength { value: String, offset: usize },
    #[error("event {name} at byte {offset} declares {declared} content bytes but only {available} remain")]
    Truncated {
        name: &'static str,
        offset: usize,
        declared: usize,
        available: usize,
    },
    #[error("content of event at byte {offset} is not followed by CRLF")]
    MissingContentTerminator { offset: usize },
    #[error("event {name} cannot carry content (byte {offset})")]
    UnexpectedContent { name: &'static str, offset: usize },
}

impl Event {
    /// The event's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Open => "OPEN",
            Event::Text(_) => "TEXT",
            Event::Binary(_) => "BINARY",
            Event::Ping(_) => "PING",
            Event::Pong(_) => "PONG",
            Event::Close(_) => "CLOSE",
            Event::Disconnect => "DISCONNECT",
        }
    }

    fn content(&self) -> Option<&[u8]> {
        match self {
            Event::Open | Event::Disconnect => None,
            Event::Text(c)
            | Event::Binary(c)
            | Event::Ping(c)
            | Event::Pong(c)
            | Event::Close(c) => Some(c),
        }
    }

    /// A text event from a string.
    pub fn text(s: impl Into<String>) -> Event {
        Event::Text(s.into().into_bytes())
    }

    /// A close event with a status code and reason.
    pub fn close(code: u16, reason: &str) -> Event {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        Event::Close(payload)
    }
}

/// Appends the wire form of `event` to `out`.
pub fn encode_into(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(event.name().as_bytes());
    match event.content() {
        // Control-like events with no payload use the short form, as Pushpin itself does.
        Some(c) if c.is_empty() && !matches!(event, Event::Text(_) | Event::Binary(_)) => {
            out.extend_from_slice(b"\r\n")
        }
        Some(c) => {
            out.extend_from_slice(format!(" {:x}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        None => out.extend_from_slice(b"\r\n"),
    }
}

/// Encodes a sequence of events into one body.
pub fn encode(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        encode_into(e, &mut out);
    }
    out
}

/// Decodes every event of a request body. An empty body (a keep-alive) yields no events.
pub fn decode(body: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let mut events = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let offset = pos;
        let eol = find_crlf(&body[pos..]).ok_or(DecodeError::UnterminatedHeader { offset })?;
        let header = &body[pos..pos + eol];
        pos += eol + 2;
        let (name, len) = match header.iter().position(|&b| b == b' ') {
            Some(sp) => (&header[..sp], Some(parse_len(&header[sp + 1..], offset)?)),
            None => (header, None),
        };
        let kind = Kind::from_name(name).ok_or_else(|| DecodeError::UnknownEvent {
            name: String::from_utf8_lossy(name).chars().take(32).collect(),
            offset,
        })?;
        let content = match len {
            None => Vec::new(),
            Some(n) => {
                let available = body.len() - pos;
                if n > available {
                    return Err(DecodeError::Truncated {
                        name: kind.name(),
                        offset,
                        declared: n,
                        available,
                    });
                }
                let c = body[pos..pos + n].to_vec();
                pos += n;
                if body.get(pos..pos + 2) != Some(b"\r\n") {
                    return Err(DecodeError::MissingContentTerminator { offset });
                }
                pos += 2;
                c
            }
        };
        events.push(kind.build(content, len.is_some(), offset)?);
    }
    Ok(events)
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

fn parse_len(hex: &[u8], offset: usize) -> Result<usize, DecodeError> {
    let bad = || DecodeError::BadLength {
        value: String::from_utf8_lossy(hex).chars().take(32).collect(),
        offset,
    };
    if hex.is_empty() || hex.len() > 8 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let s = std::str::from_utf8(hex).map_err(|_| bad())?;
    usize::from_str_radix(s, 16).map_err(|_| bad())
}

#[derive(Clone, Copy)]
enum Kind {
    Open,
    Text,
    Binary,
    Ping,
    Pong,
    Close,
    Disconnect,
}

impl Kind {
    fn from_name(name: &[u8]) -> Option<Kind> {
        Some(match name {
            b"OPEN" => Kind::Open,
            b"TEXT" => Kind::Text,
            b"BINARY" => Kind::Binary,
            b"PING" => Kind::Ping,
            b"PONG" => Kind::Pong,
            b"CLOSE" => Kind::Close,
            b"DISCONNECT" => Kind::Disconnect,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Open => "OPEN",
            Kind::Text => "TEXT",
            Kind::Binary => "BINARY",
            Kind::Ping => "PING",
            Kind::Pong => "PONG",
            Kind::Close => "CLOSE",
            Kind::Disconnect => "DISCONNECT",
        }
    }

    fn build(self, content: Vec<u8>, had_len: bool, offset: usize) -> Result<Event, DecodeError> {
        Ok(match self {
            Kind::Open | Kind::Disconnect if had_len && !content.is_empty() => {
                return Err(DecodeError::UnexpectedContent {
                    name: self.name(),
                    offset,
                })
            }
            Kind::Open => Event::Open,
            Kind::Disconnect => Event::Disconnect,
            Kind::Text => Event::Text(content),
            Kind::Binary => Event::Binary(content),
            Kind::Ping => Event::Ping(content),
            Kind::Pong => Event::Pong(content),
            Kind::Close => Event::Close(content),
        })
    }
}

/// Pushpin's shortest keep-alive interval: it raises anything below to this.
pub const MIN_KEEP_ALIVE_SECS: u64 = 20;

/// The `Keep-Alive-Interval` for one connection: a fixed value between three quarters of
/// `interval` and `interval` (whole seconds, at least Pushpin's 20), picked by the connection id.
///
/// Pushpin sends a connection's keep-alive an interval after its last request, so connections
/// opened together (a mass subscribe, everyone reconnecting after a restart) would send theirs
/// together forever; with periods that differ, their keep-alives drift apart. Never above
/// `interval`, so whatever waits for "one keep-alive" (token expiry, demand hints) still does.
pub fn keep_alive_secs(connection_id: &str, interval: std::time::Duration) -> u64 {
    use std::hash::{Hash, Hasher};
    let most = interval.as_secs();
    let least = (most * 3 / 4).max(MIN_KEEP_ALIVE_SECS);
    if most <= least {
        return most;
    }
    let mut hasher = std::hash::DefaultHasher::new();
    connection_id.hash(&mut hasher);
    least + hasher.finish() % (most - least + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_batched_events() {
        let body =
            b"OPEN\r\nTEXT 5\r\nhello\r\nPING 2\r\nhi\r\nCLOSE 2\r\n\x03\xe8\r\nDISCONNECT\r\n";
        assert_eq!(
            decode(body).unwrap(),
            vec![
                Event::Open,
                Event::text("hello"),
                Event::Ping(b"hi".to_vec()),
                Event::Close(vec![3, 0xe8]),
                Event::Disconnect
            ]
        );
    }

    #[test]
    fn empty_body_is_keep_alive() {
        assert_eq!(decode(b"").unwrap(), vec![]);
    }

    #[test]
    fn content_may_contain_crlf() {
        let body = b"TEXT 4\r\n\r\n\r\n\r\n";
        assert_eq!(
            decode(body).unwrap(),
            vec![Event::Text(b"\r\n\r\n".to_vec())]
        );
    }

    #[test]
    fn encodes_like_pushpin() {
        let out = encode(&[
            Event::Open,
            Event::text("hello world"),
            Event::close(4001, "bye"),
        ]);
        assert_eq!(
            out,
            b"OPEN\r\nTEXT b\r\nhello world\r\nCLOSE 5\r\n\x0f\xa1bye\r\n".to_vec()
        );
        assert_eq!(encode(&[Event::Pong(vec![])]), b"PONG\r\n".to_vec());
        assert_eq!(encode(&[Event::text("")]), b"TEXT 0\r\n\r\n".to_vec());
    }

    #[test]
    fn reports_malformed_bodies() {
        assert!(matches!(
            decode(b"OPEN"),
            Err(DecodeError::UnterminatedHeader { offset: 0 })
        ));
        assert!(matches!(
            decode(b"FOO\r\n"),
            Err(DecodeError::UnknownEvent { .. })
        ));
        assert!(matches!(
            decode(b"TEXT zz\r\nab\r\n"),
            Err(DecodeError::BadLength { .. })
        ));
        assert!(matches!(
            decode(b"TEXT 10\r\nab\r\n"),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode(b"TEXT 2\r\nabXX"),
            Err(DecodeError::MissingContentTerminator { .. })
        ));
        assert!(matches!(
            decode(b"OPEN 1\r\nx\r\n"),
            Err(DecodeError::UnexpectedContent { .. })
        ));
        assert!(matches!(
            decode(b"TEXT ffffffffff\r\n"),
            Err(DecodeError::BadLength { .. })
        ));
    }

    fn event_strategy() -> impl Strategy<Value = Event> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..64);
        prop_oneof![
            Just(Event::Open),
            Just(Event::Disconnect),
            bytes.clone().prop_map(Event::Text),
            bytes.clone().prop_map(Event::Binary),
            bytes.clone().prop_map(Event::Ping),
            bytes.clone().prop_map(Event::Pong),
            bytes.prop_map(Event::Close),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&body);
        }

        #[test]
        fn near_valid_bodies_never_panic(prefix in "(OPEN|TEXT|PING|CLOSE|DISCONNECT)( [0-9a-fA-F]{0,9})?\r\n", tail in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut body = prefix.into_bytes();
            body.extend(tail);
            let _ = decode(&body);
        }

        #[test]
        fn encode_then_decode_round_trips(events in proptest::collection::vec(event_strategy(), 0..8)) {
            prop_assert_eq!(decode(&encode(&events)).unwrap(), events);
        }
    }

    #[test]
    fn keep_alive_intervals_spread_over_the_last_quarter_and_stay_fixed_per_connection() {
        let interval = std::time::Duration::from_secs(40);
        let picked: Vec<u64> = (0..1000)
            .map(|i| keep_alive_secs(&format!("conn-{i}"), interval))
            .collect();
        assert!(picked.iter().all(|s| (30..=40).contains(s)), "{picked:?}");
        let distinct: std::collections::BTreeSet<_> = picked.iter().collect();
        assert_eq!(distinct.len(), 11, "every second of 30..=40 is used");
        assert_eq!(
            keep_alive_secs("conn-7", interval),
            picked[7],
            "fixed per connection"
        );
        // At or near Pushpin's minimum there is no room below: the interval as configured.
        for secs in [20, 21, 26] {
            let interval = std::time::Duration::from_secs(secs);
            let all: Vec<u64> = (0..50)
                .map(|i| keep_alive_secs(&format!("c{i}"), interval))
                .collect();
            assert!(
                all.iter().all(|s| (20..=secs).contains(s)),
                "{secs}: {all:?}"
            );
        }
        assert_eq!(keep_alive_secs("c", std::time::Duration::from_secs(20)), 20);
    }
}
