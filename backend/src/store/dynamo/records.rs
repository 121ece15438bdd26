//! How channel state maps onto DynamoDB items: one table, partition key `pk` = channel id,
//! sort key `sk` = `meta` | `item#<item id>` | `event#<20-digit seq>` |
//! `pending#<seq>#<attempt>#<n>`;
//! budgets live under `pk` = `budget#<id>`, `sk` = `budget`; small named records (archive sink
//! state) under `pk` = `record#<namespace>`, `sk` = the key (`named.rs`); cluster leases and
//! replica heartbeats are in `crate::cluster`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::store::{ChannelMeta, LoggedEvent, StoreError, StoredItem};

pub type Record = HashMap<String, AttributeValue>;

pub const META: &str = "meta";
pub const ITEM_PREFIX: &str = "item#";
pub const EVENT_PREFIX: &str = "event#";
pub const PENDING_PREFIX: &str = "pending#";
pub const BUDGET_SK: &str = "budget";
/// The TTL attribute (enable TTL on it): change-log entries and staged chunks expire, and
/// with retention (`store.retention_secs`) a channel's meta and items.
pub const TTL_ATTRIBUTE: &str = "expires_at";

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn key(pk: &str, sk: impl Into<String>) -> Record {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

pub fn item_sk(id: &str) -> String {
    format!("{ITEM_PREFIX}{id}")
}

/// Zero-padded so that sort-key order is seq order.
pub fn event_sk(seq: u64) -> String {
    format!("{EVENT_PREFIX}{seq:020}")
}

pub fn pending_sk(pending: &Pending, chunk: usize) -> String {
    format!(
        "{PENDING_PREFIX}{:020}#{:016x}#{chunk:05}",
        pending.seq, pending.attempt
    )
}

pub fn budget_pk(budget: &str) -> String {
    format!("budget#{budget}")
}

fn corrupt(what: &str, field: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "{what}: attribute {field} missing or of the wrong type"
    ))
}

pub fn get_s<'a>(r: &'a Record, field: &str, what: &str) -> Result<&'a str, StoreError> {
    r.get(field)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| corrupt(what, field))
}

pub fn get_n(r: &Record, field: &str, what: &str) -> Result<u64, StoreError> {
    r.get(field)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(what, field))
}

fn json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// An item record: the item's fields as attributes, its data as a JSON string (DynamoDB maps
/// cannot hold every JSON number exactly).
pub fn item_record(channel: &str, item: &StoredItem) -> Record {
    let mut r = key(channel, item_sk(&item.id));
    r.insert("id".into(), s(&item.id));
    r.insert("hash".into(), s(&item.hash));
    r.insert(
        "data".into(),
        s(serde_json::to_string(&item.data).expect("items serialize")),
    );
    r.insert("seq".into(), n(item.seq));
    r.insert("first_seen".into(), n(item.first_seen));
    r.insert("last_changed".into(), n(item.last_changed));
    r
}

pub fn parse_item(r: &Record) -> Result<StoredItem, StoreError> {
    let what = "stored item";
    Ok(StoredItem {
        id: get_s(r, "id", what)?.to_string(),
        hash: get_s(r, "hash", what)?.to_string(),
        data: json(get_s(r, "data", what)?, what)?,
        seq: get_n(r, "seq", what)?,
        first_seen: get_n(r, "first_seen", what)?,
        last_changed: get_n(r, "last_changed", what)?,
    })
}

pub fn event_record(channel: &str, event: &LoggedEvent, expires_at: u64) -> Record {
    let mut r = key(channel, event_sk(event.seq));
    r.insert("seq".into(), n(event.seq));
    r.insert("message".into(), s(&event.message));
    r.insert("t".into(), n(event.time_ms));
    r.insert(TTL_ATTRIBUTE.into(), n(expires_at));
    r
}

pub fn parse_event(r: &Record) -> Result<LoggedEvent, StoreError> {
    Ok(LoggedEvent {
        seq: get_n(r, "seq", "logged event")?,
        message: get_s(r, "message", "logged event")?.to_string(),
        // Events logged before history existed have no time.
        time_ms: match r.contains_key("t") {
            true => get_n(r, "t", "logged event")?,
            false => 0,
        },
    })
}

/// A commit too large for one transaction, applied in steps after the meta record has
/// switched to the new seq. Its chunks are staged first, so any reader can finish it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// The seq the commit moved the channel to.
    pub seq: u64,
    /// Random per attempt, so racing writers never stage into each other's chunks.
    pub attempt: u64,
    pub chunks: usize,
}

/// What the meta record says.
#[derive(Debug, Default)]
pub struct MetaRecord {
    pub meta: ChannelMeta,
    pub pending: Option<Pending>,
    /// Retention: when DynamoDB's TTL may delete the channel (unix seconds).
    pub expires_at: Option<u64>,
    /// The record exists (and has not expired).
    pub present: bool,
}

pub fn parse_meta(r: Option<&Record>) -> Result<MetaRecord, StoreError> {
    let Some(r) = r else {
        return Ok(MetaRecord::default());
    };
    let what = "channel meta";
    let meta: ChannelMeta = json(get_s(r, "meta", what)?, what)?;
    let pending = match r.get("pending").and_then(|v| v.as_s().ok()) {
        Some(p) => Some(json(p, what)?),
        None => None,
    };
    let expires_at = r
        .get(TTL_ATTRIBUTE)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok());
    Ok(MetaRecord {
        meta,
        pending,
        expires_at,
        present: true,
    })
}

/// One staged part of a large commit.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Chunk {
    pub upserts: Vec<StoredItem>,
    pub removals: Vec<String>,
    pub events: Vec<LoggedEvent>,
}

pub fn parse_chunk(r: &Record) -> Result<Chunk, StoreError> {
    json(get_s(r, "chunk", "staged chunk")?, "staged chunk")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_round_trip() {
        let item = StoredItem {
            id: "a#b".into(),
            hash: "h".into(),
            data: json!({"id": "a#b", "n": 12345678901234567890u64, "f": 0.1})
                .as_object()
                .unwrap()
                .clone(),
            seq: 7,
            first_seen: 1,
            last_changed: 2,
        };
        assert_eq!(parse_item(&item_record("c", &item)).unwrap(), item);
        let e = LoggedEvent::new(42, "{}", 1_700_000_000_123);
        assert_eq!(parse_event(&event_record("c", &e, 9)).unwrap(), e);
    }

    #[test]
    fn event_keys_sort_by_seq() {
        assert!(event_sk(9) < event_sk(10));
        assert!(event_sk(99_999) < event_sk(100_000));
        assert_eq!(event_sk(u64::MAX).len(), EVENT_PREFIX.len() + 20);
    }

    #[test]
    fn broken_records_are_corrupt_not_panics() {
        let mut r = key("c", "item#x");
        r.insert("id".into(), n(5));
        assert!(matches!(parse_item(&r), Err(StoreError::Corrupt(_))));
        let mut m = key("c", META);
        m.insert("meta".into(), s("{nope"));
        assert!(matches!(parse_meta(Some(&m)), Err(StoreError::Corrupt(_))));
    }
}
