//! The DynamoDB item store through the real aws-sdk-dynamodb: the conformance suite against
//! moto, a missing table, oversized items, a large commit interrupted half way, and throttling
//! (a fake endpoint that always throttles) ending in a clear error.

mod emulators;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use restream::store::{conformance, Commit, DynamoItemStore, ItemStore, StoreError, StoredItem};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ch(id: &str) -> restream::channel::ChannelId {
    restream::channel::ChannelId::parse(id).expect("a valid channel id")
}

async fn client(endpoint: &str, max_attempts: u32) -> aws_sdk_dynamodb::Client {
    let mut settings = emulators::aws_settings(endpoint);
    settings.max_attempts = max_attempts;
    let sdk = emulators::sdk_config(&settings).await;
    restream::aws::dynamodb(&sdk, &settings)
}

async fn store(moto: &emulators::Server, capacity: u64) -> (DynamoItemStore, String) {
    let table = emulators::unique("items");
    let store = DynamoItemStore::connect(
        client(&moto.url, 3).await,
        &table,
        capacity,
        Duration::from_secs(3600),
        true,
    )
    .await
    .unwrap();
    (store, table)
}

#[tokio::test]
async fn dynamodb_store_conforms() {
    let moto = emulators::start_moto();
    let (store, _) = store(&moto, conformance::CAPACITY).await;
    conformance::run(&store).await;
}

#[tokio::test]
async fn a_missing_table_is_a_clear_error() {
    let moto = emulators::start_moto();
    let err = DynamoItemStore::connect(
        client(&moto.url, 1).await,
        "no-such-table",
        10,
        Duration::from_secs(60),
        false,
    )
    .await
    .err()
    .expect("must fail")
    .to_string();
    assert!(
        err.contains("no-such-table") && err.contains("store.dynamodb_create_table"),
        "{err}"
    );
}

fn stored(id: &str, bytes: usize) -> StoredItem {
    StoredItem {
        id: id.into(),
        hash: "h".into(),
        data: json!({"id": id, "blob": "x".repeat(bytes)})
            .as_object()
            .unwrap()
            .clone(),
        seq: 1,
        first_seen: 1,
        last_changed: 1,
    }
}

#[tokio::test]
async fn oversized_items_are_refused_clearly_and_nothing_is_written() {
    let moto = emulators::start_moto();
    let (store, _) = store(&moto, 10).await;
    assert!(store.max_item_bytes() < 400 * 1024);
    let commit = Commit {
        fence: None,
        retention: None,
        channel: ch("big"),
        expected_seq: 0,
        meta: Default::default(),
        upserts: vec![stored("ok", 10), stored("huge", 500_000)],
        removals: vec![],
        events: vec![],
    };
    match store.commit(commit).await {
        Err(e @ StoreError::TooLarge { .. }) => {
            let text = e.to_string();
            assert!(text.contains("huge") && text.contains("big"), "{text}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let (meta, items) = store.load(&ch("big")).await.unwrap();
    assert_eq!((meta.seq, items.len()), (0, 0), "all or nothing");
}

/// A writer that died after its commit point (meta switched, chunks staged) leaves work any
/// reader finishes: the items appear and the marker goes.
#[tokio::test]
async fn an_interrupted_large_commit_is_finished_by_the_next_reader() {
    let moto = emulators::start_moto();
    let (store, table) = store(&moto, 10).await;
    let raw = client(&moto.url, 3).await;
    let s = |v: &str| AttributeValue::S(v.to_string());
    let item = stored("a", 5);
    let chunk = json!({"upserts": [item], "removals": [], "events": [{"seq": 1, "message": "{}"}]});
    raw.put_item()
        .table_name(&table)
        .set_item(Some(HashMap::from([
            ("pk".to_string(), s("half")),
            (
                "sk".to_string(),
                s(&format!("pending#{:020}#{:016x}#00000", 1, 66)),
            ),
            ("chunk".to_string(), s(&chunk.to_string())),
        ])))
        .send()
        .await
        .unwrap();
    raw.put_item()
        .table_name(&table)
        .set_item(Some(HashMap::from([
            ("pk".to_string(), s("half")),
            ("sk".to_string(), s("meta")),
            ("seq".to_string(), AttributeValue::N("1".into())),
            (
                "meta".to_string(),
                s(r#"{"seq":1,"fetcher_state":null,"log_floor":0}"#),
            ),
            (
                "pending".to_string(),
                s(r#"{"seq":1,"attempt":66,"chunks":1}"#),
            ),
        ])))
        .send()
        .await
        .unwrap();
    let (meta, items) = store.load(&ch("half")).await.unwrap();
    assert_eq!(meta.seq, 1);
    assert_eq!(items, vec![stored("a", 5)], "the staged item was applied");
    let after = raw
        .get_item()
        .table_name(&table)
        .key("pk", s("half"))
        .key("sk", s("meta"))
        .send()
        .await
        .unwrap();
    assert!(
        !after.item().unwrap().contains_key("pending"),
        "marker cleared"
    );
    let events = store.events_after(&ch("half"), 0).await.unwrap().unwrap();
    assert_eq!(events.len(), 1, "staged events applied");
    // And the channel takes normal commits again.
    store
        .commit(Commit {
            channel: ch("half"),
            expected_seq: 1,
            meta: restream::store::ChannelMeta { seq: 2, ..meta },
            ..Commit::new(ch("half"))
        })
        .await
        .unwrap();
}

/// A fake DynamoDB that describes any table but throttles every other request.
async fn always_throttling() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let throttled = Arc::new(AtomicUsize::new(0));
    let count = throttled.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap_or(0));
                    while buf.len() < end + 4 + length {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + 4 + length);
                    let (status, body) = if head.contains("dynamodb_20120810.describetable") {
                        (
                            "200 OK",
                            json!({"Table": {"TableName": "t", "TableStatus": "ACTIVE",
                                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                              {"AttributeName": "sk", "KeyType": "RANGE"}]}})
                            .to_string(),
                        )
                    } else {
                        count.fetch_add(1, Ordering::SeqCst);
                        (
                            "400 Bad Request",
                            json!({"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                                   "message": "The level of configured provisioned throughput for the table was exceeded."})
                            .to_string(),
                        )
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, throttled)
}

#[tokio::test]
async fn throttling_is_retried_then_reported_clearly() {
    let (url, throttled) = always_throttling().await;
    let store = DynamoItemStore::connect(
        client(&url, 3).await,
        "t",
        10,
        Duration::from_secs(60),
        false,
    )
    .await
    .unwrap();
    let err = store
        .load(&ch("some-channel"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("throttled")
            && err.contains("3 attempts")
            && err.contains("ProvisionedThroughputExceededException"),
        "{err}"
    );
    assert_eq!(
        throttled.load(Ordering::SeqCst),
        3,
        "the SDK retried the throttled request"
    );
}
