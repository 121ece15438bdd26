//! The idempotency keys a push channel remembers, kept in its stored meta (the fetcher state a
//! push channel has no other use for), so a key is committed atomically with its batch.
//! Stored as `{"idempotency": [[key hash, batch hash, seq, new, updated, removed, unchanged],
//! ...]}`, oldest first; keys are kept as a hash (they may be long, and are the producer's).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::push::PushReceipt;

/// One remembered batch.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    key: String,
    pub(super) batch: String,
    pub(super) receipt: PushReceipt,
}

#[derive(Debug, Default)]
pub(super) struct Remembered(Vec<Entry>);

fn key_hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

impl Remembered {
    /// What `state` holds; anything unreadable is forgotten rather than failing the channel.
    pub(super) fn read(state: Option<&Value>) -> Remembered {
        let entries = state
            .and_then(|s| s.get("idempotency"))
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(entry).collect())
            .unwrap_or_default();
        Remembered(entries)
    }

    pub(super) fn find(&self, key: &str) -> Option<&Entry> {
        let key = key_hash(key);
        self.0.iter().find(|e| e.key == key)
    }

    /// Remembers a committed batch; the oldest go beyond `capacity`.
    pub(super) fn push(
        &mut self,
        key: &str,
        batch: String,
        receipt: &PushReceipt,
        capacity: usize,
    ) {
        self.0.push(Entry {
            key: key_hash(key),
            batch,
            receipt: receipt.clone(),
        });
        let excess = self.0.len().saturating_sub(capacity);
        self.0.drain(..excess);
    }

    pub(super) fn to_value(&self) -> Value {
        let list: Vec<Value> = self
            .0
            .iter()
            .map(|e| {
                let r = &e.receipt;
                json!([
                    e.key,
                    e.batch,
                    r.seq,
                    r.new,
                    r.updated,
                    r.removed,
                    r.unchanged
                ])
            })
            .collect();
        json!({ "idempotency": list })
    }
}

fn entry(v: &Value) -> Option<Entry> {
    let a = v.as_array()?;
    let text = |i: usize| a.get(i)?.as_str().map(str::to_owned);
    let n = |i: usize| a.get(i)?.as_u64();
    Some(Entry {
        key: text(0)?,
        batch: text(1)?,
        receipt: PushReceipt {
            seq: n(2)?,
            new: n(3)? as usize,
            updated: n(4)? as usize,
            removed: n(5)? as usize,
            unchanged: n(6)? as usize,
            replayed: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_the_state_and_stay_bounded() {
        let mut r = Remembered::default();
        for i in 0..5u64 {
            let receipt = PushReceipt {
                seq: i,
                new: 1,
                ..PushReceipt::default()
            };
            r.push(&format!("k{i}"), format!("b{i}"), &receipt, 3);
        }
        let back = Remembered::read(Some(&r.to_value()));
        assert!(back.find("k0").is_none() && back.find("k1").is_none());
        let e = back.find("k4").unwrap();
        assert_eq!((e.batch.as_str(), e.receipt.seq), ("b4", 4));
        assert_eq!(back.0.len(), 3);
        assert!(Remembered::read(Some(&json!({"idempotency": [1, [2]]})))
            .0
            .is_empty());
        assert!(Remembered::read(Some(&json!("etag"))).0.is_empty());
    }
}
