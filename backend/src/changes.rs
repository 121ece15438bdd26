//! Change detection: compares a fetch result with the stored items of a channel.
//!
//! Items are identified by the fetcher's `id_field` (a non-empty string of at most
//! [`MAX_ITEM_ID_BYTES`], or a number) and compared by the SHA-256 of their JSON. An entry
//! without such an id is rejected on its own ([`IdProblem`]); the rest of the poll goes on. When an id repeats inside one result, the first occurrence wins and
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
    /// Result entries without a usable id: their index and why.
    pub bad_ids: Vec<(usize, IdProblem)>,
    pub duplicates: usize,
}

/// Longest item id kept, in bytes of UTF-8: an id is part of the store's keys (a DynamoDB
/// sort key holds at most 1024 bytes), so a longer one would fail every commit of its channel.
pub const MAX_ITEM_ID_BYTES: usize = 512;

/// Why an entry's `id_field` is not a usable id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdProblem {
    Missing,
    Empty,
    /// Neither a string nor a number (an object, a list, a boolean, null).
    NotScalar,
    /// A string longer than [`MAX_ITEM_ID_BYTES`].
    TooLong,
}

impl IdProblem {
    /// The `reason` label of `restream_items_rejected_total`.
    pub fn reason(self) -> &'static str {
        match self {
            IdProblem::Missing => "missing",
            IdProblem::Empty => "empty",
            IdProblem::NotScalar => "not_scalar",
            IdProblem::TooLong => "too_long",
        }
    }
}

/// The id of `item`: its `id_field`, a non-empty string of at most [`MAX_ITEM_ID_BYTES`] or a
/// number.
pub fn checked_item_id(item: &Map<String, Value>, id_field: &str) -> Result<String, IdProblem> {
    match item.get(id_field) {
        None => Err(IdProblem::Missing),
        Some(Value::String(s)) if s.is_empty() => Err(IdProblem::Empty),
        Some(Value::String(s)) if s.len() > MAX_ITEM_ID_BYTES => Err(IdProblem::TooLong),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(IdProblem::NotScalar),
    }
}

/// The id of `item`, if it has a usable one (see [`checked_item_id`]).
pub fn item_id(item: &Map<String, Value>, id_field: &str) -> Option<String> {
    checked_item_id(item, id_field).ok()
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
        let id = match checked_item_id(item, id_field) {
            Ok(id) => id,
            Err(problem) => {
                out.bad_ids.push((index, problem));
                continue;
            }
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
    if complete && out.bad_ids.is_empty() {
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
        assert_eq!(
            d.bad_ids,
            vec![(0, IdProblem::Missing), (3, IdProblem::Empty)]
        );
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

    #[test]
    fn ids_are_bounded_and_bad_ones_rejected_alone() {
        let long = "x".repeat(MAX_ITEM_ID_BYTES + 1);
        let longest = "é".repeat(MAX_ITEM_ID_BYTES / 2);
        let items = [
            obj(json!({"id": long})),
            obj(json!({"id": longest, "v": 1})),
            obj(json!({"id": {"nested": 1}})),
            obj(json!({"id": null})),
            obj(json!({"id": 7})),
        ];
        let d = diff("id", &items, &BTreeMap::new(), false);
        assert_eq!(
            d.bad_ids,
            vec![
                (0, IdProblem::TooLong),
                (2, IdProblem::NotScalar),
                (3, IdProblem::NotScalar)
            ]
        );
        let kept: Vec<_> = d.current.iter().map(|(id, _, _)| id.len()).collect();
        assert_eq!(kept, vec![MAX_ITEM_ID_BYTES, 1]);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a fetcher sends as an id, the id kept is within the bound, and an entry
        /// is either kept or rejected with a reason, never both, never neither.
        #[test]
        fn every_entry_is_kept_with_a_bounded_id_or_rejected(ids in proptest::collection::vec(
            prop_oneof![
                ".{0,600}".prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<bool>().prop_map(Value::from),
                Just(Value::Null),
            ],
            0..8,
        )) {
            let items: Vec<Map<String, Value>> = ids
                .iter()
                .map(|id| Map::from_iter([("id".to_string(), id.clone())]))
                .collect();
            let d = diff("id", &items, &BTreeMap::new(), true);
            prop_assert!(d.current.iter().all(|(id, _, _)| !id.is_empty() && id.len() <= MAX_ITEM_ID_BYTES));
            prop_assert_eq!(d.current.len() + d.duplicates + d.bad_ids.len(), items.len());
        }
    }
}
