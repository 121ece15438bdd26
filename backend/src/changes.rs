//! Change detection: compares a fetch result with the stored items of a channel.
//!
//! Items are identified by the fetcher's `id_field` (a string or number) and compared by the
//! SHA-256 of their JSON. When an id repeats inside one result, the first occurrence wins and
//! the others are counted as duplicates. Items are `removed` only when the fetcher says the
//! result is `complete`.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::store::StoredItem;

/// What happened to one item.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    New,
    /// RFC 6902 patch from the stored version to the new one.
    Updated(Value),
    Removed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: ChangeKind,
    pub id: String,
    /// The new item (for `Removed`, the last stored one).
    pub item: Map<String, Value>,
    pub hash: String,
}

/// The result of comparing one fetch with the stored state.
#[derive(Debug, Default)]
pub struct Diff {
    /// New and updated items in fetch order, then removals in id order.
    pub changes: Vec<Change>,
    /// Every usable item of the result, first occurrence per id, in fetch order.
    pub current: Vec<(String, String, Map<String, Value>)>,
    /// Indexes of result entries without a usable id.
    pub missing_id: Vec<usize>,
    pub duplicates: usize,
}

/// The id of `item`, if its `id_field` is a non-empty string or a number.
pub fn item_id(item: &Map<String, Value>, id_field: &str) -> Option<String> {
    match item.get(id_field) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Hex SHA-256 of an item's JSON (keys are sorted, so equal content hashes equally).
pub fn content_hash(item: &Map<String, Value>) -> String {
    let digest = Sha256::digest(serde_json::to_vec(item).expect("items serialize"));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares `items` (one fetch) with `known` (stored, by id).
pub fn diff(
    id_field: &str,
    items: &[Map<String, Value>],
    known: &BTreeMap<String, StoredItem>,
    complete: bool,
) -> Diff {
    let mut out = Diff::default();
    let mut seen = HashSet::new();
    for (index, item) in items.iter().enumerate() {
        let Some(id) = item_id(item, id_field) else {
            out.missing_id.push(index);
            continue;
        };
        if !seen.insert(id.clone()) {
            out.duplicates += 1;
            continue;
        }
        let hash = content_hash(item);
        match known.get(&id) {
            Some(old) if old.hash == hash => {}
            Some(old) => {
                let patch = json_patch::diff(
                    &Value::Object(old.data.clone()),
                    &Value::Object(item.clone()),
                );
                out.changes.push(Change {
                    kind: ChangeKind::Updated(
                        serde_json::to_value(patch).expect("patches serialize"),
                    ),
                    id: id.clone(),
                    item: item.clone(),
                    hash: hash.clone(),
                });
            }
            None => out.changes.push(Change {
                kind: ChangeKind::New,
                id: id.clone(),
                item: item.clone(),
                hash: hash.clone(),
            }),
        }
        out.current.push((id, hash, item.clone()));
    }
    // A fetch with unusable entries is not trusted to be complete: removing items because
    // their replacement lacked an id would invent events.
    if complete && out.missing_id.is_empty() {
        for (id, old) in known {
            if !seen.contains(id) {
                out.changes.push(Change {
                    kind: ChangeKind::Removed,
                    id: id.clone(),
                    item: old.data.clone(),
                    hash: old.hash.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn stored(v: Value) -> (String, StoredItem) {
        let data = obj(v);
        let id = item_id(&data, "id").unwrap();
        (
            id.clone(),
            StoredItem {
                id,
                hash: content_hash(&data),
                data,
                seq: 1,
                first_seen: 0,
                last_changed: 0,
            },
        )
    }

    #[test]
    fn classifies_new_updated_removed_and_unchanged() {
        let known: BTreeMap<_, _> = [
            stored(json!({"id": 1, "v": 1})),
            stored(json!({"id": "b", "v": 1})),
            stored(json!({"id": "gone"})),
        ]
        .into_iter()
        .collect();
        let items = [
            obj(json!({"id": 1, "v": 2})),
            obj(json!({"id": "b", "v": 1})),
            obj(json!({"id": "c"})),
        ];
        let d = diff("id", &items, &known, true);
        let kinds: Vec<_> = d
            .changes
            .iter()
            .map(|c| (c.id.as_str(), c.kind.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (
                    "1",
                    ChangeKind::Updated(json!([{"op": "replace", "path": "/v", "value": 2}]))
                ),
                ("c", ChangeKind::New),
                ("gone", ChangeKind::Removed),
            ]
        );
        assert_eq!(d.current.len(), 3);
        // Without `complete`, nothing is removed.
        assert!(diff("id", &items, &known, false)
            .changes
            .iter()
            .all(|c| c.kind != ChangeKind::Removed));
    }

    #[test]
    fn unchanged_poll_has_no_changes() {
        let known: BTreeMap<_, _> = [stored(json!({"id": 1, "v": {"a": [1, 2]}}))]
            .into_iter()
            .collect();
        let d = diff(
            "id",
            &[obj(json!({"v": {"a": [1, 2]}, "id": 1}))],
            &known,
            true,
        );
        assert!(d.changes.is_empty());
    }

    #[test]
    fn duplicates_and_missing_ids_are_counted_and_block_removals() {
        let known: BTreeMap<_, _> = [stored(json!({"id": "old"}))].into_iter().collect();
        let items = [
            obj(json!({"x": 1})),
            obj(json!({"id": "a", "v": 1})),
            obj(json!({"id": "a", "v": 2})),
            obj(json!({"id": ""})),
        ];
        let d = diff("id", &items, &known, true);
        assert_eq!(d.missing_id, vec![0, 3]);
        assert_eq!(d.duplicates, 1);
        assert_eq!(
            d.changes.len(),
            1,
            "first 'a' only, and no removal of 'old'"
        );
        assert_eq!(d.changes[0].item["v"], json!(1));
    }

    #[test]
    fn patches_apply_to_the_old_version() {
        let (_, old) = stored(json!({"id": 1, "tags": ["a", "b"], "n": {"x": 1}, "drop": true}));
        let new = obj(json!({"id": 1, "tags": ["b", "c"], "n": {"x": 2, "y": null}}));
        let known: BTreeMap<_, _> = [("1".to_string(), old.clone())].into_iter().collect();
        let d = diff("id", std::slice::from_ref(&new), &known, false);
        let ChangeKind::Updated(patch) = &d.changes[0].kind else {
            panic!()
        };
        let mut doc = Value::Object(old.data);
        json_patch::patch(
            &mut doc,
            &serde_json::from_value::<json_patch::Patch>(patch.clone()).unwrap(),
        )
        .unwrap();
        assert_eq!(doc, Value::Object(new));
    }
}
