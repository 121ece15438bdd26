//! The typed outcome of a fetch, and the one place that reads a contract fetcher's `fetch`
//! JSON into it.

use serde_json::{Map, Value};

use super::FetchError;

/// A successful fetch: the items and the optional contract-v1 extensions.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchOutcome {
    pub items: Vec<Map<String, Value>>,
    /// Entries of `result` that were not JSON objects, counted so they are reported, not lost silently.
    pub skipped_non_objects: usize,
    pub state: Option<Value>,
    pub complete: bool,
    pub retry_after: Option<f64>,
    /// The upstream answered 304 Not Modified to a conditional request: nothing changed.
    pub not_modified: bool,
}

impl FetchOutcome {
    /// The upstream answered "not modified"; `state` goes back to the fetcher next time.
    pub fn not_modified(state: Option<Value>) -> FetchOutcome {
        FetchOutcome {
            items: Vec::new(),
            skipped_non_objects: 0,
            state: state.filter(|s| !s.is_null()),
            complete: false,
            retry_after: None,
            not_modified: true,
        }
    }

    /// A list of entries: the objects are the items, the others are counted.
    pub fn items(entries: Vec<Value>, state: Option<Value>, complete: bool) -> FetchOutcome {
        let total = entries.len();
        let items: Vec<_> = entries
            .into_iter()
            .filter_map(|i| match i {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect();
        FetchOutcome {
            skipped_non_objects: total - items.len(),
            items,
            state: state.filter(|s| !s.is_null()),
            complete,
            retry_after: None,
            not_modified: false,
        }
    }
}

fn invalid(fetcher: &str, detail: &str) -> FetchError {
    FetchError::InvalidResponse {
        fetcher: fetcher.to_string(),
        detail: detail.to_string(),
    }
}

/// Turns a raw fetch response into items or a precise error.
pub fn parse_fetch_response(fetcher: &str, v: Value) -> Result<FetchOutcome, FetchError> {
    let Value::Object(mut obj) = v else {
        return Err(invalid(fetcher, "response must be a JSON object"));
    };
    // A Lambda-style crash report: {"errorMessage": ..., "errorType": ...}.
    if let Some(Value::String(msg)) = obj.get("errorMessage") {
        return Err(FetchError::Crashed {
            fetcher: fetcher.to_string(),
            detail: msg.chars().take(500).collect(),
        });
    }
    let status = match obj.get("status_code") {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| invalid(fetcher, "field `status_code` must be an HTTP status"))?,
        Some(_) => return Err(invalid(fetcher, "field `status_code` must be a number")),
        None => return Err(invalid(fetcher, "field `status_code` is missing")),
    };
    let result = obj.remove("result");
    match status {
        304 => Ok(FetchOutcome::not_modified(obj.remove("state"))),
        200 => parse_items(fetcher, obj, result),
        _ => {
            let message = match result {
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let retry_after = obj.get("retry_after").and_then(Value::as_f64);
            Err(FetchError::upstream(fetcher, status, &message, retry_after))
        }
    }
}

/// A 200 answer: `result` must be a list, `complete` a boolean, `retry_after` seconds.
fn parse_items(
    fetcher: &str,
    mut obj: Map<String, Value>,
    result: Option<Value>,
) -> Result<FetchOutcome, FetchError> {
    let Some(Value::Array(result)) = result else {
        let detail = "field `result` must be a list of items when status_code is 200";
        return Err(invalid(fetcher, detail));
    };
    let complete = match obj.get("complete") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid(fetcher, "field `complete` must be a boolean")),
    };
    let retry_after = match obj.get("retry_after") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64().filter(|s| *s >= 0.0),
        Some(_) => {
            let detail = "field `retry_after` must be a number of seconds";
            return Err(invalid(fetcher, detail));
        }
    };
    Ok(FetchOutcome {
        retry_after,
        ..FetchOutcome::items(result, obj.remove("state"), complete)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_items() {
        let o = parse_fetch_response(
            "f",
            json!({"status_code": 200, "result": [{"id": 1}, 2], "state": "e1"}),
        )
        .unwrap();
        assert_eq!(o.items.len(), 1);
        assert_eq!(o.skipped_non_objects, 1);
        assert_eq!(o.state, Some(json!("e1")));
        assert!(!o.complete);
    }

    #[test]
    fn upstream_errors_keep_status_and_text() {
        match parse_fetch_response("f", json!({"status_code": 429, "result": "slow down"})) {
            Err(FetchError::Upstream {
                status: 429,
                message,
                ..
            }) => assert_eq!(message, "slow down"),
            other => panic!("{other:?}"),
        }
        match parse_fetch_response(
            "f",
            json!({"status_code": 429, "result": "x", "retry_after": 7}),
        ) {
            Err(FetchError::Upstream { retry_after, .. }) => assert_eq!(retry_after, Some(7.0)),
            other => panic!("{other:?}"),
        }
    }

    /// The answers of the original restream's fetchers, verbatim: `{'status_code': 200,
    /// 'result': resp.json()['results']}` and `{'status_code': resp.status_code, 'result':
    /// resp.text}`, with no `complete`, `state` or `retry_after`.
    #[test]
    fn original_fetcher_answers_keep_working() {
        let o = parse_fetch_response(
            "nyt_top",
            json!({"status_code": 200, "result": [{"short_url": "https://nyti.ms/a", "title": "A"}]}),
        )
        .unwrap();
        assert_eq!(o.items.len(), 1);
        assert!(!o.complete, "no `complete`: a window, nothing is removed");
        assert_eq!(
            (o.state, o.retry_after, o.not_modified),
            (None, None, false)
        );
        let html = format!("<html><body>{}</body></html>", "Unauthorized ".repeat(100));
        match parse_fetch_response("nyt_top", json!({"status_code": 401, "result": html})) {
            Err(FetchError::Upstream {
                status: 401,
                message,
                retry_after: None,
                ..
            }) => assert!(message.starts_with("<html>") && message.chars().count() == 500),
            other => panic!("{other:?}"),
        }
        // An empty body, and a 2xx other than 200 (the original took only 200 as success).
        for (status, result) in [(500, json!("")), (204, json!(""))] {
            assert!(matches!(
                parse_fetch_response("f", json!({"status_code": status, "result": result})),
                Err(FetchError::Upstream { .. })
            ));
        }
    }

    #[test]
    fn not_modified_means_unchanged() {
        let o = parse_fetch_response(
            "f",
            json!({"status_code": 304, "result": [], "state": {"etag": "e"}}),
        )
        .unwrap();
        assert!(o.not_modified && o.items.is_empty() && !o.complete);
        assert_eq!(o.state, Some(json!({"etag": "e"})));
    }

    #[test]
    fn garbage_is_invalid() {
        for v in [
            json!("x"),
            json!({}),
            json!({"status_code": "200"}),
            json!({"status_code": 200}),
            json!({"status_code": 200, "result": {}}),
            json!({"status_code": 70000, "result": []}),
            json!({"status_code": 200, "result": [], "complete": "yes"}),
        ] {
            assert!(matches!(
                parse_fetch_response("f", v),
                Err(FetchError::InvalidResponse { .. })
            ));
        }
        assert!(matches!(
            parse_fetch_response(
                "f",
                json!({"errorMessage": "boom", "errorType": "KeyError"})
            ),
            Err(FetchError::Crashed { .. })
        ));
    }
}
