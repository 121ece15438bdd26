//! The `ItemStore` conformance suite against every implementation, plus durability of the
//! embedded store across a reopen.

use restream::store::{conformance, conformance_retention, ItemStore, MemoryStore, RedbStore};

fn ch(id: &str) -> restream::channel::ChannelId {
    restream::channel::ChannelId::parse(id).expect("a valid channel id")
}

#[tokio::test]
async fn memory_store_conforms() {
    conformance::run(&MemoryStore::new(conformance::CAPACITY)).await;
}

#[tokio::test]
async fn redb_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("items.redb"), conformance::CAPACITY).unwrap();
    conformance::run(&store).await;
}

#[tokio::test]
async fn memory_store_sweeps_inactive_channels() {
    let store = MemoryStore::new(conformance::CAPACITY)
        .with_retention(Some(conformance_retention::RETENTION));
    conformance_retention::retention(&store).await;
}

#[tokio::test]
async fn redb_store_sweeps_inactive_channels() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("items.redb"), conformance::CAPACITY)
        .unwrap()
        .with_retention(Some(conformance_retention::RETENTION));
    conformance_retention::retention(&store).await;
}

#[tokio::test]
async fn redb_store_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/items.redb");
    {
        let store = RedbStore::open(&path, conformance::CAPACITY).unwrap();
        conformance::run(&store).await;
    }
    let store = RedbStore::open(&path, conformance::CAPACITY).unwrap();
    let (meta, items) = store.load(&ch("rt")).await.unwrap();
    assert_eq!(meta.seq, 7);
    assert_eq!(items.len(), 1);
    assert!(store.events_after(&ch("rt"), 4).await.unwrap().is_some());
}

#[tokio::test]
async fn an_unwritable_path_is_a_clear_error() {
    let err = RedbStore::open(std::path::Path::new("/proc/restream/items.redb"), 10)
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("/proc/restream"), "{err}");
}
