//! The publish API's body, parsed: a JSON value, a JSON array or NDJSON into entries, and the
//! entries into a batch's ops for the channel's mode. Pure: any bytes give entries or an error
//! saying what is wrong (the NDJSON line included), never a panic.

use serde_json::Value;

use crate::push::{PushMode, PushOp};

/// How the body is written, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON value (one entry) or a JSON array (one entry per element).
    Json,
    /// One JSON value per non-empty line.
    Ndjson,
}

/// Why a body gives no entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not the JSON it says it is (or a `Content-Type` the API does not read).
    #[error("{0}")]
    InvalidJson(String),
    /// More entries than one publish may carry.
    #[error("the body holds more than the {max} entries one publish may carry")]
    TooManyItems { max: usize },
}

/// Longest part of a parser's message kept (they quote nothing of the body, but stay short).
const MAX_MESSAGE_CHARS: usize = 200;

fn short(e: &serde_json::Error) -> String {
    e.to_string().chars().take(MAX_MESSAGE_CHARS).collect()
}

impl BodyFormat {
    /// `application/json` (also when absent) or `application/x-ndjson`; parameters such as
    /// `charset` are ignored.
    pub fn from_content_type(value: Option<&str>) -> Result<BodyFormat, BodyError> {
        let Some(value) = value else {
            return Ok(BodyFormat::Json);
        };
        let essence = value.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/json") {
            Ok(BodyFormat::Json)
        } else if essence.eq_ignore_ascii_case("application/x-ndjson")
            || essence.eq_ignore_ascii_case("application/ndjson")
        {
            Ok(BodyFormat::Ndjson)
        } else {
            Err(BodyError::InvalidJson(
                "Content-Type must be application/json or application/x-ndjson".into(),
            ))
        }
    }
}

/// The body's entries, at most `max_items` of them.
pub fn entries(format: BodyFormat, body: &[u8], max_items: usize) -> Result<Vec<Value>, BodyError> {
    let entries = match format {
        BodyFormat::Json => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Err(BodyError::InvalidJson(
                    "the body is empty; send a JSON object or array".into(),
                ));
            }
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Array(entries)) => entries,
                Ok(one) => vec![one],
                Err(e) => {
                    return Err(BodyError::InvalidJson(format!(
                        "the body is not valid JSON: {}",
                        short(&e)
                    )))
                }
            }
        }
        BodyFormat::Ndjson => {
            let mut entries = Vec::new();
            for (index, line) in body.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if entries.len() == max_items {
                    return Err(BodyError::TooManyItems { max: max_items });
                }
                let value = serde_json::from_slice::<Value>(line).map_err(|e| {
                    BodyError::InvalidJson(format!(
                        "line {} is not valid JSON: {}",
                        index + 1,
                        short(&e)
                    ))
                })?;
                entries.push(value);
            }
            entries
        }
    };
    if entries.len() > max_items {
        return Err(BodyError::TooManyItems { max: max_items });
    }
    Ok(entries)
}

/// The ops of `POST` (`replace` false) or `PUT` (`replace` true) for a channel in `mode`:
/// items mode upserts objects, events mode appends any value. The message of an entry that
/// does not fit says which one (0-based, like the batch checks).
pub fn ops(mode: PushMode, entries: Vec<Value>, replace: bool) -> Result<Vec<PushOp>, String> {
    match mode {
        PushMode::Events if replace => {
            Err("an events channel is append-only: it cannot be replaced".into())
        }
        PushMode::Events => Ok(entries.into_iter().map(PushOp::Append).collect()),
        PushMode::Items => entries
            .into_iter()
            .enumerate()
            .map(|(index, entry)| match entry {
                Value::Object(item) => Ok(PushOp::Upsert(item)),
                _ => Err(format!(
                    "entry {index}: an items channel takes JSON objects with an id"
                )),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn json_entries(body: &str) -> Result<Vec<Value>, BodyError> {
        entries(BodyFormat::Json, body.as_bytes(), 3)
    }

    #[test]
    fn json_bodies_are_one_entry_or_an_array_of_them() {
        assert_eq!(json_entries(r#"{"id":1}"#).unwrap(), vec![json!({"id":1})]);
        assert_eq!(
            json_entries("[1, {\"a\":2}]").unwrap(),
            vec![json!(1), json!({"a":2})]
        );
        assert_eq!(json_entries("[]").unwrap(), Vec::<Value>::new());
        assert_eq!(json_entries(" 7 ").unwrap(), vec![json!(7)]);
        assert!(matches!(json_entries(""), Err(BodyError::InvalidJson(m)) if m.contains("empty")));
        assert!(matches!(
            json_entries("{\"id\":"),
            Err(BodyError::InvalidJson(_))
        ));
        assert!(matches!(
            json_entries("{} {}"),
            Err(BodyError::InvalidJson(_))
        ));
        assert_eq!(
            json_entries("[1,2,3,4]"),
            Err(BodyError::TooManyItems { max: 3 })
        );
    }

    #[test]
    fn ndjson_reads_one_value_per_non_empty_line_and_names_a_bad_line() {
        let body = b"{\"id\":1}\r\n\n  \n[1,2]\n\"x\"";
        assert_eq!(
            entries(BodyFormat::Ndjson, body, 3).unwrap(),
            vec![json!({"id":1}), json!([1, 2]), json!("x")]
        );
        assert_eq!(
            entries(BodyFormat::Ndjson, b"", 3).unwrap(),
            Vec::<Value>::new()
        );
        let e = entries(BodyFormat::Ndjson, b"{}\n\n{oops}\n", 3).unwrap_err();
        assert!(
            matches!(&e, BodyError::InvalidJson(m) if m.starts_with("line 3 ")),
            "{e}"
        );
        assert_eq!(
            entries(BodyFormat::Ndjson, b"1\n2\n3\n4\n{broken", 3),
            Err(BodyError::TooManyItems { max: 3 })
        );
    }

    #[test]
    fn content_types_pick_the_format() {
        let f = BodyFormat::from_content_type;
        assert_eq!(f(None), Ok(BodyFormat::Json));
        assert_eq!(
            f(Some("application/json; charset=utf-8")),
            Ok(BodyFormat::Json)
        );
        assert_eq!(f(Some("Application/X-NDJSON")), Ok(BodyFormat::Ndjson));
        assert!(f(Some("text/plain")).is_err() && f(Some("")).is_err());
    }

    #[test]
    fn entries_become_the_ops_of_the_mode() {
        let items = ops(PushMode::Items, vec![json!({"id": 1})], false).unwrap();
        assert_eq!(
            items,
            vec![PushOp::Upsert(
                json!({"id": 1}).as_object().unwrap().clone()
            )]
        );
        let e = ops(PushMode::Items, vec![json!({"id": 1}), json!(2)], true).unwrap_err();
        assert!(e.starts_with("entry 1:"), "{e}");
        assert_eq!(
            ops(PushMode::Events, vec![json!([1]), json!(null)], false).unwrap(),
            vec![PushOp::Append(json!([1])), PushOp::Append(json!(null))]
        );
        assert!(ops(PushMode::Events, vec![], true).is_err());
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_bytes_give_entries_or_an_error(
            body in prop::collection::vec(any::<u8>(), 0..300),
            max in 0usize..5,
        ) {
            for format in [BodyFormat::Json, BodyFormat::Ndjson] {
                if let Ok(found) = entries(format, &body, max) {
                    prop_assert!(found.len() <= max);
                }
            }
        }

        #[test]
        fn ndjson_of_any_values_reads_back(values in prop::collection::vec(value(), 0..6)) {
            let body: String = values.iter().map(|v| format!("{v}\n")).collect();
            prop_assert_eq!(&entries(BodyFormat::Ndjson, body.as_bytes(), 6).unwrap(), &values);
            let array = Value::Array(values.clone()).to_string();
            prop_assert_eq!(entries(BodyFormat::Json, array.as_bytes(), 6).unwrap(), values);
        }
    }
}
