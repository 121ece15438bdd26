//! The embedded store's small named records (the archive sinks' state): one table keyed by
//! (namespace, key).

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::redb_store::backend;
use super::{RecordWrite, StoreError};

/// (namespace, key) → value.
pub(super) const RECORDS: TableDefinition<(&str, &str), &str> = TableDefinition::new("records");

pub(super) fn get(db: &Database, ns: &str, key: &str) -> Result<Option<String>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let table = match txn.open_table(RECORDS) {
        Ok(t) => t,
        // Created on first write: a store opened read-only before then has none.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(backend(e)),
    };
    let value = table.get((ns, key)).map_err(backend)?;
    Ok(value.map(|v| v.value().to_string()))
}

pub(super) fn put(
    db: &Database,
    ns: &str,
    key: &str,
    value: &str,
    when: RecordWrite,
) -> Result<bool, StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    let written = {
        let mut table = txn.open_table(RECORDS).map_err(backend)?;
        let exists = table.get((ns, key)).map_err(backend)?.is_some();
        let ok = match when {
            RecordWrite::Upsert => true,
            RecordWrite::IfPresent => exists,
            RecordWrite::IfAbsent => !exists,
        };
        if ok {
            table.insert((ns, key), value).map_err(backend)?;
        }
        ok
    };
    txn.commit().map_err(backend)?;
    Ok(written)
}

pub(super) fn delete(db: &Database, ns: &str, key: &str) -> Result<bool, StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    let removed = {
        let mut table = txn.open_table(RECORDS).map_err(backend)?;
        let removed = table.remove((ns, key)).map_err(backend)?.is_some();
        removed
    };
    txn.commit().map_err(backend)?;
    Ok(removed)
}

pub(super) fn list(db: &Database, ns: &str) -> Result<Vec<(String, String)>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let table = match txn.open_table(RECORDS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(backend(e)),
    };
    let mut out = Vec::new();
    for entry in table.range((ns, "")..).map_err(backend)? {
        let (k, v) = entry.map_err(backend)?;
        let (n, key) = k.value();
        if n != ns {
            break;
        }
        out.push((key.to_string(), v.value().to_string()));
    }
    Ok(out)
}
