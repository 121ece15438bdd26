//! Free-form params: what a fetcher of the original restream's shape accepts. Its metadata
//! declares no `params`, and its `fetch` reads whatever it likes (`section`, `symbols`, `id`),
//! so any param is passed through, as strings, bounded in count and size and canonicalised
//! into the channel id exactly like declared ones (sorted keys, percent-encoded).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{is_valid_name, ParamError, ParamSpecs, MAX_VALUE_LEN};

/// Query names the HTTP API uses beside a channel's params (`/channels/{name}/items?limit=`,
/// `...&cursor=`, `/channels/{name}/events?since=`, `/channels/{name}/history?from=&to=`,
/// `?token=` everywhere): no fetcher may declare them, and no free-form param may use them.
pub const RESERVED_PARAMS: [&str; 6] = ["cursor", "limit", "since", "token", "from", "to"];

/// The bounds on free-form params (settings `limits.max_free_params`,
/// `limits.max_free_param_name_len`, `limits.max_free_param_value_len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeParams {
    /// Params one subscribe may give.
    pub max_count: usize,
    /// Longest param name (at most [`super::MAX_NAME_LEN`]).
    pub max_name_len: usize,
    /// Longest value, in characters (at most [`MAX_VALUE_LEN`]).
    pub max_value_len: usize,
}

impl Default for FreeParams {
    fn default() -> FreeParams {
        FreeParams {
            max_count: 8,
            max_name_len: 32,
            max_value_len: MAX_VALUE_LEN,
        }
    }
}

/// Which free-form bound a subscribe went over (the metric's `limit` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeLimit {
    Count,
    NameLength,
    ValueLength,
}

impl FreeLimit {
    pub fn as_str(&self) -> &'static str {
        match self {
            FreeLimit::Count => "count",
            FreeLimit::NameLength => "name_length",
            FreeLimit::ValueLength => "value_length",
        }
    }
}

/// What params a channel type accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamRules {
    /// Exactly the declared ones (metadata with `params`, even `{}`).
    Declared(ParamSpecs),
    /// Any, within bounds (metadata without `params`: the original restream's fetchers).
    Free(FreeParams),
}

static NONE_DECLARED: ParamSpecs = BTreeMap::new();

impl Default for ParamRules {
    fn default() -> ParamRules {
        ParamRules::Declared(ParamSpecs::new())
    }
}

impl ParamRules {
    /// The declared params (none for free-form ones).
    pub fn declared(&self) -> &ParamSpecs {
        match self {
            ParamRules::Declared(specs) => specs,
            ParamRules::Free(_) => &NONE_DECLARED,
        }
    }

    pub fn is_free(&self) -> bool {
        matches!(self, ParamRules::Free(_))
    }
}

/// A declared param by name (panics like a map when there is none).
impl std::ops::Index<&str> for ParamRules {
    type Output = super::ParamSpec;

    fn index(&self, name: &str) -> &super::ParamSpec {
        &self.declared()[name]
    }
}

impl FreeParams {
    /// The canonical params of a subscribe: every key checked, every value a string.
    pub(super) fn accept(
        &self,
        given: &serde_json::Map<String, Value>,
    ) -> Result<BTreeMap<String, String>, ParamError> {
        let mut params = BTreeMap::new();
        for (key, value) in given {
            let value = match value {
                // Absent, as for declared params.
                Value::Null => continue,
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(ParamError::BadType(short(key))),
            };
            if key.chars().count() > self.max_name_len {
                return Err(ParamError::FreeLimit(
                    FreeLimit::NameLength,
                    self.max_name_len,
                ));
            }
            if !is_valid_name(key) {
                return Err(ParamError::BadName(short(key)));
            }
            if RESERVED_PARAMS.contains(&key.as_str()) {
                return Err(ParamError::Reserved(key.clone()));
            }
            if value.chars().count() > self.max_value_len {
                return Err(ParamError::FreeLimit(
                    FreeLimit::ValueLength,
                    self.max_value_len,
                ));
            }
            params.insert(key.clone(), value);
            if params.len() > self.max_count {
                return Err(ParamError::FreeLimit(FreeLimit::Count, self.max_count));
            }
        }
        Ok(params)
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}
