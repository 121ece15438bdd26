//! The opaque history cursor: where each channel of a read stopped (its last event's time and
//! seq), bound to the channel set it was made for. Base64url of a small binary form:
//! version, a hash of the channel ids, then LEB128 (time, seq) per channel.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::Position;
use crate::channel::ChannelId;

const VERSION: u8 = 1;
/// Longest cursor text accepted (100 channels take about 1.5 KB).
pub const MAX_CURSOR_CHARS: usize = 8192;

/// Why a cursor was refused (the API says `invalid_cursor` with this text).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CursorError {
    #[error("the cursor is not one this API returned")]
    Malformed,
    #[error("the cursor was made for another set of channels")]
    OtherChannels,
}

/// A position per channel, in the order of the request's channels.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub positions: Vec<Position>,
}

/// 8 bytes identifying the channel set (order matters: positions follow it).
fn set_hash(channels: &[ChannelId]) -> [u8; 8] {
    let mut h = Sha256::new();
    for c in channels {
        h.update(c.as_str().as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let mut out = [0; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        let part = u64::from(byte & 0x7f);
        if shift == 63 && part > 1 {
            return None; // Over 64 bits.
        }
        n |= part << shift;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

impl Cursor {
    /// Every channel at its start (before its first event, or at `from`).
    pub fn start(channels: usize) -> Cursor {
        Cursor {
            positions: vec![Position::default(); channels],
        }
    }

    pub fn encode(&self, channels: &[ChannelId]) -> String {
        let mut bytes = vec![VERSION];
        bytes.extend_from_slice(&set_hash(channels));
        for p in &self.positions {
            put_varint(&mut bytes, p.time_ms);
            put_varint(&mut bytes, p.seq);
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The cursor `text` for exactly these `channels`.
    pub fn decode(text: &str, channels: &[ChannelId]) -> Result<Cursor, CursorError> {
        if text.len() > MAX_CURSOR_CHARS {
            return Err(CursorError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| CursorError::Malformed)?;
        let (&version, rest) = bytes.split_first().ok_or(CursorError::Malformed)?;
        if version != VERSION || rest.len() < 8 {
            return Err(CursorError::Malformed);
        }
        let (hash, mut rest) = rest.split_at(8);
        let mut positions = Vec::new();
        while !rest.is_empty() {
            let time_ms = take_varint(&mut rest).ok_or(CursorError::Malformed)?;
            let seq = take_varint(&mut rest).ok_or(CursorError::Malformed)?;
            positions.push(Position { time_ms, seq });
        }
        if hash != set_hash(channels) || positions.len() != channels.len() {
            return Err(CursorError::OtherChannels);
        }
        Ok(Cursor { positions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(names: &[&str]) -> Vec<ChannelId> {
        names.iter().map(|n| ChannelId::parse(n).unwrap()).collect()
    }

    #[test]
    fn a_cursor_round_trips_for_its_channels_only() {
        let set = ids(&["a", "b?x=1"]);
        let c = Cursor {
            positions: vec![
                Position {
                    time_ms: 1_764_662_400_123,
                    seq: 7,
                },
                Position::default(),
            ],
        };
        let text = c.encode(&set);
        assert_eq!(Cursor::decode(&text, &set), Ok(c.clone()));
        assert_eq!(
            Cursor::decode(&text, &ids(&["b?x=1", "a"])),
            Err(CursorError::OtherChannels)
        );
        assert_eq!(
            Cursor::decode(&text, &ids(&["a"])),
            Err(CursorError::OtherChannels)
        );
        assert_eq!(Cursor::decode("", &set), Err(CursorError::Malformed));
        assert_eq!(Cursor::decode("!!!", &set), Err(CursorError::Malformed));
        assert!(
            Cursor::decode(&text[..text.len() - 2], &set).is_err(),
            "a truncated cursor is refused"
        );
    }

    proptest! {
        #[test]
        fn any_positions_round_trip(p in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..20)) {
            let set: Vec<ChannelId> = (0..p.len()).map(|i| ChannelId::parse(&format!("c{i}")).unwrap()).collect();
            let c = Cursor { positions: p.iter().map(|&(time_ms, seq)| Position { time_ms, seq }).collect() };
            prop_assert_eq!(Cursor::decode(&c.encode(&set), &set), Ok(c));
        }

        #[test]
        fn any_text_is_refused_or_decodes(text in ".{0,200}") {
            let set = ids(&["a"]);
            let _ = Cursor::decode(&text, &set);
        }

        #[test]
        fn any_bytes_are_refused_or_decode(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let set = ids(&["a"]);
            let _ = Cursor::decode(&URL_SAFE_NO_PAD.encode(bytes), &set);
        }
    }
}
