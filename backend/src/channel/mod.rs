//! Channel ids: the canonical, reversible GRIP channel name `name` or `name?k=v&k2=v2`.
//!
//! Params are validated against the fetcher's declared params, defaults are applied, keys are
//! sorted and keys and values are percent-encoded, so two requests that mean the same thing share
//! one id (one GRIP channel, one poller) and any replica can rebuild the fetch from the id alone.
//! A fetcher that declares no params takes free-form ones (`free`), canonicalised the same way.

mod free;
mod grip_channel;
mod normalize;
mod tally;
#[cfg(test)]
mod tests;

pub use free::{FreeLimit, FreeParams, ParamRules, RESERVED_PARAMS};
pub use grip_channel::{GripChannel, GripChannelError};
pub use normalize::{canonical_number, ParamKind};
pub use tally::Tally;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// Everything but RFC 3986 unreserved characters is encoded, so `?`, `&`, `=`, `%`, space and
/// non-ASCII in a value can never change the structure of an id.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Longest channel name a fetcher may declare.
pub const MAX_NAME_LEN: usize = 64;
/// Longest param value accepted from a client (before encoding).
pub const MAX_VALUE_LEN: usize = 256;
/// Longest channel id: keeps GRIP control messages far below Pushpin's 16 KiB frame and the
/// connection meta header small.
pub const MAX_ID_LEN: usize = 512;

/// How a fetcher declares one param.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSpec {
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `number` values are kept in canonical form (see `normalize`).
    #[serde(default, rename = "type", skip_serializing_if = "ParamKind::is_string")]
    pub kind: ParamKind,
    /// When set, other values are refused at subscribe (`invalid_params`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
}

/// The declared params of one channel type, by name.
pub type ParamSpecs = BTreeMap<String, ParamSpec>;

/// A validated channel: its name and its full, canonical params. Cheap to clone and to use as a
/// map key: the canonical text is built once, when the id is made.
#[derive(Clone)]
pub struct ChannelId(Arc<Parts>);

/// Only the canonical text is kept (the name is its prefix, the params are decoded from it on
/// request): tens of thousands of ids stay small.
struct Parts {
    canonical: Box<str>,
    name_len: usize,
}

/// Why params from a client do not make a channel.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParamError {
    #[error("params must be a JSON object")]
    NotAnObject,
    #[error("unknown param {0:?}; this channel accepts: {1}")]
    Unknown(String, String),
    #[error("missing required param {0:?}")]
    Missing(String),
    #[error("param {0:?} must be a string, number or boolean")]
    BadType(String),
    #[error("param {0:?} is longer than {MAX_VALUE_LEN} characters")]
    TooLong(String),
    #[error("param {0:?} must not be empty")]
    Empty(String),
    #[error("the channel id would exceed {MAX_ID_LEN} bytes")]
    IdTooLong,
    #[error("param {0:?} must be a decimal number")]
    NotANumber(String),
    #[error("param {0:?} must be one of: {1}")]
    NotAllowed(String, String),
    #[error("param name {0:?} must be ASCII letters, digits, '-', '_' or '.'")]
    BadName(String),
    #[error("param {0:?} is reserved by the HTTP API")]
    Reserved(String),
    /// A free-form bound: which, and its value.
    #[error("{}", free_limit_text(*.0, *.1))]
    FreeLimit(FreeLimit, usize),
}

fn free_limit_text(limit: FreeLimit, max: usize) -> String {
    match limit {
        FreeLimit::Count => format!("at most {max} params are accepted"),
        FreeLimit::NameLength => format!("param names are at most {max} characters"),
        FreeLimit::ValueLength => format!("param values are at most {max} characters"),
    }
}

impl ParamError {
    /// The free-form bound this error is about, if any.
    pub fn free_limit(&self) -> Option<FreeLimit> {
        match self {
            ParamError::FreeLimit(limit, _) => Some(*limit),
            _ => None,
        }
    }
}

/// Why a string is not a canonical channel id.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("invalid channel name")]
    BadName,
    #[error("malformed param {0:?}")]
    BadParam(String),
    #[error("channel id is not in canonical form")]
    NotCanonical,
}

/// True for names a fetcher may declare: ASCII letters, digits, `-`, `_`, `.`, starting with a
/// letter or digit.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= MAX_NAME_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl ChannelId {
    /// Builds the canonical id for `name` from client params (a JSON object or absent),
    /// validated against a channel type's rules: its declared params, or free-form ones.
    pub fn from_request_with(
        name: &str,
        raw: Option<&Value>,
        rules: &ParamRules,
    ) -> Result<ChannelId, ParamError> {
        let free = match rules {
            ParamRules::Declared(specs) => return ChannelId::from_request(name, raw, specs),
            ParamRules::Free(free) => free,
        };
        let params = match raw {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(m)) => free.accept(m)?,
            Some(_) => return Err(ParamError::NotAnObject),
        };
        let id = ChannelId::new(name.to_string(), params);
        if id.as_str().len() > MAX_ID_LEN {
            return Err(ParamError::IdTooLong);
        }
        Ok(id)
    }

    /// Builds the canonical id for `name` from client params (a JSON object or absent),
    /// validated against `specs`.
    pub fn from_request(
        name: &str,
        raw: Option<&Value>,
        specs: &ParamSpecs,
    ) -> Result<ChannelId, ParamError> {
        let empty = serde_json::Map::new();
        let given = match raw {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err(ParamError::NotAnObject),
        };
        if let Some(unknown) = given.keys().find(|k| !specs.contains_key(*k)) {
            let accepted = if specs.is_empty() {
                "no params".to_string()
            } else {
                specs.keys().cloned().collect::<Vec<_>>().join(", ")
            };
            return Err(ParamError::Unknown(truncate(unknown, 64), accepted));
        }
        let mut params = BTreeMap::new();
        for (key, spec) in specs {
            let value = match given.get(key) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                Some(_) => return Err(ParamError::BadType(key.clone())),
            };
            if let Some(v) = &value {
                if v.chars().count() > MAX_VALUE_LEN {
                    return Err(ParamError::TooLong(key.clone()));
                }
                if v.is_empty() && spec.required {
                    return Err(ParamError::Empty(key.clone()));
                }
            }
            let value = match value {
                Some(v) => Some(spec.normalize(key, v)?),
                None => None,
            };
            match value.or_else(|| spec.default.clone()) {
                Some(v) => {
                    params.insert(key.clone(), v);
                }
                None if spec.required => return Err(ParamError::Missing(key.clone())),
                None => {}
            }
        }
        let id = ChannelId::new(name.to_string(), params);
        if id.as_str().len() > MAX_ID_LEN {
            return Err(ParamError::IdTooLong);
        }
        Ok(id)
    }

    /// Parses a canonical id back into name and params. Non-canonical spellings are rejected so
    /// that one meaning has exactly one id.
    pub fn parse(s: &str) -> Result<ChannelId, ParseError> {
        let (name, query) = match s.split_once('?') {
            Some((n, q)) => (n, Some(q)),
            None => (s, None),
        };
        if !is_valid_name(name) {
            return Err(ParseError::BadName);
        }
        let mut params = BTreeMap::new();
        if let Some(q) = query {
            for pair in q.split('&') {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| ParseError::BadParam(truncate(pair, 64)))?;
                let decode = |x: &str| {
                    percent_decode_str(x)
                        .decode_utf8()
                        .map(|c| c.into_owned())
                        .map_err(|_| ParseError::BadParam(truncate(pair, 64)))
                };
                let key = decode(k)?;
                if key.is_empty() || params.insert(key, decode(v)?).is_some() {
                    return Err(ParseError::NotCanonical);
                }
            }
        }
        let id = ChannelId::new(name.to_string(), params);
        if id.as_str() != s {
            return Err(ParseError::NotCanonical);
        }
        Ok(id)
    }

    fn new(name: String, params: BTreeMap<String, String>) -> ChannelId {
        let name_len = name.len();
        let mut canonical = name;
        for (i, (k, v)) in params.iter().enumerate() {
            canonical.push(if i == 0 { '?' } else { '&' });
            canonical.extend(utf8_percent_encode(k, COMPONENT));
            canonical.push('=');
            canonical.extend(utf8_percent_encode(v, COMPONENT));
        }
        ChannelId(Arc::new(Parts {
            canonical: canonical.into_boxed_str(),
            name_len,
        }))
    }

    pub fn name(&self) -> &str {
        &self.0.canonical[..self.0.name_len]
    }

    /// The params, decoded from the canonical text (which only valid ids have).
    pub fn params(&self) -> BTreeMap<String, String> {
        let query = self.0.canonical[self.0.name_len..].strip_prefix('?');
        let decode = |x: &str| percent_decode_str(x).decode_utf8_lossy().into_owned();
        query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect()
    }

    /// The canonical id: the GRIP channel name and the store's key.
    pub fn as_str(&self) -> &str {
        &self.0.canonical
    }
}

// One meaning has one canonical text, so equality and hashing use it alone.
impl PartialEq for ChannelId {
    fn eq(&self, other: &ChannelId) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ChannelId {}

impl PartialEq<&str> for ChannelId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Hash for ChannelId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

/// By canonical text, like the ids' strings (one `memcmp`: sets of thousands of ids are
/// sorted every scheduler pass).
impl Ord for ChannelId {
    fn cmp(&self, other: &ChannelId) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for ChannelId {
    fn partial_cmp(&self, other: &ChannelId) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ChannelId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<ChannelId, ParseError> {
        ChannelId::parse(s)
    }
}

/// Percent-encodes a key or value exactly as channel ids do (everything but unreserved).
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
