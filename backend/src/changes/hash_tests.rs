//! Content hashes: equal values hash equally whatever their key order, different ones differ,
//! and hashes of the older SHA-256 scheme still compare.

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("object"),
    }
}

fn hash(item: &Map<String, Value>) -> ContentHash {
    Hasher::default().hash(item)
}

#[test]
fn the_stored_form_is_prefixed_hex() {
    let text = hash(&obj(json!({"id": 1}))).to_string();
    assert!(text.starts_with("x3:"), "{text}");
    assert_eq!(text.len(), 35);
    assert!(text[3..]
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
}

/// Stored hashes must stay valid: the scheme's output for a fixed item never changes.
#[test]
fn the_scheme_is_stable() {
    let item = obj(json!({
        "id": "us7000abcd",
        "n": {"mag": 4.5, "sig": 312, "neg": -7, "tz": null, "ok": true, "no": false},
        "coordinates": [-117.5, 35.25, 8.1],
        "title": "M 4.5 - 5 km SW of Ridgecrest, CA",
        "long": "x".repeat(200),
    }));
    assert_eq!(
        hash(&item).to_string(),
        "x3:6b566d031d84084886e1120c449999ce"
    );
}

#[test]
fn types_and_nesting_are_told_apart() {
    let cases = [
        json!({"v": 1}),
        json!({"v": 1.0}),
        json!({"v": -1}),
        json!({"v": "1"}),
        json!({"v": [1]}),
        json!({"v": {"1": null}}),
        json!({"v": null}),
        json!({"v": false}),
        json!({"v": true}),
        json!({"v": ["a", "b"]}),
        json!({"v": ["ab"]}),
        json!({"v": [["a"], "b"]}),
        json!({"v": [], "w": []}),
        json!({"v": [[]], "w": 0}),
        json!({"vw": 1}),
        json!({"v": "w"}),
    ];
    let hashes: Vec<_> = cases.iter().map(|v| hash(&obj(v.clone()))).collect();
    for (i, a) in hashes.iter().enumerate() {
        for (j, b) in hashes.iter().enumerate() {
            assert_eq!(i == j, a == b, "{} vs {}", cases[i], cases[j]);
        }
    }
}

#[test]
fn negative_zero_equals_zero_as_json_values_do() {
    let (a, b) = (obj(json!({"v": 0.0})), obj(json!({"v": -0.0})));
    assert_eq!(a, b);
    assert_eq!(hash(&a), hash(&b));
}

#[test]
fn legacy_hashes_compare_with_the_content_they_were_made_of() {
    let item = obj(json!({"id": "a", "v": [1, 2.5, "x"], "n": {"b": null, "a": true}}));
    // What older versions stored: hex SHA-256 of the item's JSON text, keys sorted.
    let text = r#"{"id":"a","n":{"a":true,"b":null},"v":[1,2.5,"x"]}"#;
    let digest = Sha256::digest(text.as_bytes());
    let legacy: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(legacy_hash(&item), legacy);
    let h = hash(&item);
    assert_eq!(h.matches(&legacy, &item), Matches::SameLegacy);
    let changed = obj(json!({"id": "a", "v": [1, 2.5, "y"], "n": {"b": null, "a": true}}));
    assert_eq!(hash(&changed).matches(&legacy, &changed), Matches::Differs);
    assert_eq!(h.matches(&h.to_string(), &item), Matches::Same);
    assert_eq!(
        hash(&changed).matches(&h.to_string(), &changed),
        Matches::Differs
    );
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-c]{0,3}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-d]{0,2}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn arb_item() -> impl Strategy<Value = Vec<(String, Value)>> {
    proptest::collection::vec(("[a-f]{1,2}", arb_value()), 0..6)
}

/// The same entries inserted in the opposite order, nested objects too.
fn reversed(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .rev()
                .map(|(k, v)| (k.clone(), reversed(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(reversed).collect()),
        other => other.clone(),
    }
}

proptest! {
    /// Equal items hash equally whatever the order their keys came in (also through a JSON
    /// text round trip), and items that differ hash differently.
    #[test]
    fn equal_items_hash_equally_and_different_ones_differ(
        a in arb_item(),
        b in arb_item(),
    ) {
        let a: Map<String, Value> = a.into_iter().collect();
        let b: Map<String, Value> = b.into_iter().collect();
        let Value::Object(a_rev) = reversed(&Value::Object(a.clone())) else { unreachable!() };
        prop_assert_eq!(&a, &a_rev);
        prop_assert_eq!(hash(&a), hash(&a_rev));
        let text = serde_json::to_string(&a).unwrap();
        let reparsed: Map<String, Value> = serde_json::from_str(&text).unwrap();
        if reparsed == a {
            prop_assert_eq!(hash(&reparsed), hash(&a));
        }
        prop_assert_eq!(a == b, hash(&a) == hash(&b));
        // The legacy comparison agrees with the current one on equal content.
        let legacy = legacy_hash(&a);
        prop_assert_eq!(hash(&a_rev).matches(&legacy, &a_rev), Matches::SameLegacy);
    }
}
