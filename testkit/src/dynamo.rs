//! What a DynamoDB client sends: an SDK interceptor that logs each request's operation (its
//! `X-Amz-Target`) and how many records a write request puts, updates or deletes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use serde_json::Value;

/// DynamoDB operations that write.
pub const WRITE_OPERATIONS: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
];

/// One request, as sent.
#[derive(Debug, Clone)]
pub struct Request {
    pub operation: String,
    /// Records the request writes or deletes (0 for a read).
    pub records: u64,
    /// Write capacity units it costs, estimated from the item sizes it sends (0 for a read).
    pub write_units: u64,
    /// The `pk` of the (first) record it writes; empty for a read or a batch.
    pub pk: String,
}

/// Add it to a client's config (`.interceptor(log.clone())`); clones share the log.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<Request>>>);

impl RequestLog {
    fn requests(&self) -> MutexGuard<'_, Vec<Request>> {
        self.0.lock().expect("request log")
    }

    pub fn clear(&self) {
        self.requests().clear();
    }

    /// The operations of the write requests, in order.
    pub fn write_operations(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| WRITE_OPERATIONS.contains(&r.operation.as_str()))
            .map(|r| r.operation.clone())
            .collect()
    }

    /// Requests sent so far, by operation.
    pub fn by_operation(&self) -> HashMap<String, u64> {
        let mut counts = HashMap::new();
        for r in self.requests().iter() {
            *counts.entry(r.operation.clone()).or_default() += 1;
        }
        counts
    }

    /// Records written or deleted so far.
    pub fn records_written(&self) -> u64 {
        self.requests().iter().map(|r| r.records).sum()
    }

    /// Write capacity units spent so far (see [`write_units`]).
    pub fn write_units(&self) -> u64 {
        self.requests().iter().map(|r| r.write_units).sum()
    }

    /// Write capacity units spent so far by requests whose first record's `pk` starts with
    /// `prefix` (e.g. `budget#`, `lease#`).
    pub fn write_units_for(&self, prefix: &str) -> (u64, u64) {
        let r = self.requests();
        let hits = r.iter().filter(|r| r.pk.starts_with(prefix));
        hits.fold((0, 0), |(n, w), r| (n + 1, w + r.write_units))
    }
}

/// DynamoDB's size of an attribute value: strings and binaries by length, numbers about one
/// byte per two digits plus one, lists/maps 3 bytes plus their elements (and map keys).
fn value_size(v: &Value) -> u64 {
    let Some((kind, v)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" | "B" => v.as_str().map_or(0, |s| s.len() as u64),
        "N" => v.as_str().map_or(1, |s| s.len() as u64 / 2 + 1),
        "BOOL" | "NULL" => 1,
        "L" => 3 + v.as_array().map_or(0, |a| a.iter().map(value_size).sum()),
        "M" => 3 + item_size(v),
        "SS" | "NS" | "BS" => v.as_array().map_or(0, |a| {
            a.iter()
                .map(|s| s.as_str().map_or(0, |s| s.len() as u64))
                .sum()
        }),
        _ => 0,
    }
}

/// DynamoDB's size of an item: every attribute's name plus its value.
fn item_size(item: &Value) -> u64 {
    item.as_object().map_or(0, |o| {
        o.iter()
            .map(|(name, v)| name.len() as u64 + value_size(v))
            .sum()
    })
}

/// Write units of one item of `bytes`: one per started KB.
fn units(bytes: u64) -> u64 {
    bytes.div_ceil(1024).max(1)
}

/// Write capacity units of one write request, from what it sends: a put by its item's size,
/// an update by its key and values (the stored item is unknown here; right for small items),
/// a delete 1, a batch the sum, a transaction twice its items'. An estimate for comparing runs,
/// not DynamoDB's bill.
pub fn write_units(operation: &str, body: &Value) -> u64 {
    let update =
        |b: &Value| units(item_size(&b["Key"]) + item_size(&b["ExpressionAttributeValues"]));
    match operation {
        "PutItem" => units(item_size(&body["Item"])),
        "UpdateItem" => update(body),
        "DeleteItem" => 1,
        "BatchWriteItem" => body["RequestItems"].as_object().map_or(0, |tables| {
            tables
                .values()
                .flat_map(|r| r.as_array().cloned().unwrap_or_default())
                .map(|r| match r.get("PutRequest") {
                    Some(p) => units(item_size(&p["Item"])),
                    None => 1,
                })
                .sum()
        }),
        "TransactWriteItems" => body["TransactItems"].as_array().map_or(0, |a| {
            a.iter()
                .map(|t| {
                    2 * if let Some(p) = t.get("Put") {
                        units(item_size(&p["Item"]))
                    } else if let Some(u) = t.get("Update") {
                        update(u)
                    } else {
                        1
                    }
                })
                .sum()
        }),
        _ => 0,
    }
}

/// The `pk` of the first record a request names.
fn first_pk(body: &Value) -> String {
    let pk = |v: &Value| v["pk"]["S"].as_str().map(str::to_string);
    pk(&body["Item"])
        .or_else(|| pk(&body["Key"]))
        .unwrap_or_default()
}

impl Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "RequestLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let request = context.request();
        let target = request.headers().get("x-amz-target").unwrap_or_default();
        let operation = target.rsplit('.').next().unwrap_or_default().to_string();
        let body = || {
            request
                .body()
                .bytes()
                .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        };
        let records = match operation.as_str() {
            "PutItem" | "UpdateItem" | "DeleteItem" => 1,
            "BatchWriteItem" => body().map_or(0, |body| {
                body["RequestItems"].as_object().map_or(0, |tables| {
                    tables
                        .values()
                        .map(|r| r.as_array().map_or(0, |a| a.len() as u64))
                        .sum()
                })
            }),
            "TransactWriteItems" => body().map_or(0, |body| {
                body["TransactItems"]
                    .as_array()
                    .map_or(0, |a| a.len() as u64)
            }),
            _ => 0,
        };
        let (write_units, pk) = if WRITE_OPERATIONS.contains(&operation.as_str()) {
            body().map_or((0, String::new()), |b| {
                (write_units(&operation, &b), first_pk(&b))
            })
        } else {
            (0, String::new())
        };
        self.requests().push(Request {
            operation,
            records,
            write_units,
            pk,
        });
        Ok(())
    }
}
