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
        self.requests().push(Request { operation, records });
        Ok(())
    }
}
