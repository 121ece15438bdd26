//! The RFC 6902 patch of an `updated` event, built straight into JSON from borrowed items: the
//! same operations, in the same order, as `json_patch::diff` (a test compares them), without
//! copying both versions of the item first.

use serde_json::{Map, Value};

/// The patch from `old` to `new`: `replace` where a scalar (or a value of another type)
/// differs, `add`/`remove` for keys and array tail elements, objects and arrays compared
/// member by member.
pub fn patch(old: &Map<String, Value>, new: &Map<String, Value>) -> Value {
    let mut ops = Vec::new();
    let mut path = String::new();
    diff_object(old, new, &mut path, &mut ops);
    Value::Array(ops)
}

fn op(kind: &str, path: &str, value: Option<&Value>) -> Value {
    let mut m = Map::new();
    m.insert("op".into(), Value::from(kind));
    m.insert("path".into(), Value::from(path));
    if let Some(v) = value {
        m.insert("value".into(), v.clone());
    }
    Value::Object(m)
}

/// Appends `/token` to a JSON pointer, escaping `~` and `/`.
fn push_token(path: &mut String, token: &str) {
    path.push('/');
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

fn diff_value(old: &Value, new: &Value, path: &mut String, ops: &mut Vec<Value>) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => diff_object(o, n, path, ops),
        (Value::Array(o), Value::Array(n)) => diff_array(o, n, path, ops),
        _ if old == new => {}
        _ => ops.push(op("replace", path, Some(new))),
    }
}

fn diff_object(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    path: &mut String,
    ops: &mut Vec<Value>,
) {
    let len = path.len();
    for (key, new_value) in new {
        push_token(path, key);
        match old.get(key) {
            Some(old_value) => diff_value(old_value, new_value, path, ops),
            None => ops.push(op("add", path, Some(new_value))),
        }
        path.truncate(len);
    }
    for key in old.keys() {
        if !new.contains_key(key) {
            push_token(path, key);
            ops.push(op("remove", path, None));
            path.truncate(len);
        }
    }
}

fn diff_array(old: &[Value], new: &[Value], path: &mut String, ops: &mut Vec<Value>) {
    let len = path.len();
    let mut shift = 0usize;
    for idx in 0..old.len().max(new.len()) {
        push_token(path, &(idx - shift).to_string());
        match (old.get(idx), new.get(idx)) {
            (Some(o), Some(n)) => diff_value(o, n, path, ops),
            (Some(_), None) => {
                shift += 1;
                ops.push(op("remove", path, None));
            }
            (None, Some(n)) => ops.push(op("add", path, Some(n))),
            (None, None) => unreachable!("idx < max(len)"),
        }
        path.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("object"),
        }
    }

    fn reference(old: &Map<String, Value>, new: &Map<String, Value>) -> Value {
        let p = json_patch::diff(&Value::Object(old.clone()), &Value::Object(new.clone()));
        serde_json::to_value(p).unwrap()
    }

    #[test]
    fn escapes_keys_and_shifts_removed_array_indexes() {
        let old = obj(json!({"a/b": 1, "t~": [1, 2, 3], "gone": true, "n": {"x": 1}}));
        let new = obj(json!({"a/b": 2, "t~": [1], "n": {"x": 1, "y": null}}));
        let p = patch(&old, &new);
        assert_eq!(p, reference(&old, &new));
        assert_eq!(
            p,
            json!([
                {"op": "replace", "path": "/a~1b", "value": 2},
                {"op": "add", "path": "/n/y", "value": null},
                {"op": "remove", "path": "/t~0/1"},
                {"op": "remove", "path": "/t~0/1"},
                {"op": "remove", "path": "/gone"},
            ])
        );
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..3).prop_map(Value::from),
            "[a~/]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec(("[ab~/]{0,2}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn arb_item() -> impl Strategy<Value = Map<String, Value>> {
        proptest::collection::vec(("[a-c/~]{1,2}", arb_value()), 0..5)
            .prop_map(|kv| kv.into_iter().collect())
    }

    proptest! {
        /// The same operations as `json_patch::diff`, and they turn old into new.
        #[test]
        fn matches_json_patch_and_applies(old in arb_item(), new in arb_item()) {
            let p = patch(&old, &new);
            prop_assert_eq!(&p, &reference(&old, &new));
            let mut doc = Value::Object(old);
            json_patch::patch(&mut doc, &serde_json::from_value::<json_patch::Patch>(p).unwrap())
                .unwrap();
            prop_assert_eq!(doc, Value::Object(new));
        }
    }
}
