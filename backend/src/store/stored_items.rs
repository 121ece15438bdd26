//! A channel's stored items in memory, sorted by id: what change detection compares a fetch
//! with. One allocation holds them all, each item once; a B-tree map keyed by id allocated a
//! node of eleven entries for a channel of one item and a second copy of every id (1.3 KB
//! for a one-item channel; ten thousand such channels are 13 MB).

use std::collections::HashSet;

use super::StoredItem;

/// Items by id, in id order (the order of snapshots and of removals).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredItems {
    /// Sorted by id; no two with the same id.
    items: Vec<StoredItem>,
}

/// More removals than this in one commit are applied in one pass over the items instead of a
/// search and a shift each.
const REMOVE_ONE_BY_ONE: usize = 8;

impl StoredItems {
    /// The items of `items` in any order; of two with the same id, the later one.
    pub fn from_unsorted(items: Vec<StoredItem>) -> StoredItems {
        StoredItems {
            items: sorted_last_wins(items),
        }
    }

    fn position(&self, id: &str) -> Result<usize, usize> {
        self.items.binary_search_by(|i| i.id.as_str().cmp(id))
    }

    pub fn get(&self, id: &str) -> Option<&StoredItem> {
        self.position(id).ok().map(|i| &self.items[i])
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut StoredItem> {
        self.position(id).ok().map(|i| &mut self.items[i])
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.position(id).is_ok()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each item with its id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &StoredItem)> {
        self.items.iter().map(|i| (&i.id, i))
    }

    /// The ids, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.items.iter().map(|i| &i.id)
    }

    /// The items, in id order.
    pub fn values(&self) -> std::slice::Iter<'_, StoredItem> {
        self.items.iter()
    }

    /// The items, in id order, to change in place (not their ids).
    pub fn values_mut(&mut self) -> std::slice::IterMut<'_, StoredItem> {
        self.items.iter_mut()
    }

    /// Takes in a commit: `removals` go, then `upserts` replace the items of their ids or join
    /// (of two upserts of one id, the later). A fetch of `n` items with `k` new ones costs
    /// O(n + k log k), not O(n·k).
    pub fn apply(&mut self, removals: &[String], upserts: Vec<StoredItem>) {
        if removals.len() > REMOVE_ONE_BY_ONE {
            let gone: HashSet<&str> = removals.iter().map(String::as_str).collect();
            self.items.retain(|i| !gone.contains(i.id.as_str()));
        } else {
            for id in removals {
                if let Ok(at) = self.position(id) {
                    self.items.remove(at);
                }
            }
        }
        let mut added = Vec::new();
        for item in upserts {
            match self.position(&item.id) {
                Ok(at) => self.items[at] = item,
                Err(_) => added.push(item),
            }
        }
        if !added.is_empty() {
            let added = sorted_last_wins(added);
            self.items.reserve_exact(added.len());
            self.items.extend(added);
            // Two sorted runs: the sort merges them in one pass.
            self.items.sort_by(|a, b| a.id.cmp(&b.id));
        }
        if self.items.capacity() > 2 * self.items.len() + 4 {
            self.items.shrink_to_fit();
        }
    }
}

/// `items` sorted by id, keeping the last of each id.
fn sorted_last_wins(mut items: Vec<StoredItem>) -> Vec<StoredItem> {
    // Reversed, a stable sort puts the last of each id first, where `dedup` keeps it.
    items.reverse();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    items.dedup_by(|later, kept| later.id == kept.id);
    items.shrink_to_fit();
    items
}

impl FromIterator<StoredItem> for StoredItems {
    fn from_iter<I: IntoIterator<Item = StoredItem>>(iter: I) -> StoredItems {
        StoredItems::from_unsorted(iter.into_iter().collect())
    }
}

impl<Q: AsRef<str> + ?Sized> std::ops::Index<&Q> for StoredItems {
    type Output = StoredItem;

    /// The item of `id`; panics if there is none (as a map's index does).
    fn index(&self, id: &Q) -> &StoredItem {
        let id = id.as_ref();
        self.get(id)
            .unwrap_or_else(|| panic!("no stored item {id:?}"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    use super::*;

    fn item(id: &str, v: u64) -> StoredItem {
        let Value::Object(data) = json!({"id": id, "v": v}) else {
            unreachable!()
        };
        StoredItem {
            id: id.into(),
            hash: format!("h{v}"),
            data,
            seq: v,
            first_seen: 0,
            last_changed: 0,
        }
    }

    #[test]
    fn lookups_find_every_item_and_nothing_else() {
        let items: StoredItems = ["b", "a", "c"].iter().map(|id| item(id, 1)).collect();
        assert_eq!(items.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(items.contains_key("b") && !items.contains_key("d"));
        assert_eq!(items["c"].id, "c");
        assert_eq!(items[&"a".to_string()].id, "a");
        assert!(items.get("").is_none());
    }

    #[test]
    fn the_later_of_two_items_with_one_id_wins() {
        let items = StoredItems::from_unsorted(vec![item("a", 1), item("b", 1), item("a", 2)]);
        assert_eq!(items.len(), 2);
        assert_eq!(items["a"].seq, 2);
        let mut applied = StoredItems::default();
        applied.apply(&[], vec![item("x", 1), item("x", 2)]);
        assert_eq!((applied.len(), applied["x"].seq), (1, 2));
    }

    #[test]
    fn a_one_item_channel_holds_room_for_one_item() {
        let mut items = StoredItems::default();
        items.apply(&[], vec![item("only", 1)]);
        assert_eq!(items.items.capacity(), 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Upsert(u8, u64),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..40, 0u64..5).prop_map(|(id, v)| Op::Upsert(id, v)),
            (0u8..40).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Commits applied one after another leave what a map by id would hold, in id order.
        #[test]
        fn commits_leave_what_a_map_would(commits in prop::collection::vec(prop::collection::vec(op(), 0..30), 0..12)) {
            let mut items = StoredItems::default();
            let mut model: BTreeMap<String, StoredItem> = BTreeMap::new();
            for commit in commits {
                let (mut removals, mut upserts) = (Vec::new(), Vec::new());
                for op in commit {
                    match op {
                        Op::Upsert(id, v) => upserts.push(item(&format!("i{id}"), v)),
                        Op::Remove(id) => removals.push(format!("i{id}")),
                    }
                }
                for id in &removals {
                    model.remove(id);
                }
                for u in &upserts {
                    model.insert(u.id.clone(), u.clone());
                }
                items.apply(&removals, upserts);
                let ours: Vec<&StoredItem> = items.values().collect();
                let theirs: Vec<&StoredItem> = model.values().collect();
                prop_assert_eq!(ours, theirs);
            }
            let data: Vec<&Map<String, Value>> = items.values().map(|i| &i.data).collect();
            prop_assert_eq!(data.len(), model.len());
        }
    }
}
