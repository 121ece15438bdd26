//! Change detection: compares a fetch result with the stored items of a channel.
//!
//! Items are identified by the fetcher's `id_field` (a non-empty string of at most
//! [`MAX_ITEM_ID_BYTES`], or a number) and compared by a 128-bit hash of their content
//! ([`hash`]: XXH3 of a canonical encoding; records of older versions hold a SHA-256, still
//! compared correctly). Only changed items are copied. An entry
//! without such an id is rejected on its own ([`IdProblem`]); the rest of the poll goes on. When an id repeats inside one result, the first occurrence wins and
//! the others are counted as duplicates. Items are `removed` only when the fetcher says the
//! result is `complete`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::store::{StoredItem, StoredItems};

pub mod hash;
mod patch;

pub use hash::{ContentHash, Hasher, Matches};
pub use patch::{patch, Differ, Patch};

/// What happened to one item.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    New,
    /// RFC 6902 patch from the stored version to the new one.
    Updated(Patch),
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
    /// Usable items of the result equal to their stored version.
    pub unchanged: usize,
    /// Unchanged items whose stored hash is of the older SHA-256 scheme, with their current
    /// hash: a poller keeps it in memory so later polls compare without SHA-256.
    pub rehashed: Vec<(String, String)>,
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
    borrowed_item_id(item, id_field).map(Cow::into_owned)
}

/// [`checked_item_id`] without copying a string id.
fn borrowed_item_id<'a>(
    item: &'a Map<String, Value>,
    id_field: &str,
) -> Result<Cow<'a, str>, IdProblem> {
    match item.get(id_field) {
        None => Err(IdProblem::Missing),
        Some(Value::String(s)) if s.is_empty() => Err(IdProblem::Empty),
        Some(Value::String(s)) if s.len() > MAX_ITEM_ID_BYTES => Err(IdProblem::TooLong),
        Some(Value::String(s)) => Ok(Cow::Borrowed(s)),
        Some(Value::Number(n)) => Ok(Cow::Owned(n.to_string())),
        Some(_) => Err(IdProblem::NotScalar),
    }
}

/// The id of `item`, if it has a usable one (see [`checked_item_id`]).
pub fn item_id(item: &Map<String, Value>, id_field: &str) -> Option<String> {
    checked_item_id(item, id_field).ok()
}

/// The stored form of an item's content hash (see [`hash`]): equal content, equal hash.
pub fn content_hash(item: &Map<String, Value>) -> String {
    Hasher::default().hash(item).stored()
}

/// Whether `stored`, a stored item's hash of either scheme, is the hash of `item`.
pub fn same_content(stored: &str, item: &Map<String, Value>) -> bool {
    Hasher::default().hash(item).matches(stored, item) != Matches::Differs
}

/// Compares `items` (one fetch) with `known` (stored, by id). Changes take their items out of
/// `items` (leaving empty objects); unchanged items stay, neither copied nor given an id string.
pub fn diff(
    id_field: &str,
    items: &mut [Map<String, Value>],
    known: &StoredItems,
    complete: bool,
) -> Diff {
    let mut out = Diff::default();
    // Where each new or updated change's item is, filled in once `new_ids` and `differ` no
    // longer borrow them.
    let mut taken = Vec::new();
    // The stored items in id order, found by id through one hash table built per fetch (a
    // lookup in the B-tree compares a dozen ids), with whether this fetch had them: that
    // tells duplicates of stored ids and, read in order, the removals.
    let stored: Vec<(&String, &StoredItem)> = known.iter().collect();
    let mut position = IdMap::with_capacity_and_hasher(stored.len(), Default::default());
    for (i, (id, _)) in stored.iter().enumerate() {
        position.insert(id.as_str(), i);
    }
    let mut fetched = vec![false; stored.len()];
    // Ids of this fetch the store does not hold.
    let mut new_ids: IdSet<'_> = HashSet::default();
    let mut hasher = Hasher::default();
    let mut differ = Differ::default();
    for (index, item) in items.iter().enumerate() {
        let id = match borrowed_item_id(item, id_field) {
            Ok(id) => id,
            Err(problem) => {
                out.bad_ids.push((index, problem));
                continue;
            }
        };
        let old = match position.get(id.as_ref()) {
            Some(&i) if fetched[i] => None,
            Some(&i) => {
                fetched[i] = true;
                Some(Some(stored[i].1))
            }
            None if new_ids.contains(id.as_ref()) => None,
            None => {
                new_ids.insert(id.clone());
                Some(None)
            }
        };
        let Some(old) = old else {
            out.duplicates += 1;
            continue;
        };
        let hash = hasher.hash(item);
        let kind = match old {
            Some(old) => match hash.matches(&old.hash, item) {
                Matches::Same => {
                    out.unchanged += 1;
                    continue;
                }
                Matches::SameLegacy => {
                    out.unchanged += 1;
                    out.rehashed.push((id.into_owned(), hash.stored()));
                    continue;
                }
                Matches::Differs => {
                    differ.compare(&old.data, item);
                    ChangeKind::Updated(differ.patch())
                }
            },
            None => ChangeKind::New,
        };
        taken.push(index);
        out.changes.push(Change {
            kind,
            id: id.into_owned(),
            item: Map::new(),
            hash: hash.stored(),
        });
    }
    drop((new_ids, differ));
    let mut removals = Vec::new();
    // A fetch with unusable entries is not trusted to be complete: removing items because
    // their replacement lacked an id would invent events.
    if complete && out.bad_ids.is_empty() {
        for ((id, old), _) in stored.iter().zip(&fetched).filter(|(_, &seen)| !seen) {
            removals.push(Change {
                kind: ChangeKind::Removed,
                id: (*id).clone(),
                item: old.data.clone(),
                hash: old.hash.clone(),
            });
        }
    }
    for (change, index) in out.changes.iter_mut().zip(taken) {
        change.item = std::mem::take(&mut items[index]);
    }
    out.changes.append(&mut removals);
    out
}

/// Positions of stored items by id, for one fetch. foldhash (hashbrown's default hasher)
/// instead of SipHash, ~4 times cheaper for short ids: every stored id is hashed to build it
/// and every fetched id to look it up. It is seeded at random and lives for one fetch of one
/// channel, so ids crafted to collide could at worst slow that channel's own polls.
type IdMap<'a> = HashMap<&'a str, usize, foldhash::fast::RandomState>;

/// Ids of one fetch the store does not hold.
type IdSet<'a> = HashSet<Cow<'a, str>, foldhash::fast::RandomState>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn stored(v: Value) -> StoredItem {
        let data = obj(v);
        StoredItem {
            id: item_id(&data, "id").unwrap(),
            hash: content_hash(&data),
            data,
            seq: 1,
            first_seen: 0,
            last_changed: 0,
        }
    }

    #[test]
    fn classifies_new_updated_removed_and_unchanged() {
        let known: StoredItems = [
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
        let d = diff("id", &mut items.clone(), &known, true);
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
                    ChangeKind::Updated(Patch::from(
                        json!([{"op": "replace", "path": "/v", "value": 2}])
                    ))
                ),
                ("c", ChangeKind::New),
                ("gone", ChangeKind::Removed),
            ]
        );
        assert_eq!(d.unchanged, 1);
        // Without `complete`, nothing is removed.
        assert!(diff("id", &mut items.clone(), &known, false)
            .changes
            .iter()
            .all(|c| c.kind != ChangeKind::Removed));
    }

    #[test]
    fn unchanged_poll_has_no_changes() {
        let known: StoredItems = [stored(json!({"id": 1, "v": {"a": [1, 2]}}))]
            .into_iter()
            .collect();
        let d = diff(
            "id",
            &mut [obj(json!({"v": {"a": [1, 2]}, "id": 1}))],
            &known,
            true,
        );
        assert!(d.changes.is_empty());
    }

    #[test]
    fn duplicates_and_missing_ids_are_counted_and_block_removals() {
        let known: StoredItems = [stored(json!({"id": "old"}))].into_iter().collect();
        let items = [
            obj(json!({"x": 1})),
            obj(json!({"id": "a", "v": 1})),
            obj(json!({"id": "a", "v": 2})),
            obj(json!({"id": ""})),
        ];
        let d = diff("id", &mut items.clone(), &known, true);
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
        let old = stored(json!({"id": 1, "tags": ["a", "b"], "n": {"x": 1}, "drop": true}));
        let new = obj(json!({"id": 1, "tags": ["b", "c"], "n": {"x": 2, "y": null}}));
        let known: StoredItems = [old.clone()].into_iter().collect();
        let d = diff("id", &mut [new.clone()], &known, false);
        let ChangeKind::Updated(patch) = &d.changes[0].kind else {
            panic!()
        };
        let mut doc = Value::Object(old.data);
        json_patch::patch(
            &mut doc,
            &serde_json::from_value::<json_patch::Patch>(patch.to_value()).unwrap(),
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
        let d = diff("id", &mut items.clone(), &StoredItems::default(), false);
        assert_eq!(
            d.bad_ids,
            vec![
                (0, IdProblem::TooLong),
                (2, IdProblem::NotScalar),
                (3, IdProblem::NotScalar)
            ]
        );
        let kept: Vec<_> = d.changes.iter().map(|c| c.id.len()).collect();
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
            let d = diff("id", &mut items.clone(), &StoredItems::default(), true);
            prop_assert!(d.changes.iter().all(|c| !c.id.is_empty() && c.id.len() <= MAX_ITEM_ID_BYTES));
            prop_assert_eq!(d.changes.len() + d.unchanged + d.duplicates + d.bad_ids.len(), items.len());
        }
    }
}
