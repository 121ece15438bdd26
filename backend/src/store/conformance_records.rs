//! The small-records part of the `ItemStore` conformance suite: records round-trip, the
//! conditional writes hold, namespaces are apart and list in key order.

use super::{ItemStore, RecordWrite};

/// Runs every record check on a fresh store.
pub async fn run(store: &dyn ItemStore) {
    records_round_trip(store).await;
    conditional_writes_hold(store).await;
    namespaces_are_apart(store).await;
}

async fn records_round_trip(store: &dyn ItemStore) {
    assert_eq!(store.get_record("r-ns", "a").await.unwrap(), None);
    assert!(store.list_records("r-ns").await.unwrap().is_empty());
    assert!(store
        .put_record("r-ns", "a", r#"{"v":1}"#, RecordWrite::Upsert)
        .await
        .unwrap());
    assert_eq!(
        store.get_record("r-ns", "a").await.unwrap().as_deref(),
        Some(r#"{"v":1}"#)
    );
    assert!(store
        .put_record("r-ns", "a", "second", RecordWrite::Upsert)
        .await
        .unwrap());
    assert_eq!(
        store.get_record("r-ns", "a").await.unwrap().as_deref(),
        Some("second")
    );
    assert!(store.delete_record("r-ns", "a").await.unwrap());
    assert!(
        !store.delete_record("r-ns", "a").await.unwrap(),
        "a second delete finds nothing"
    );
    assert_eq!(store.get_record("r-ns", "a").await.unwrap(), None);
}

async fn conditional_writes_hold(store: &dyn ItemStore) {
    assert!(
        !store
            .put_record("r-cond", "k", "x", RecordWrite::IfPresent)
            .await
            .unwrap(),
        "IfPresent writes nothing over a missing record"
    );
    assert_eq!(store.get_record("r-cond", "k").await.unwrap(), None);
    assert!(store
        .put_record("r-cond", "k", "first", RecordWrite::IfAbsent)
        .await
        .unwrap());
    assert!(
        !store
            .put_record("r-cond", "k", "second", RecordWrite::IfAbsent)
            .await
            .unwrap(),
        "IfAbsent leaves an existing record"
    );
    assert_eq!(
        store.get_record("r-cond", "k").await.unwrap().as_deref(),
        Some("first")
    );
    assert!(store
        .put_record("r-cond", "k", "third", RecordWrite::IfPresent)
        .await
        .unwrap());
    assert_eq!(
        store.get_record("r-cond", "k").await.unwrap().as_deref(),
        Some("third")
    );
}

async fn namespaces_are_apart(store: &dyn ItemStore) {
    for k in ["s3|b?x=1", "local|a", "s3|a"] {
        store
            .put_record("r-list", k, &format!("v-{k}"), RecordWrite::Upsert)
            .await
            .unwrap();
    }
    store
        .put_record("r-list2", "local|a", "other", RecordWrite::Upsert)
        .await
        .unwrap();
    store
        .put_record("r-lis", "z", "prefix", RecordWrite::Upsert)
        .await
        .unwrap();
    let listed = store.list_records("r-list").await.unwrap();
    assert_eq!(
        listed,
        vec![
            ("local|a".to_string(), "v-local|a".to_string()),
            ("s3|a".to_string(), "v-s3|a".to_string()),
            ("s3|b?x=1".to_string(), "v-s3|b?x=1".to_string()),
        ]
    );
    assert_eq!(
        store
            .get_record("r-list2", "local|a")
            .await
            .unwrap()
            .as_deref(),
        Some("other")
    );
}
