//! The RFC 6902 patch of an `updated` event, written straight as compact JSON text from the two
//! borrowed versions of an item: the same operations, in the same order, as `json_patch::diff`,
//! and the same bytes serde_json writes for them as a `Value` (a property test compares both),
//! without copying either version or building a map per operation.

use std::fmt::{self, Write as _};
use std::ops::Range;

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// An RFC 6902 patch (a JSON array of operations) held as its compact JSON text; serialized
/// as that text, verbatim.
#[derive(Clone)]
pub struct Patch(Box<RawValue>);

impl Patch {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The patch as a `Value` (parses the text).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.as_str()).expect("a patch is JSON text")
    }
}

/// A patch given as a value (an array of operations), e.g. by a test or a seeding tool.
impl From<Value> for Patch {
    fn from(value: Value) -> Self {
        Patch(serde_json::value::to_raw_value(&value).expect("values serialize"))
    }
}

impl PartialEq for Patch {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for Patch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Patch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// The patch from `old` to `new`: `replace` where a scalar (or a value of another type)
/// differs, `add`/`remove` for keys and array tail elements, objects and arrays compared
/// member by member.
pub fn patch(old: &Map<String, Value>, new: &Map<String, Value>) -> Patch {
    let mut ops = Ops::default();
    let mut path = String::new();
    diff_object(old, new, &mut path, &mut ops);
    Patch(serde_json::value::to_raw_value(&ops).expect("patches serialize"))
}

/// The operations found so far; their paths are ranges of one string.
#[derive(Default)]
struct Ops<'a> {
    paths: String,
    ops: Vec<(&'static str, Range<usize>, Option<&'a Value>)>,
}

impl<'a> Ops<'a> {
    fn push(&mut self, kind: &'static str, path: &str, value: Option<&'a Value>) {
        let start = self.paths.len();
        self.paths.push_str(path);
        self.ops.push((kind, start..self.paths.len(), value));
    }
}

/// One operation as serde_json writes a `{"op", "path", "value"}` map: keys in that (sorted)
/// order, `value` only where there is one.
#[derive(Serialize)]
struct Op<'a> {
    op: &'static str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a Value>,
}

impl Serialize for Ops<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.ops.len()))?;
        for (op, range, value) in &self.ops {
            seq.serialize_element(&Op {
                op,
                path: &self.paths[range.clone()],
                value: *value,
            })?;
        }
        seq.end()
    }
}

/// Appends `/token` to a JSON pointer, escaping `~` and `/`.
fn push_token(path: &mut String, token: &str) {
    path.push('/');
    if !token.contains(['~', '/']) {
        path.push_str(token);
        return;
    }
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

fn diff_value<'a>(old: &Value, new: &'a Value, path: &mut String, ops: &mut Ops<'a>) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => diff_object(o, n, path, ops),
        (Value::Array(o), Value::Array(n)) => diff_array(o, n, path, ops),
        _ if old == new => {}
        _ => ops.push("replace", path, Some(new)),
    }
}

/// Walks both maps side by side: their keys come in sorted order (serde_json's `Map` is a
/// `BTreeMap`; a test here checks it), so no key is looked up.
fn diff_object<'a>(
    old: &Map<String, Value>,
    new: &'a Map<String, Value>,
    path: &mut String,
    ops: &mut Ops<'a>,
) {
    let len = path.len();
    let mut olds = old.iter().peekable();
    let mut removed = false;
    for (key, new_value) in new {
        while olds.next_if(|(k, _)| k.as_str() < key.as_str()).is_some() {
            removed = true;
        }
        push_token(path, key);
        match olds.next_if(|(k, _)| *k == key) {
            Some((_, old_value)) => diff_value(old_value, new_value, path, ops),
            None => ops.push("add", path, Some(new_value)),
        }
        path.truncate(len);
    }
    // Removals come after every other operation on this object, in key order.
    if removed || olds.peek().is_some() {
        for key in old.keys() {
            if !new.contains_key(key) {
                push_token(path, key);
                ops.push("remove", path, None);
                path.truncate(len);
            }
        }
    }
}

fn diff_array<'a>(old: &[Value], new: &'a [Value], path: &mut String, ops: &mut Ops<'a>) {
    let len = path.len();
    let mut shift = 0usize;
    for idx in 0..old.len().max(new.len()) {
        // An index needs no escaping.
        write!(path, "/{}", idx - shift).expect("writing to a String");
        match (old.get(idx), new.get(idx)) {
            (Some(o), Some(n)) => diff_value(o, n, path, ops),
            (Some(_), None) => {
                shift += 1;
                ops.push("remove", path, None);
            }
            (None, Some(n)) => ops.push("add", path, Some(n)),
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
        assert_eq!(p.to_value(), reference(&old, &new));
        assert_eq!(
            p.to_value(),
            json!([
                {"op": "replace", "path": "/a~1b", "value": 2},
                {"op": "add", "path": "/n/y", "value": null},
                {"op": "remove", "path": "/t~0/1"},
                {"op": "remove", "path": "/t~0/1"},
                {"op": "remove", "path": "/gone"},
            ])
        );
    }

    #[test]
    fn maps_iterate_in_key_order() {
        let m: Map<String, Value> = [("b", 1), ("a", 2), ("ab", 3), ("B", 4)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
        let keys: Vec<_> = m.keys().map(String::as_str).collect();
        assert_eq!(keys, ["B", "a", "ab", "b"]);
    }

    #[test]
    fn serializes_as_its_text_and_as_the_value_would() {
        let old = obj(json!({"id": "a", "s": "x\"y", "n": 1.5, "gone": [1]}));
        let new = obj(json!({"id": "a", "s": "x\u{1}é", "n": 2, "new": {"k": [true, null]}}));
        let p = patch(&old, &new);
        let value = reference(&old, &new);
        assert_eq!(p.as_str(), serde_json::to_string(&value).unwrap());
        assert_eq!(serde_json::to_string(&p).unwrap(), p.as_str());
        assert_eq!(
            serde_json::to_string(&json!({"patch": p, "seq": 1})).unwrap(),
            serde_json::to_string(&json!({"patch": value, "seq": 1})).unwrap()
        );
        assert_eq!(Patch::from(value), p);
        assert_eq!(patch(&old, &old).as_str(), "[]");
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..3).prop_map(Value::from),
            (-2.0f64..2.0).prop_map(Value::from),
            "[a~/\"é]{0,2}".prop_map(Value::from),
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
        /// The same operations as `json_patch::diff`, written as the same bytes as its value,
        /// and they turn old into new.
        #[test]
        fn matches_json_patch_and_applies(old in arb_item(), new in arb_item()) {
            let p = patch(&old, &new);
            let reference = reference(&old, &new);
            prop_assert_eq!(p.as_str(), serde_json::to_string(&reference).unwrap());
            prop_assert_eq!(p.to_value(), reference);
            let mut doc = Value::Object(old);
            json_patch::patch(&mut doc, &serde_json::from_value::<json_patch::Patch>(p.to_value()).unwrap())
                .unwrap();
            prop_assert_eq!(doc, Value::Object(new));
        }
    }
}
