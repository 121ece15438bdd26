//! Fetcher metadata: parsed and validated once at startup, with errors naming the field.

use std::time::Duration;

use serde_json::Value;
use thiserror::Error;

pub use crate::channel::RESERVED_PARAMS;
use crate::channel::{is_valid_name, FreeParams, ParamKind, ParamRules, ParamSpec, ParamSpecs};

/// Poll interval when a fetcher declares none (the original restream default).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(100);

/// What a fetcher says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub name: String,
    pub description: Option<String>,
    pub id_field: String,
    pub api_url: Option<String>,
    pub doc_url: Option<String>,
    pub keys: Vec<String>,
    pub poll_interval: Duration,
    /// The declared params; without a `params` field (the original restream's fetchers),
    /// free-form ones within the default bounds (the registry applies the settings').
    pub params: ParamRules,
    /// The upstream budget: at most N calls per window, shared by every channel using the
    /// same keys (see `budget`).
    pub rate_limit: Vec<(Duration, u64)>,
    /// Environment variables a process fetcher needs from the backend (e.g. its
    /// `NYT_BASE_URL`), passed beside the base allowlist; never `AWS_*` or `RESTREAM_*`.
    pub env: Vec<String>,
    /// Channels of this fetcher (distinct params) active at once; settings may override it.
    pub max_channels: Option<usize>,
    /// `"access": "public" | "token"`: whether subscribers need a token (the settings'
    /// `auth.access` overrides it; unset = `auth.default_access`).
    pub access: Option<crate::auth::Access>,
}

/// A metadata field that is missing or wrong.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("field `{field}`: {problem}")]
pub struct MetadataError {
    pub field: String,
    pub problem: String,
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> MetadataError {
    MetadataError {
        field: field.into(),
        problem: problem.into(),
    }
}

impl Metadata {
    /// Validates a metadata response. Unknown fields are ignored for forward compatibility.
    pub fn from_value(v: &Value) -> Result<Metadata, MetadataError> {
        let obj = v
            .as_object()
            .ok_or_else(|| err("(root)", "metadata must be a JSON object"))?;
        let opt_str = |f: &str| -> Result<Option<String>, MetadataError> {
            match obj.get(f) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(err(f, "must be a string")),
            }
        };
        let name = opt_str("name")?.ok_or_else(|| err("name", "is required"))?;
        if !is_valid_name(&name) {
            return Err(err(
                "name",
                format!("{name:?} must be 1-64 ASCII letters, digits, '-', '_' or '.'"),
            ));
        }
        let id_field = opt_str("id_field")?.ok_or_else(|| err("id_field", "is required"))?;
        if id_field.is_empty() {
            return Err(err("id_field", "must not be empty"));
        }
        let poll_interval = match obj.get("poll_interval") {
            None | Some(Value::Null) => DEFAULT_POLL_INTERVAL,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 * 7.0 => {
                    Duration::from_secs_f64(s)
                }
                _ => {
                    return Err(err(
                        "poll_interval",
                        "must be a number of seconds between 0 and one week",
                    ))
                }
            },
            Some(_) => return Err(err("poll_interval", "must be a number of seconds")),
        };
        let keys = match obj.get("keys") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|k| {
                    k.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| err("keys", "must be a list of strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err("keys", "must be a list of strings")),
        };
        Ok(Metadata {
            name,
            description: opt_str("description")?,
            id_field,
            api_url: opt_str("api_url")?,
            doc_url: opt_str("doc_url")?,
            keys,
            poll_interval,
            params: match obj.get("params") {
                None | Some(Value::Null) => ParamRules::Free(FreeParams::default()),
                declared => ParamRules::Declared(parse_params(declared)?),
            },
            rate_limit: parse_rate_limit(obj.get("rate_limit"))?,
            env: parse_env(obj.get("env"))?,
            max_channels: match obj.get("max_channels") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_u64() {
                    Some(n) if n > 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                    _ => return Err(err("max_channels", "must be a positive integer")),
                },
            },
            access: match obj.get("access") {
                None | Some(Value::Null) => None,
                Some(Value::String(a)) => Some(
                    crate::auth::Access::parse(a)
                        .ok_or_else(|| err("access", "must be \"public\" or \"token\""))?,
                ),
                Some(_) => return Err(err("access", "must be \"public\" or \"token\"")),
            },
        })
    }
}

/// The valid names of a metadata answer's `"env"` (a fetcher whose list is invalid is
/// skipped by the registry anyway).
pub(crate) fn declared_env(metadata: &Value) -> Vec<String> {
    parse_env(metadata.get("env")).unwrap_or_default()
}

fn parse_env(v: Option<&Value>) -> Result<Vec<String>, MetadataError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(err("env", "must be a list of variable names")),
    };
    list.iter()
        .map(|name| {
            let name = name
                .as_str()
                .ok_or_else(|| err("env", "must be a list of variable names"))?;
            match super::sandbox::env_name_problem(name) {
                Some(problem) => Err(err(format!("env.{name}"), problem)),
                None => Ok(name.to_string()),
            }
        })
        .collect()
}

/// A `rate_limit` declaration (`{"per_day": 1000}`) as windows.
pub fn parse_rate_limit(v: Option<&Value>) -> Result<Vec<(Duration, u64)>, MetadataError> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(err(
                "rate_limit",
                "must be an object such as {\"per_day\": 1000}",
            ))
        }
    };
    let mut out = Vec::new();
    for (k, n) in obj {
        let window = match k.as_str() {
            "per_second" => Duration::from_secs(1),
            "per_minute" => Duration::from_secs(60),
            "per_hour" => Duration::from_secs(3600),
            "per_day" => Duration::from_secs(86_400),
            _ => {
                return Err(err(
                    format!("rate_limit.{k}"),
                    "use per_second, per_minute, per_hour or per_day",
                ))
            }
        };
        match n.as_u64() {
            Some(max) if max > 0 => out.push((window, max)),
            _ => return Err(err(format!("rate_limit.{k}"), "must be a positive integer")),
        }
    }
    Ok(out)
}

fn parse_params(v: Option<&Value>) -> Result<ParamSpecs, MetadataError> {
    let mut specs = ParamSpecs::new();
    let obj = match v {
        None | Some(Value::Null) => return Ok(specs),
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(err(
                "params",
                "must be an object of param name to declaration",
            ))
        }
    };
    for (key, decl) in obj {
        let field = format!("params.{key}");
        if !is_valid_name(key) {
            return Err(err(
                field,
                "param names must be ASCII letters, digits, '-', '_' or '.'",
            ));
        }
        if RESERVED_PARAMS.contains(&key.as_str()) {
            return Err(err(
                field,
                format!(
                    "is reserved by the HTTP API ({}); choose another name",
                    RESERVED_PARAMS.join(", ")
                ),
            ));
        }
        let d = decl
            .as_object()
            .ok_or_else(|| err(&field, "must be an object"))?;
        let required = match d.get("required") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(err(format!("{field}.required"), "must be a boolean")),
        };
        let default = match d.get("default") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(_) => {
                return Err(err(
                    format!("{field}.default"),
                    "must be a string, number or boolean",
                ))
            }
        };
        if required && default.is_some() {
            return Err(err(field, "a required param cannot have a default"));
        }
        let description = match d.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(err(format!("{field}.description"), "must be a string")),
        };
        let kind = match d.get("type") {
            None | Some(Value::Null) => ParamKind::String,
            Some(t) => serde_json::from_value(t.clone())
                .map_err(|_| err(format!("{field}.type"), "must be \"string\" or \"number\""))?,
        };
        let allowed = match d.get("allowed") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        Value::Number(n) => Ok(n.to_string()),
                        _ => Err(err(
                            format!("{field}.allowed"),
                            "must list strings or numbers",
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(err(format!("{field}.allowed"), "must be a list")),
        };
        let spec = ParamSpec {
            required,
            default,
            description,
            kind,
            allowed,
        };
        // Defaults and allowed values are stored canonical, as a subscribe would make them.
        let spec = spec.canonical().map_err(|e| err(&field, e.to_string()))?;
        specs.insert(key.clone(), spec);
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_original_fetcher_metadata() {
        let m = Metadata::from_value(&json!({
            "name": "nyt-top", "description": "New York Times top stories", "id_field": "short_url",
            "api_url": "https://api.nytimes.com", "doc_url": "https://developer.nytimes.com",
            "keys": ["api-key"], "poll_interval": 100
        }))
        .unwrap();
        assert_eq!(m.name, "nyt-top");
        assert_eq!(m.poll_interval, Duration::from_secs(100));
        // No `params` field: free-form params, as the original passed them through.
        assert!(m.params.is_free());
        assert!(m.params.declared().is_empty());
        let none_declared =
            Metadata::from_value(&json!({"name": "a", "id_field": "id", "params": {}})).unwrap();
        assert_eq!(
            none_declared.params,
            ParamRules::Declared(ParamSpecs::new())
        );
        assert_eq!(m.access, None);
    }

    #[test]
    fn access_is_public_or_token() {
        let m =
            |a: Value| Metadata::from_value(&json!({"name": "a", "id_field": "id", "access": a}));
        assert_eq!(
            m(json!("token")).unwrap().access,
            Some(crate::auth::Access::Token)
        );
        assert_eq!(
            m(json!("public")).unwrap().access,
            Some(crate::auth::Access::Public)
        );
        assert_eq!(m(json!("private")).unwrap_err().field, "access");
        assert_eq!(m(json!(true)).unwrap_err().field, "access");
    }

    #[test]
    fn parses_declared_params() {
        let m = Metadata::from_value(&json!({
            "name": "w", "id_field": "id", "poll_interval": 0.5,
            "params": {"lat": {"required": true, "description": "latitude"}, "units": {"default": "metric"}}
        }))
        .unwrap();
        assert!(m.params.declared()["lat"].required);
        assert_eq!(
            m.params.declared()["units"].default.as_deref(),
            Some("metric")
        );
        assert_eq!(m.poll_interval, Duration::from_millis(500));
        assert!(m.rate_limit.is_empty());
        let limited = Metadata::from_value(&json!({"name": "w", "id_field": "id", "rate_limit": {"per_minute": 5, "per_day": 500}})).unwrap();
        assert!(limited.rate_limit.contains(&(Duration::from_secs(60), 5)));
        assert!(limited
            .rate_limit
            .contains(&(Duration::from_secs(86_400), 500)));
    }

    #[test]
    fn errors_name_the_field() {
        let field = |v: Value| Metadata::from_value(&v).unwrap_err().field;
        assert_eq!(field(json!({"id_field": "id"})), "name");
        assert_eq!(field(json!({"name": "a b", "id_field": "id"})), "name");
        assert_eq!(field(json!({"name": "a"})), "id_field");
        assert_eq!(
            field(json!({"name": "a", "id_field": "id", "params": {"limit": {}}})),
            "params.limit"
        );
        assert_eq!(
            field(json!({"name": "a", "id_field": "id", "poll_interval": -1})),
            "poll_interval"
        );
        assert_eq!(
            field(json!({"name": "a", "id_field": "id", "keys": [1]})),
            "keys"
        );
        assert_eq!(
            field(json!({"name": "a", "id_field": "id", "params": {"x": {"required": "yes"}}})),
            "params.x.required"
        );
        assert_eq!(field(json!([])), "(root)");
        assert_eq!(
            field(json!({"name": "a", "id_field": "id", "rate_limit": {"per_week": 1}})),
            "rate_limit.per_week"
        );
        assert_eq!(
            field(json!({"name": "a", "id_field": "id", "rate_limit": {"per_day": 0}})),
            "rate_limit.per_day"
        );
        assert_eq!(
            field(json!({"name": "a", "id_field": "id", "env": ["AWS_SECRET_ACCESS_KEY"]})),
            "env.AWS_SECRET_ACCESS_KEY"
        );
        assert_eq!(
            field(json!({"name": "a", "id_field": "id", "env": "X"})),
            "env"
        );
        let m =
            Metadata::from_value(&json!({"name": "a", "id_field": "id", "env": ["A_BASE_URL"]}));
        assert_eq!(m.unwrap().env, vec!["A_BASE_URL"]);
        assert_eq!(
            field(json!({"name": "a", "id_field": "id", "max_channels": 0})),
            "max_channels"
        );
        assert_eq!(
            field(json!({"name": "a", "id_field": "id", "params": {"n": {"type": "date"}}})),
            "params.n.type"
        );
        assert_eq!(
            field(
                json!({"name": "a", "id_field": "id", "params": {"n": {"type": "number", "default": "x"}}})
            ),
            "params.n"
        );
    }

    #[test]
    fn declared_numbers_and_allowed_values_are_stored_canonical() {
        let m = Metadata::from_value(&json!({
            "name": "a", "id_field": "id", "max_channels": 50,
            "params": {"n": {"type": "number", "default": "01.50", "allowed": [1.5, "2", 3]}}
        }))
        .unwrap();
        assert_eq!(m.max_channels, Some(50));
        let n = &m.params.declared()["n"];
        assert_eq!(n.default.as_deref(), Some("1.5"));
        assert_eq!(n.allowed, Some(vec!["1.5".into(), "2".into(), "3".into()]));
    }
}
