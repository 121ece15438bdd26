//! Cluster leases and the store's fence through the real aws-sdk-dynamodb against moto: one
//! holder at a time, takeover only after expiry with a higher epoch, renew and release only by
//! the holder, membership (with advertised Pushpins, and leaving), and commits refused once
//! their epoch is stale (small and staged).

mod emulators;

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use restream::channel::ChannelId;
use restream::cluster::{AdvertisedPushpin, LeaseTable, Member, Membership};
use restream::store::{ChannelMeta, Commit, DynamoItemStore, ItemStore, StoreError, StoredItem};
use serde_json::json;

fn id(channel: &str) -> ChannelId {
    ChannelId::parse(channel).unwrap()
}

async fn table(moto: &emulators::Server) -> (aws_sdk_dynamodb::Client, String, DynamoItemStore) {
    let settings = emulators::aws_settings(&moto.url);
    let sdk = emulators::sdk_config(&settings).await;
    let client = restream::aws::dynamodb(&sdk, &settings);
    let table = emulators::unique("cluster");
    let store =
        DynamoItemStore::connect(client.clone(), &table, 100, Duration::from_secs(3600), true)
            .await
            .unwrap();
    (client, table, store)
}

#[tokio::test]
async fn one_holder_at_a_time_and_takeover_only_after_expiry_with_a_higher_epoid() {
    let moto = emulators::start_moto();
    let (client, table, _) = table(&moto).await;
    let ttl = Duration::from_millis(1500);
    let a = LeaseTable::new(client.clone(), &table, "a", ttl);
    let b = LeaseTable::new(client.clone(), &table, "b", ttl);

    let held = a
        .acquire(&id("ch"))
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert_eq!(held.epoch, 1);
    assert!(
        b.acquire(&id("ch")).await.unwrap().is_none(),
        "a live lease is not taken"
    );
    assert!(
        a.acquire(&id("other")).await.unwrap().is_some(),
        "leases are per channel"
    );
    let renewed = a.renew(&held).await.unwrap().expect("the holder renews");
    assert_eq!(renewed.epoch, 1);
    let holder = b.holder(&id("ch")).await.unwrap().unwrap();
    assert_eq!((holder.owner.as_str(), holder.epoch), ("a", 1));

    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let taken = b
        .acquire(&id("ch"))
        .await
        .unwrap()
        .expect("an expired lease is taken over");
    assert_eq!(taken.epoch, 2, "every acquisition has a new epoch");
    assert!(
        a.renew(&renewed).await.unwrap().is_none(),
        "the old holder cannot renew"
    );
    assert!(!a.release(&renewed).await.unwrap(), "nor release");
    let retaken = b
        .acquire(&id("ch"))
        .await
        .unwrap()
        .expect("a holder may take its lease again");
    assert_eq!(
        retaken.epoch, 3,
        "under a new epoch, fencing its own older commits"
    );
    assert!(
        b.renew(&taken).await.unwrap().is_none(),
        "the older epoch is no longer held"
    );
    assert!(b.release(&retaken).await.unwrap());
    let again = a
        .acquire(&id("ch"))
        .await
        .unwrap()
        .expect("a released lease is free at once");
    assert_eq!(again.epoch, 4);
}

#[tokio::test]
async fn members_are_live_until_their_heartbeat_runs_out() {
    let moto = emulators::start_moto();
    let (client, table, _) = table(&moto).await;
    let m = Membership::new(client, &table);
    let member = |id: &str| Member::new(id, &format!("http://{id}:5000"));
    m.heartbeat(&member("b"), 60_000).await.unwrap();
    m.heartbeat(&member("a"), 60_000).await.unwrap();
    m.heartbeat(&member("gone"), 300).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(m.live().await.unwrap(), vec![member("a"), member("b")]);
}

#[tokio::test]
async fn members_advertise_their_pushpin_and_leave_by_deleting_their_record() {
    let moto = emulators::start_moto();
    let (client, table, _) = table(&moto).await;
    let m = Membership::new(client.clone(), &table);
    let mut a = Member::new("a", "http://10.0.1.7:5000");
    a.pushpin = AdvertisedPushpin {
        publish_spec: Some("tcp://10.0.1.7:5560".into()),
        http_url: Some("http://10.0.1.7:5561".into()),
        stats_spec: Some("tcp://10.0.1.7:5564".into()),
    };
    let mut b = Member::new("b", "http://10.0.1.8:5000");
    b.pushpin.stats_spec = Some("tcp://10.0.1.8:5564".into());
    let c = Member::new("c", "http://10.0.1.9:5000");
    for member in [&a, &b, &c] {
        m.heartbeat(member, 60_000).await.unwrap();
    }
    assert_eq!(
        m.live().await.unwrap(),
        vec![a.clone(), b.clone(), c.clone()],
        "each record round-trips, with what it advertises and nothing else"
    );
    let record = client
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("replicas".into()))
        .key("sk", AttributeValue::S("c".into()))
        .send()
        .await
        .unwrap();
    let names: Vec<&String> = record.item().unwrap().keys().collect();
    assert!(
        !names.iter().any(|n| n.starts_with("pushpin_")),
        "a replica advertising no Pushpin writes no such attribute: {names:?}"
    );

    m.leave("a").await.unwrap();
    assert_eq!(m.live().await.unwrap(), vec![b.clone(), c], "gone at once");
    m.leave("a").await.expect("leaving twice is harmless");
}

fn item(id: &str, bytes: usize, seq: u64) -> StoredItem {
    StoredItem {
        id: id.into(),
        hash: format!("h{seq}"),
        data: json!({"id": id, "blob": "x".repeat(bytes)})
            .as_object()
            .unwrap()
            .clone(),
        seq,
        first_seen: 1,
        last_changed: 1,
    }
}

fn commit(expected_seq: u64, items: Vec<StoredItem>, fence: u64) -> Commit {
    Commit {
        channel: id("ch"),
        expected_seq,
        meta: ChannelMeta {
            seq: expected_seq + 1,
            fetcher_state: None,
            log_floor: 1,
            committed_from: expected_seq,
            ..ChannelMeta::default()
        },
        upserts: items,
        fence: Some(fence),
        ..Commit::new(id("ch"))
    }
}

#[tokio::test]
async fn a_commit_under_a_stale_epoch_is_refused_and_writes_nothing() {
    let moto = emulators::start_moto();
    let (client, table, store) = table(&moto).await;
    let ttl = Duration::from_millis(1000);
    let a = LeaseTable::new(client.clone(), &table, "a", ttl);
    let b = LeaseTable::new(client.clone(), &table, "b", ttl);
    let old = a.acquire(&id("ch")).await.unwrap().unwrap();
    store
        .commit(commit(0, vec![item("1", 10, 1)], old.epoch))
        .await
        .expect("the holder commits");

    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let new = b.acquire(&id("ch")).await.unwrap().unwrap();
    // A small commit (one transaction) and a staged one (over 100 writes) from the old holder.
    let small = store
        .commit(commit(1, vec![item("2", 10, 2)], old.epoch))
        .await;
    assert!(
        matches!(small, Err(StoreError::Fenced { epoch: 1, .. })),
        "{small:?}"
    );
    let many: Vec<StoredItem> = (0..150).map(|i| item(&format!("m{i}"), 10, 2)).collect();
    let staged = store.commit(commit(1, many, old.epoch)).await;
    assert!(
        matches!(staged, Err(StoreError::Fenced { .. })),
        "{staged:?}"
    );
    let message = staged.unwrap_err().to_string();
    assert!(message.contains("another replica"), "{message}");
    let (meta, items) = store.load(&id("ch")).await.unwrap();
    assert_eq!(
        (meta.seq, items.len()),
        (1, 1),
        "nothing of the stale commits landed"
    );

    store
        .commit(commit(1, vec![item("2", 10, 2)], new.epoch))
        .await
        .expect("the new holder commits");
    assert_eq!(store.load(&id("ch")).await.unwrap().0.seq, 2);
}
