//! What a verified token grants: its subject, its expiry, the channels it may subscribe to
//! (`channels`) and the push channels it may publish to (`publish`), as channel patterns. The
//! two rights are separate: `publish` grants no subscribe, `channels` no publish.
//!
//! Pattern syntax (one string per entry of the `channels` and `publish` claims):
//! - `*` — every channel;
//! - `nyt-top` — every channel of that name, whatever its params;
//! - `w?lat=5&u=c` — exactly that canonical channel id (params sorted, values
//!   percent-encoded, defaults spelled out: the id `GET /channels/{name}` reports);
//! - `prefix*` — every canonical id starting with `prefix` (`usgs-*`, `w?lat=5&*`).
//!
//! A `*` anywhere but at the end makes the pattern (and so the token) invalid.

use serde_json::Value;

use crate::channel::{is_valid_name, ChannelId, MAX_ID_LEN};

/// Most entries a `channels` claim may hold.
pub const MAX_PATTERNS: usize = 256;

/// One entry of the `channels` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelPattern {
    /// `*`.
    Any,
    /// A bare name: that channel with any params.
    Name(String),
    /// A canonical id with params: exactly that channel.
    Exact(ChannelId),
    /// `prefix*`: canonical ids starting with the prefix.
    Prefix(String),
}

/// Why a pattern is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("empty channel pattern")]
    Empty,
    #[error("channel pattern too long")]
    TooLong,
    #[error("`*` may only end a channel pattern")]
    InnerWildcard,
    #[error("not a channel name or canonical channel id")]
    NotAChannel,
}

impl ChannelPattern {
    pub fn parse(s: &str) -> Result<ChannelPattern, PatternError> {
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        if s.len() > MAX_ID_LEN + 1 {
            return Err(PatternError::TooLong);
        }
        if s == "*" {
            return Ok(ChannelPattern::Any);
        }
        if let Some(prefix) = s.strip_suffix('*') {
            if prefix.contains('*') {
                return Err(PatternError::InnerWildcard);
            }
            return Ok(ChannelPattern::Prefix(prefix.to_string()));
        }
        if s.contains('*') {
            return Err(PatternError::InnerWildcard);
        }
        if is_valid_name(s) {
            return Ok(ChannelPattern::Name(s.to_string()));
        }
        ChannelId::parse(s)
            .map(ChannelPattern::Exact)
            .map_err(|_| PatternError::NotAChannel)
    }

    pub fn matches(&self, id: &ChannelId) -> bool {
        match self {
            ChannelPattern::Any => true,
            ChannelPattern::Name(name) => id.name() == name,
            ChannelPattern::Exact(exact) => exact == id,
            ChannelPattern::Prefix(prefix) => id.as_str().starts_with(prefix.as_str()),
        }
    }

    /// The pattern as written in a token.
    pub fn as_text(&self) -> String {
        match self {
            ChannelPattern::Any => "*".into(),
            ChannelPattern::Name(n) => n.clone(),
            ChannelPattern::Exact(id) => id.to_string(),
            ChannelPattern::Prefix(p) => format!("{p}*"),
        }
    }
}

/// The claims restream reads from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Who the token is for (logs only).
    pub sub: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    pub channels: Vec<ChannelPattern>,
    /// Channels its holder may publish to (push channels only; the `publish` claim).
    pub publish: Vec<ChannelPattern>,
}

/// Why verified claims are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("claims must be a JSON object")]
    NotAnObject,
    #[error("`exp` must be a whole number of seconds")]
    BadExp,
    #[error("`sub` must be a string")]
    BadSub,
    #[error("`channels` must be a list of at most {MAX_PATTERNS} strings")]
    BadChannels,
    #[error("`channels` entry {index}: {problem}")]
    BadPattern { index: usize, problem: PatternError },
    #[error("`publish` must be a list of at most {MAX_PATTERNS} strings")]
    BadPublish,
    #[error("`publish` entry {index}: {problem}")]
    BadPublishPattern { index: usize, problem: PatternError },
}

/// A claim holding a list of channel patterns: absent or null is an empty list.
fn patterns(v: Option<&Value>) -> Result<Vec<ChannelPattern>, Option<(usize, PatternError)>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) if a.len() <= MAX_PATTERNS => a
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let s = p.as_str().ok_or(None)?;
                ChannelPattern::parse(s).map_err(|problem| Some((index, problem)))
            })
            .collect(),
        Some(_) => Err(None),
    }
}

impl Claims {
    pub fn from_value(v: &Value) -> Result<Claims, ClaimsError> {
        let obj = v.as_object().ok_or(ClaimsError::NotAnObject)?;
        let exp = match obj.get("exp") {
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .ok_or(ClaimsError::BadExp)?,
            _ => return Err(ClaimsError::BadExp),
        };
        let sub = match obj.get("sub") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ClaimsError::BadSub),
        };
        let channels = patterns(obj.get("channels")).map_err(|e| match e {
            Some((index, problem)) => ClaimsError::BadPattern { index, problem },
            None => ClaimsError::BadChannels,
        })?;
        let publish = patterns(obj.get("publish")).map_err(|e| match e {
            Some((index, problem)) => ClaimsError::BadPublishPattern { index, problem },
            None => ClaimsError::BadPublish,
        })?;
        Ok(Claims {
            sub,
            exp,
            channels,
            publish,
        })
    }

    /// Whether the token lets its holder subscribe to `id`.
    pub fn allows(&self, id: &ChannelId) -> bool {
        self.channels.iter().any(|p| p.matches(id))
    }

    /// Whether the token lets its holder publish to `id` (a canonical id of a push channel).
    pub fn may_publish(&self, id: &ChannelId) -> bool {
        self.publish.iter().any(|p| p.matches(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(s: &str) -> ChannelId {
        ChannelId::parse(s).unwrap()
    }

    #[test]
    fn patterns_match_names_ids_and_prefixes() {
        let p = |s: &str| ChannelPattern::parse(s).unwrap();
        assert!(p("*").matches(&id("a")));
        assert!(p("w").matches(&id("w?lat=5&u=c")));
        assert!(p("w").matches(&id("w")));
        assert!(!p("w").matches(&id("wx")));
        assert!(p("w?lat=5&u=c").matches(&id("w?lat=5&u=c")));
        assert!(!p("w?lat=5&u=c").matches(&id("w?lat=6&u=c")));
        assert!(p("w?lat=5&*").matches(&id("w?lat=5&u=c")));
        assert!(!p("w?lat=5&*").matches(&id("w?lat=50&u=c")));
        assert!(p("usgs-*").matches(&id("usgs-earthquakes?feed=all_hour")));
        assert!(!p("usgs-*").matches(&id("nyt-top")));
    }

    #[test]
    fn bad_patterns_are_refused() {
        let e = |s: &str| ChannelPattern::parse(s).unwrap_err();
        assert_eq!(e(""), PatternError::Empty);
        assert_eq!(e("a*b"), PatternError::InnerWildcard);
        assert_eq!(e("*a*"), PatternError::InnerWildcard);
        assert_eq!(e("w?u=c&lat=5"), PatternError::NotAChannel);
        assert_eq!(e("a b"), PatternError::NotAChannel);
        assert_eq!(e(&"a".repeat(600)), PatternError::TooLong);
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_and_prefixes_of_an_id_match_it(
            s in ".{0,80}",
            name in "[a-z][a-z0-9-]{0,10}",
            value in ".{1,12}",
            cut in 0usize..40,
        ) {
            if let Ok(p) = ChannelPattern::parse(&s) {
                proptest::prop_assert_eq!(ChannelPattern::parse(&p.as_text()), Ok(p));
            }
            let id = ChannelId::from_request(
                &name,
                Some(&json!({"k": value})),
                &[("k".to_string(), Default::default())].into(),
            )
            .unwrap();
            let text = id.as_str();
            let mut end = cut.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let prefix = format!("{}*", &text[..end]);
            proptest::prop_assert!(ChannelPattern::parse(&prefix).unwrap().matches(&id));
            proptest::prop_assert!(ChannelPattern::parse(text).unwrap().matches(&id));
        }
    }

    #[test]
    fn patterns_print_as_written() {
        for s in ["*", "w", "w?lat=5&u=c", "usgs-*"] {
            assert_eq!(ChannelPattern::parse(s).unwrap().as_text(), s);
        }
    }

    #[test]
    fn claims_need_exp_and_valid_channels() {
        let c =
            Claims::from_value(&json!({"exp": 10, "sub": "u", "channels": ["a", "w?*"]})).unwrap();
        assert_eq!((c.exp, c.sub.as_deref()), (10, Some("u")));
        assert!(c.allows(&id("w?lat=1&u=c")) && c.allows(&id("a")) && !c.allows(&id("b")));
        let e = |v: Value| Claims::from_value(&v).unwrap_err();
        assert_eq!(e(json!({"channels": []})), ClaimsError::BadExp);
        assert_eq!(e(json!({"exp": "1"})), ClaimsError::BadExp);
        assert_eq!(e(json!({"exp": 1, "sub": 3})), ClaimsError::BadSub);
        assert_eq!(
            e(json!({"exp": 1, "channels": "a"})),
            ClaimsError::BadChannels
        );
        assert!(matches!(
            e(json!({"exp": 1, "channels": ["a", "b*c"]})),
            ClaimsError::BadPattern { index: 1, .. }
        ));
        assert!(Claims::from_value(&json!({"exp": 1}))
            .unwrap()
            .channels
            .is_empty());
    }

    #[test]
    fn publish_and_subscribe_rights_are_separate() {
        let c = Claims::from_value(&json!({"exp": 10, "channels": ["a"], "publish": ["p?site=*"]}))
            .unwrap();
        assert!(c.may_publish(&id("p?site=tst")) && !c.may_publish(&id("p")));
        assert!(!c.may_publish(&id("a")) && !c.allows(&id("p?site=tst")));
        let only = Claims::from_value(&json!({"exp": 10, "publish": ["*"]})).unwrap();
        assert!(only.channels.is_empty() && only.may_publish(&id("x")) && !only.allows(&id("x")));
        let e = |v: Value| Claims::from_value(&v).unwrap_err();
        assert_eq!(
            e(json!({"exp": 1, "publish": "a"})),
            ClaimsError::BadPublish
        );
        assert_eq!(
            e(json!({"exp": 1, "publish": [1]})),
            ClaimsError::BadPublish
        );
        assert!(matches!(
            e(json!({"exp": 1, "publish": ["a", "b*c"]})),
            ClaimsError::BadPublishPattern { index: 1, .. }
        ));
    }
}
