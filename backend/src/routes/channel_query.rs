//! Turns `/channels/{name}?params` into a channel id: the fetcher by name, then its declared
//! params from the query string (`limit`, `cursor` and `since` are the API's own).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use serde_json::{Map, Value};

use super::api_error::ApiError;
use crate::channel::ChannelId;
use crate::fetcher::RESERVED_PARAMS;
use crate::fetcher::{FetcherEntry, Registry};

/// A resolved channel and the API's own query values.
pub struct ChannelQuery {
    pub id: ChannelId,
    pub entry: Arc<FetcherEntry>,
    /// `limit`, `cursor`, `since` when given.
    pub options: BTreeMap<String, String>,
}

/// Splits a query string into name → value; a repeated name is an error (which one counts
/// would be a guess).
pub fn parse_query(query: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::bad_request("bad_query", format!("malformed query string: {e}")))?;
    let mut out = BTreeMap::new();
    for (k, v) in pairs {
        if out.contains_key(&k) {
            let name: String = k.chars().take(64).collect();
            return Err(ApiError::bad_request(
                "bad_query",
                format!("query parameter {name:?} is given more than once"),
            ));
        }
        out.insert(k, v);
    }
    Ok(out)
}

/// The channel `name` with the params in `query`, validated like a WebSocket subscribe.
pub fn resolve(registry: &Registry, name: &str, query: &str) -> Result<ChannelQuery, ApiError> {
    let entry = registry.get(name).cloned().ok_or_else(|| {
        let shown: String = name.chars().take(64).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_channel",
            format!("no channel named {shown:?}; GET /channels lists them"),
        )
    })?;
    let mut params = parse_query(query)?;
    let options: BTreeMap<String, String> = RESERVED_PARAMS
        .iter()
        .filter_map(|k| params.remove_entry(*k))
        .collect();
    let raw = Value::Object(
        params
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<Map<_, _>>(),
    );
    let id =
        ChannelId::from_request_with(name, Some(&raw), &entry.metadata.params).map_err(|e| {
            crate::metrics::get().free_param_refused(&e);
            ApiError::bad_request(
                crate::protocol::ErrorCode::for_params(&e).as_str(),
                e.to_string(),
            )
        })?;
    entry
        .fetcher
        .admit(&id.params())
        .map_err(|(code, message)| ApiError::bad_request(code.as_str(), message))?;
    Ok(ChannelQuery { id, entry, options })
}

/// A page's `limit` option: `default` when absent, else a whole number from 1 to `max`
/// (`400 bad_limit` otherwise).
pub fn page_limit(
    options: &BTreeMap<String, String>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match options.get("limit") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(
                "bad_limit",
                format!("limit must be a whole number from 1 to {max}"),
            )),
        },
    }
}

/// Refuses the API's own query names on a route that does not take them (they are never
/// channel params).
pub fn reject_options(
    options: &std::collections::BTreeMap<String, String>,
    allowed: &[&str],
) -> Result<(), ApiError> {
    match options.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(
            "bad_query",
            format!("{k:?} is not accepted here"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn repeated_names_and_bad_encoding_are_refused() {
        assert_eq!(
            parse_query("a=1&b=x%20y").unwrap(),
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "x y".into())])
        );
        assert_eq!(parse_query("a=1&a=2").unwrap_err().code, "bad_query");
        assert!(parse_query("").unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn any_query_string_parses_or_fails_cleanly(q in ".{0,100}") {
            let _ = parse_query(&q);
        }
    }
}
