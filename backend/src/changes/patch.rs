//! The RFC 6902 patch of an `updated` event, written straight as compact JSON text from the two
//! borrowed versions of an item: the same operations, in the same order, as `json_patch::diff`,
//! and the same bytes serde_json writes for them as a `Value` (a property test compares both),
//! without copying either version or building a map per operation.

use std::cmp::Ordering;
use std::fmt;
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
    let mut differ = Differ::default();
    differ.compare(old, new);
    differ.patch()
}

/// Compares versions of items, keeping the operations of the last comparison; its buffers are
/// reused from one comparison to the next. Comparing is the patch's walk: two versions are
/// equal exactly when it finds no operation.
#[derive(Default)]
pub struct Differ<'a> {
    ops: Ops<'a>,
    path: String,
}

impl<'a> Differ<'a> {
    /// Compares `old` with `new`; true when they differ (then [`Differ::patch`] is their patch).
    /// A JSON pointer is written only for an operation or a nested container, not for each
    /// equal member.
    pub fn compare(&mut self, old: &Map<String, Value>, new: &'a Map<String, Value>) -> bool {
        self.ops.clear();
        self.path.clear();
        diff_object(old, new, &mut self.path, &mut self.ops);
        !self.ops.ops.is_empty()
    }

    /// The patch of the last comparison.
    pub fn patch(&self) -> Patch {
        Patch(serde_json::value::to_raw_value(&self.ops).expect("patches serialize"))
    }
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

    fn clear(&mut self) {
        self.paths.clear();
        self.ops.clear();
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

/// One step of a JSON pointer: an object key or an array index.
#[derive(Debug, Clone, Copy)]
enum Token<'k> {
    Key(&'k str),
    Index(usize),
}

impl Token<'_> {
    /// Appends `/token` to a JSON pointer, escaping `~` and `/` in a key.
    fn push_to(self, path: &mut String) {
        path.push('/');
        match self {
            Token::Key(key) if !key.bytes().any(|b| b == b'~' || b == b'/') => path.push_str(key),
            Token::Key(key) => {
                for c in key.chars() {
                    match c {
                        '~' => path.push_str("~0"),
                        '/' => path.push_str("~1"),
                        c => path.push(c),
                    }
                }
            }
            Token::Index(index) => push_decimal(path, index),
        }
    }
}

/// Appends `n` in decimal (without `fmt`: an index is written for every array element that
/// differs).
fn push_decimal(path: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    path.push_str(std::str::from_utf8(&digits[start..]).expect("ASCII digits"));
}

/// Compares the member `token` of both versions (the path so far leads to their container).
fn diff_value<'a>(
    old: &Value,
    new: &'a Value,
    token: Token<'_>,
    path: &mut String,
    ops: &mut Ops<'a>,
) {
    let len = path.len();
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            token.push_to(path);
            diff_object(o, n, path, ops);
        }
        (Value::Array(o), Value::Array(n)) => {
            token.push_to(path);
            diff_array(o, n, path, ops);
        }
        _ if old == new => {}
        _ => {
            token.push_to(path);
            ops.push("replace", path, Some(new));
        }
    }
    path.truncate(len);
}

/// Pushes operation `kind` at the member `token` of the container `path` leads to.
fn push_at<'a>(
    ops: &mut Ops<'a>,
    kind: &'static str,
    path: &mut String,
    token: Token<'_>,
    value: Option<&'a Value>,
) {
    let len = path.len();
    token.push_to(path);
    ops.push(kind, path, value);
    path.truncate(len);
}

/// Walks both maps side by side: their keys come in sorted order (serde_json's `Map` is a
/// `BTreeMap`; a test here checks it), so no key is looked up and each pair of keys is
/// compared once.
fn diff_object<'a>(
    old: &Map<String, Value>,
    new: &'a Map<String, Value>,
    path: &mut String,
    ops: &mut Ops<'a>,
) {
    let mut olds = old.iter().peekable();
    let mut removed = false;
    for (key, new_value) in new {
        let old_value = loop {
            let Some((old_key, old_value)) = olds.peek() else {
                break None;
            };
            match old_key.as_str().cmp(key.as_str()) {
                Ordering::Less => removed = true,
                Ordering::Equal => break Some(*old_value),
                Ordering::Greater => break None,
            }
            olds.next();
        };
        match old_value {
            Some(old_value) => {
                olds.next();
                diff_value(old_value, new_value, Token::Key(key), path, ops);
            }
            None => push_at(ops, "add", path, Token::Key(key), Some(new_value)),
        }
    }
    // Removals come after every other operation on this object, in key order.
    if removed || olds.peek().is_some() {
        for key in old.keys() {
            if !new.contains_key(key) {
                push_at(ops, "remove", path, Token::Key(key), None);
            }
        }
    }
}

fn diff_array<'a>(old: &[Value], new: &'a [Value], path: &mut String, ops: &mut Ops<'a>) {
    let mut shift = 0usize;
    for idx in 0..old.len().max(new.len()) {
        let token = Token::Index(idx - shift);
        match (old.get(idx), new.get(idx)) {
            (Some(o), Some(n)) => diff_value(o, n, token, path, ops),
            (Some(_), None) => {
                shift += 1;
                push_at(ops, "remove", path, token, None);
            }
            (None, Some(n)) => push_at(ops, "add", path, token, Some(n)),
            (None, None) => unreachable!("idx < max(len)"),
        }
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
    fn long_arrays_have_decimal_indexes() {
        let old = obj(json!({"a": (0..25).collect::<Vec<_>>()}));
        let new = obj(json!({"a": (0..25).map(|i| i * (i % 11)).collect::<Vec<_>>()}));
        let p = patch(&old, &new);
        assert_eq!(p.to_value(), reference(&old, &new));
        assert!(p.as_str().contains(r#""path":"/a/22""#), "{p:?}");
    }

    #[test]
    fn a_differ_is_reused_and_equal_versions_have_no_operations() {
        let a = obj(json!({"id": 1, "n": {"x": [1, 2]}}));
        let b = obj(json!({"id": 1, "n": {"x": [1, 3]}}));
        let same = a.clone();
        let mut differ = Differ::default();
        assert!(differ.compare(&a, &b));
        assert_eq!(differ.patch(), patch(&a, &b));
        assert!(!differ.compare(&a, &same));
        assert_eq!(differ.patch().as_str(), "[]");
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
            prop_assert_eq!(Differ::default().compare(&old, &new), old != new);
            prop_assert_eq!(p.as_str(), serde_json::to_string(&reference).unwrap());
            prop_assert_eq!(p.to_value(), reference);
            let mut doc = Value::Object(old);
            json_patch::patch(&mut doc, &serde_json::from_value::<json_patch::Patch>(p.to_value()).unwrap())
                .unwrap();
            prop_assert_eq!(doc, Value::Object(new));
        }
    }
}
