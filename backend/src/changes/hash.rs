//! Content hashes: a 128-bit XXH3 of a canonical binary encoding of the item's JSON value,
//! stored as `x3:` and 32 hex digits. Records written before it hold the hex SHA-256 of the
//! item's JSON text (no prefix); [`ContentHash::matches`] compares with both.
//!
//! The encoding walks the value (no JSON text is produced): a tag per type, strings and
//! containers prefixed with their length, object keys in map order (sorted: serde_json's `Map`
//! is a `BTreeMap` without its `preserve_order` feature), so it is prefix-free and two values
//! that are equal (`==`) encode, hence hash, equally. XXH3 is not cryptographic: a collision
//! would hide one update, but a stored hash is only ever compared with a new version of the same
//! item, whose author controls its content anyway, and two different versions of one item hash
//! equally with a probability of about 2^-128.

use std::fmt;

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_128;

/// The prefix of the current scheme's stored form.
pub const PREFIX: &str = "x3:";
const TEXT_LEN: usize = PREFIX.len() + 32;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// The hash of one item's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentHash(u128);

/// Hashes items, reusing one encoding buffer.
#[derive(Debug, Default)]
pub struct Hasher {
    buf: Vec<u8>,
}

impl Hasher {
    pub fn hash(&mut self, item: &Map<String, Value>) -> ContentHash {
        self.buf.clear();
        encode_map(&mut self.buf, item);
        ContentHash(xxh3_128(&self.buf))
    }
}

impl ContentHash {
    /// The stored form, `x3:` and 32 lowercase hex digits, without allocating.
    fn text(self) -> [u8; TEXT_LEN] {
        let mut out = [0u8; TEXT_LEN];
        out[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
        let bytes = self.0.to_be_bytes();
        for (i, b) in bytes.iter().enumerate() {
            out[PREFIX.len() + 2 * i] = HEX[(b >> 4) as usize];
            out[PREFIX.len() + 2 * i + 1] = HEX[(b & 0xf) as usize];
        }
        out
    }

    /// The stored form as a string (what `StoredItem::hash` holds).
    pub fn stored(self) -> String {
        String::from(std::str::from_utf8(&self.text()).expect("ASCII"))
    }

    /// Whether `stored` (a `StoredItem::hash`) is the hash of the same content as `item`,
    /// whose hash this is; `stored` may be of the current scheme or the older SHA-256 one.
    pub fn matches(self, stored: &str, item: &Map<String, Value>) -> Matches {
        if stored.starts_with(PREFIX) {
            return match stored.as_bytes() == self.text() {
                true => Matches::Same,
                false => Matches::Differs,
            };
        }
        match stored == legacy_hash(item) {
            true => Matches::SameLegacy,
            false => Matches::Differs,
        }
    }
}

/// The result of [`ContentHash::matches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matches {
    Same,
    /// Same content, but the stored hash is of the older scheme (worth replacing).
    SameLegacy,
    Differs,
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text();
        f.write_str(std::str::from_utf8(&text).expect("ASCII"))
    }
}

/// The hash older versions stored: hex SHA-256 of the item's JSON text (keys sorted).
pub fn legacy_hash(item: &Map<String, Value>) -> String {
    let digest = Sha256::digest(serde_json::to_vec(item).expect("items serialize"));
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
    out
}

/// A length as LEB128: seven bits a byte, the high bit set on all but the last.
fn encode_len(buf: &mut Vec<u8>, len: usize) {
    let mut n = len as u64;
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

fn encode_str(buf: &mut Vec<u8>, s: &str) {
    encode_len(buf, s.len());
    buf.extend_from_slice(s.as_bytes());
}

fn encode_map(buf: &mut Vec<u8>, map: &Map<String, Value>) {
    buf.push(b'o');
    encode_len(buf, map.len());
    for (key, value) in map {
        encode_str(buf, key);
        encode_value(buf, value);
    }
}

fn encode_array(buf: &mut Vec<u8>, values: &[Value]) {
    buf.push(b'a');
    encode_len(buf, values.len());
    for v in values {
        encode_value(buf, v);
    }
}

#[inline(always)]
fn encode_number(buf: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        buf.push(b'u');
        buf.extend_from_slice(&u.to_le_bytes());
    } else if let Some(i) = n.as_i64() {
        buf.push(b'i');
        buf.extend_from_slice(&i.to_le_bytes());
    } else {
        // -0.0 == 0.0, so both encode as 0.0 (a JSON number is never NaN).
        let f = n.as_f64().unwrap_or(0.0);
        let f = if f == 0.0 { 0.0 } else { f };
        buf.push(b'f');
        buf.extend_from_slice(&f.to_bits().to_le_bytes());
    }
}

/// Inlined (with `encode_number`) into the loops over members: a scalar, what most members
/// are, costs no call; only a nested container recurses.
#[inline(always)]
fn encode_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => buf.push(b'n'),
        Value::Bool(false) => buf.push(b'F'),
        Value::Bool(true) => buf.push(b'T'),
        Value::Number(n) => encode_number(buf, n),
        Value::String(s) => {
            buf.push(b's');
            encode_str(buf, s);
        }
        Value::Array(values) => encode_array(buf, values),
        Value::Object(map) => encode_map(buf, map),
    }
}

#[cfg(test)]
#[path = "hash_tests.rs"]
mod tests;
