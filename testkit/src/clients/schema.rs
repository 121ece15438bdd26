//! The protocol as data, enforced: every message a test's WebSocket or SSE client receives, and
//! every subscribe it sends, is checked against `schemas/protocol/*.schema.json`, so the
//! documents cannot drift from what the backend really sends.

use std::sync::LazyLock;

use jsonschema::Validator;
use serde_json::Value;

const CLIENT: &str = include_str!("../../../schemas/protocol/client-message.schema.json");
const SERVER: &str = include_str!("../../../schemas/protocol/server-message.schema.json");

fn compile(name: &str, text: &str) -> Validator {
    let schema: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name} is not a schema: {e}"))
}

static CLIENT_SCHEMA: LazyLock<Validator> =
    LazyLock::new(|| compile("client-message.schema.json", CLIENT));
static SERVER_SCHEMA: LazyLock<Validator> =
    LazyLock::new(|| compile("server-message.schema.json", SERVER));

fn errors(validator: &Validator, message: &Value) -> Vec<String> {
    validator
        .iter_errors(message)
        .map(|e| format!("at {:?}: {e}", e.instance_path().as_str()))
        .collect()
}

/// Why `message` is not a valid server → client message (empty when it is).
pub fn server_message_errors(message: &Value) -> Vec<String> {
    errors(&SERVER_SCHEMA, message)
}

/// Why `message` is not a valid client → server message (empty when it is).
pub fn client_message_errors(message: &Value) -> Vec<String> {
    errors(&CLIENT_SCHEMA, message)
}

/// Panics, naming the schema and what failed, unless `message` (received `via` a transport) is
/// a valid server message.
pub fn check_server_message(message: &Value, via: &str) {
    let errors = server_message_errors(message);
    assert!(
        errors.is_empty(),
        "a {via} message does not match schemas/protocol/server-message.schema.json:\n  {}\nmessage: {message}",
        errors.join("\n  ")
    );
}

/// Panics unless `message` is a valid client message.
pub fn check_client_message(message: &Value) {
    let errors = client_message_errors(message);
    assert!(
        errors.is_empty(),
        "a client message does not match schemas/protocol/client-message.schema.json:\n  {}\nmessage: {message}",
        errors.join("\n  ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_message_that_drifts_fails_naming_the_schema_and_the_field() {
        let drifted = json!({"type": "new", "channel": "c", "params": {}, "seq": "7", "item": {}});
        let failure = std::panic::catch_unwind(|| check_server_message(&drifted, "WebSocket"))
            .expect_err("a string seq does not match");
        let text = failure.downcast_ref::<String>().unwrap();
        assert!(
            text.contains("server-message.schema.json") && text.contains("/seq"),
            "{text}"
        );
        check_server_message(&json!({"type": "ready", "protocol": 1}), "WebSocket");
        check_client_message(&json!({"action": "unsubscribe_all"}));
        assert!(!client_message_errors(&json!({"action": "subscribe"})).is_empty());
    }
}
