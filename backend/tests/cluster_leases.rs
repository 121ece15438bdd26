//! Cluster leases and the store's fence through the real aws-sdk-dynamodb against moto: one
//! holder at a time, takeover only after the holder's session ends (or, for leases written
//! before sessions, their own expiry) with a higher epoch, renew and release only by the holder, membership (with advertised Pushpins, and leaving), and commits refused once
//! their epoch is stale (small and staged).

mod emulators;

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use restream::channel::ChannelId;
use restream::cluster::{AdvertisedPushpin, Beat, LeaseTable, Member, Membership};
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

fn first_beat(session: u64) -> Beat {
    Beat {
        session,
        renewal: false,
    }
}

#[tokio::test]
async fn one_holder_at_a_time_and_takeover_only_after_its_session_ends_with_a_higher_epoch() {
    let moto = emulators::start_moto();
    let (client, table, _) = table(&moto).await;
    let ttl = Duration::from_secs(3);
    let a = LeaseTable::new(client.clone(), &table, "a", ttl);
    let b = LeaseTable::new(client.clone(), &table, "b", ttl);
    let (ma, mb) = (
        Member::new("a", "http://a:5000"),
        Member::new("b", "http://b:5000"),
    );
    assert!(
        a.acquire(&id("ch")).await.is_err(),
        "no lease before the replica's session exists"
    );
    a.heartbeat(&ma).await.unwrap();
    b.heartbeat(&mb).await.unwrap();

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
    tokio::time::sleep(ttl / 3).await;
    a.heartbeat(&ma).await.unwrap();
    b.heartbeat(&mb).await.unwrap();
    let renewed = a.renew(&held).await.unwrap().expect("the holder renews");
    assert_eq!(renewed.epoch, 1);
    assert!(renewed.valid_until > held.valid_until, "by its heartbeat");
    let holder = b.holder(&id("ch")).await.unwrap().unwrap();
    assert_eq!((holder.owner.as_str(), holder.epoch), ("a", 1));
    assert!(holder.is_live(restream::cluster::now_ms()));
    assert!(
        b.acquire(&id("ch")).await.unwrap().is_none(),
        "a lease of a session renewed by heartbeat is not taken"
    );

    // a stops heartbeating (paused, cut off): its session, and every lease under it, ends.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    b.heartbeat(&mb).await.unwrap();
    assert!(
        a.renew(&renewed).await.unwrap().is_none(),
        "a replica whose heartbeat stopped stops acting on its leases"
    );
    let holder = b.holder(&id("ch")).await.unwrap().unwrap();
    assert!(!holder.is_live(restream::cluster::now_ms()), "{holder:?}");
    let taken = b
        .acquire(&id("ch"))
        .await
        .unwrap()
        .expect("a lease of an ended session is taken over");
    assert_eq!(taken.epoch, 2, "every acquisition has a new epoch");
    a.heartbeat(&ma)
        .await
        .expect("a late replica starts a new session");
    assert!(
        a.renew(&renewed).await.unwrap().is_none(),
        "the old session's leases stay lost"
    );
    assert!(!a.release(&renewed).await.unwrap(), "nor release");
    assert!(
        a.acquire(&id("ch")).await.unwrap().is_none(),
        "b's live session holds it"
    );
    let retaken = b
        .acquire(&id("ch"))
        .await
        .unwrap()
        .expect("a holder may take its lease again");
    assert_eq!(
        retaken.epoch, 3,
        "under a new epoch, fencing its own older commits"
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
async fn a_replica_restarted_under_the_same_id_takes_its_old_leases_at_once() {
    let moto = emulators::start_moto();
    let (client, table, _) = table(&moto).await;
    let ttl = Duration::from_secs(60);
    let me = Member::new("c", "http://c:5000");
    let before = LeaseTable::new(client.clone(), &table, "c", ttl);
    before.heartbeat(&me).await.unwrap();
    let held = before.acquire(&id("ch")).await.unwrap().unwrap();
    let after = LeaseTable::new(client.clone(), &table, "c", ttl);
    after.heartbeat(&me).await.unwrap();
    let taken = after
        .acquire(&id("ch"))
        .await
        .unwrap()
        .expect("the new session replaced the old one in the replica's record");
    assert_eq!(taken.epoch, held.epoch + 1);
    // The old process, if it still ran, finds its session gone at its next heartbeat.
    before.heartbeat(&me).await.unwrap();
    assert!(before.renew(&held).await.unwrap().is_none());
}

#[tokio::test]
async fn a_lease_written_before_sessions_is_taken_once_its_own_expiry_passes() {
    let moto = emulators::start_moto();
    let (client, table, _) = table(&moto).await;
    let now = restream::cluster::now_ms();
    let old_lease = |until: u64| {
        client
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(restream::cluster::lease_pk("ch")))
            .item("sk", AttributeValue::S(restream::cluster::LEASE_SK.into()))
            .item("owner", AttributeValue::S("old".into()))
            .item("epoch", AttributeValue::N("7".into()))
            .item("lease_until", AttributeValue::N(until.to_string()))
            .send()
    };
    old_lease(now + 60_000).await.unwrap();
    let a = LeaseTable::new(client.clone(), &table, "a", Duration::from_secs(60));
    a.heartbeat(&Member::new("a", "http://a:5000"))
        .await
        .unwrap();
    assert!(
        a.acquire(&id("ch")).await.unwrap().is_none(),
        "an old-style lease still running is respected"
    );
    old_lease(now - 1).await.unwrap();
    let held = a.acquire(&id("ch")).await.unwrap().expect("expired: taken");
    assert_eq!(held.epoch, 8);
}

#[tokio::test]
async fn members_are_live_until_their_heartbeat_runs_out() {
    let moto = emulators::start_moto();
    let (client, table, _) = table(&moto).await;
    let m = Membership::new(client, &table);
    let member = |id: &str| Member::new(id, &format!("http://{id}:5000"));
    m.heartbeat(&member("b"), 60_000, first_beat(1))
        .await
        .unwrap();
    m.heartbeat(&member("a"), 60_000, first_beat(2))
        .await
        .unwrap();
    m.heartbeat(&member("gone"), 300, first_beat(3))
        .await
        .unwrap();
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
        m.heartbeat(member, 60_000, first_beat(4)).await.unwrap();
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
    a.heartbeat(&Member::new("a", "http://a:5000"))
        .await
        .unwrap();
    let old = a.acquire(&id("ch")).await.unwrap().unwrap();
    store
        .commit(commit(0, vec![item("1", 10, 1)], old.epoch))
        .await
        .expect("the holder commits");

    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    b.heartbeat(&Member::new("b", "http://b:5000"))
        .await
        .unwrap();
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
