//! Channel ids: the canonical, reversible GRIP channel name `name` or `name?k=v&k2=v2`.
//!
//! Params are validated against the fetcher's declared params, defaults are applied, keys are
//! sorted and keys and values are percent-encoded, so two requests that mean the same thing share
//! one id (one GRIP channel, one poller) and any replica can rebuild the fetch from the id alone.

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
}

/// The declared params of one channel type, by name.
pub type ParamSpecs = BTreeMap<String, ParamSpec>;

/// A validated channel: its name and its full, canonical params. Cheap to clone and to use as a
/// map key: the canonical text is built once, when the id is made.
#[derive(Clone)]
pub struct ChannelId(Arc<Parts>);

struct Parts {
    name: String,
    params: BTreeMap<String, String>,
    canonical: String,
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
        let mut canonical = name.clone();
        for (i, (k, v)) in params.iter().enumerate() {
            canonical.push(if i == 0 { '?' } else { '&' });
            canonical.extend(utf8_percent_encode(k, COMPONENT));
            canonical.push('=');
            canonical.extend(utf8_percent_encode(v, COMPONENT));
        }
        ChannelId(Arc::new(Parts {
            name,
            params,
            canonical,
        }))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.0.params
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

/// By name, then params: a catalog lists a channel's variants together.
impl Ord for ChannelId {
    fn cmp(&self, other: &ChannelId) -> Ordering {
        (self.name(), self.params()).cmp(&(other.name(), other.params()))
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

/// Percent-encodes a key or value exactly as channel ids do (everything but unreserved).
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn specs() -> ParamSpecs {
        let mut s = ParamSpecs::new();
        s.insert(
            "section".into(),
            ParamSpec {
                default: Some("home".into()),
                ..Default::default()
            },
        );
        s.insert(
            "lat".into(),
            ParamSpec {
                required: true,
                ..Default::default()
            },
        );
        s.insert("opt".into(), ParamSpec::default());
        s
    }

    #[test]
    fn defaults_are_applied_and_keys_sorted() {
        let a = ChannelId::from_request("w", Some(&json!({"lat": "1.5"})), &specs()).unwrap();
        let b =
            ChannelId::from_request("w", Some(&json!({"section": "home", "lat": 1.5})), &specs())
                .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "w?lat=1.5&section=home");
    }

    #[test]
    fn no_params_gives_the_bare_name() {
        let id = ChannelId::from_request("hn-top", None, &ParamSpecs::new()).unwrap();
        assert_eq!(id.to_string(), "hn-top");
        assert_eq!(ChannelId::parse("hn-top").unwrap(), id);
    }

    #[test]
    fn values_are_percent_encoded() {
        let id =
            ChannelId::from_request("w", Some(&json!({"lat": "a&b=c?d %é"})), &specs()).unwrap();
        assert_eq!(
            id.to_string(),
            "w?lat=a%26b%3Dc%3Fd%20%25%C3%A9&section=home"
        );
        assert_eq!(ChannelId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn invalid_params_are_rejected() {
        let s = specs();
        assert_eq!(
            ChannelId::from_request("w", Some(&json!({})), &s),
            Err(ParamError::Missing("lat".into()))
        );
        assert!(matches!(
            ChannelId::from_request("w", Some(&json!({"lat": 1, "bogus": 1})), &s),
            Err(ParamError::Unknown(..))
        ));
        assert_eq!(
            ChannelId::from_request("w", Some(&json!({"lat": [1]})), &s),
            Err(ParamError::BadType("lat".into()))
        );
        assert_eq!(
            ChannelId::from_request("w", Some(&json!("lat")), &s),
            Err(ParamError::NotAnObject)
        );
        assert_eq!(
            ChannelId::from_request("w", Some(&json!({"lat": ""})), &s),
            Err(ParamError::Empty("lat".into()))
        );
        assert_eq!(
            ChannelId::from_request("w", Some(&json!({"lat": "x".repeat(300)})), &s),
            Err(ParamError::TooLong("lat".into()))
        );
    }

    #[test]
    fn non_canonical_ids_do_not_parse() {
        for bad in [
            "w?b=1&a=2",
            "w?a=%41",
            "w?a=1&a=1",
            "w?a",
            "-w",
            "",
            "w?a=%ZZ",
            "w?=1",
            "w?a=1&",
        ] {
            assert!(ChannelId::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn names_are_restricted() {
        assert!(is_valid_name("nyt-top"));
        assert!(is_valid_name("a.b_c-1"));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("a?b"));
        assert!(!is_valid_name(&"a".repeat(65)));
    }

    proptest! {
        #[test]
        fn round_trips_and_values_cannot_inject(
            values in proptest::collection::btree_map("[a-z]{1,3}", "\\PC{0,20}", 0..4)
        ) {
            let mut specs = ParamSpecs::new();
            for k in values.keys() { specs.insert(k.clone(), ParamSpec::default()); }
            let raw = Value::Object(values.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect());
            let id = ChannelId::from_request("ch", Some(&raw), &specs).unwrap();
            let text = id.to_string();
            // Structure characters appear only as separators.
            prop_assert_eq!(text.matches('?').count(), usize::from(!values.is_empty()));
            prop_assert_eq!(text.matches('=').count(), values.len());
            prop_assert_eq!(text.matches('&').count(), values.len().saturating_sub(1));
            prop_assert!(text.is_ascii() && !text.contains(' '));
            let back = ChannelId::parse(&text).unwrap();
            prop_assert_eq!(back.params(), &values);
        }

        #[test]
        fn same_meaning_same_id(lat in "[0-9.]{1,6}", spell_default in any::<bool>(), number in any::<bool>()) {
            let mut raw = serde_json::Map::new();
            raw.insert("lat".into(), json!(lat));
            if spell_default { raw.insert("section".into(), json!("home")); }
            if number { raw.insert("opt".into(), Value::Null); }
            let a = ChannelId::from_request("w", Some(&Value::Object(raw)), &specs()).unwrap();
            let b = ChannelId::from_request("w", Some(&json!({"lat": lat})), &specs()).unwrap();
            prop_assert_eq!(a.to_string(), b.to_string());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = ChannelId::parse(&s);
            if let Ok(grip) = GripChannel::parse(&s) {
                prop_assert_eq!(grip.to_string(), s);
            }
        }
    }

    #[test]
    fn grip_channels_round_trip_by_kind() {
        let public = GripChannel::parse("w?lat=1").unwrap();
        assert_eq!(public.public().map(ChannelId::as_str), Some("w?lat=1"));
        assert!(!public.is_private());
        let conn = GripChannel::parse("_conn:abc").unwrap();
        assert_eq!(conn, GripChannel::connection("abc"));
        assert!(conn.is_private());
        assert_eq!(conn.to_string(), "_conn:abc");
        let sse = GripChannel::new_sse();
        assert!(sse.to_string().starts_with("_sse:"));
        assert_eq!(GripChannel::parse(&sse.to_string()).unwrap(), sse);
        assert_ne!(GripChannel::new_sse(), sse);
    }

    #[test]
    fn unknown_grip_channels_are_refused() {
        assert_eq!(
            GripChannel::parse("_x:1"),
            Err(GripChannelError::UnknownPrivate)
        );
        assert_eq!(
            GripChannel::parse("_conn:"),
            Err(GripChannelError::EmptyPrivate)
        );
        assert!(GripChannel::parse("a?b=%zz").is_err());
    }

    #[test]
    fn ids_compare_by_meaning_and_clone_cheaply() {
        let a = ChannelId::parse("w?lat=1").unwrap();
        let b = ChannelId::from_request("w", Some(&json!({"lat": 1})), &specs()).unwrap();
        assert_ne!(a, b, "defaults make b's params differ");
        let c = a.clone();
        assert_eq!(a, c);
        assert!(std::ptr::eq(a.as_str(), c.as_str()));
        let mut sorted = [
            ChannelId::parse("a-b").unwrap(),
            ChannelId::parse("a?x=1").unwrap(),
        ];
        sorted.sort();
        assert_eq!(sorted[0].as_str(), "a?x=1", "by name first");
    }
}
