//! The pure mapping of one SQS message body to a push channel and one operation, by the
//! channel's `[queue]` JSON pointers (`params`, `item`); or the reason it cannot be mapped.

use serde_json::{Map, Value};

use crate::channel::{ChannelId, ParamSpecs};

use super::{PushMode, PushOp, PushSpec, QueueSpec};

/// Why a message body does not map to a channel and an operation. The text never quotes the
/// body; `code()` is the `restream_error` attribute of the dead-lettered copy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unmappable {
    #[error("the message body is not JSON")]
    NotJson,
    #[error("param {param:?}: nothing at JSON pointer {pointer:?}")]
    MissingParam { param: String, pointer: String },
    #[error("param {param:?}: the value at {pointer:?} is not a string, number or boolean")]
    BadParam { param: String, pointer: String },
    #[error("invalid channel params: {0}")]
    InvalidParams(String),
    #[error("nothing at the item's JSON pointer {0:?}")]
    MissingItem(String),
    #[error("the item at {0:?} is not a JSON object (items mode)")]
    NotAnObject(String),
}

impl Unmappable {
    pub fn code(&self) -> &'static str {
        match self {
            Unmappable::NotJson => "not_json",
            Unmappable::MissingParam { .. } => "missing_param",
            Unmappable::BadParam { .. } => "bad_param",
            Unmappable::InvalidParams(_) => "invalid_params",
            Unmappable::MissingItem(_) => "missing_item",
            Unmappable::NotAnObject(_) => "not_an_object",
        }
    }
}

/// Maps `body` to the channel `spec.name` with the params its pointers select (strings as
/// they are, numbers and booleans as their JSON text), checked against `params` like a
/// subscribe's; and the item at `queue.item` as an upsert (items mode) or an append (events).
pub fn map_message(
    spec: &PushSpec,
    queue: &QueueSpec,
    params: &ParamSpecs,
    body: &str,
) -> Result<(ChannelId, PushOp), Unmappable> {
    let message: Value = serde_json::from_str(body).map_err(|_| Unmappable::NotJson)?;
    let mut given = Map::new();
    for (param, pointer) in &queue.params {
        let value = match message.pointer(pointer) {
            None | Some(Value::Null) => {
                return Err(Unmappable::MissingParam {
                    param: param.clone(),
                    pointer: pointer.clone(),
                })
            }
            Some(Value::String(s)) => s.clone(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            Some(_) => {
                return Err(Unmappable::BadParam {
                    param: param.clone(),
                    pointer: pointer.clone(),
                })
            }
        };
        given.insert(param.clone(), Value::String(value));
    }
    let channel = ChannelId::from_request(&spec.name, Some(&Value::Object(given)), params)
        .map_err(|e| Unmappable::InvalidParams(e.to_string()))?;
    let item = message
        .pointer(&queue.item)
        .ok_or_else(|| Unmappable::MissingItem(queue.item.clone()))?;
    let op = match (spec.mode, item) {
        (PushMode::Items, Value::Object(m)) => PushOp::Upsert(m.clone()),
        (PushMode::Items, _) => return Err(Unmappable::NotAnObject(queue.item.clone())),
        (PushMode::Events, v) => PushOp::Append(v.clone()),
    };
    Ok((channel, op))
}

/// At most `max` characters of `body`, for log lines (never the whole message).
pub fn prefix(body: &str, max: usize) -> String {
    match body.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &body[..at]),
        None => body.to_string(),
    }
}

#[cfg(test)]
#[path = "queue_map_tests.rs"]
mod tests;
