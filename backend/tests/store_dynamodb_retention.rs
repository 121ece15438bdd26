//! Retention on DynamoDB, against moto (which keeps expired records: it never runs TTL, so
//! these tests delete what TTL would, in the orders TTL may): the `expires_at` a commit and a
//! poller's touch write, and a channel whose meta expired or went first coming back as new.

mod emulators;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use restream::store::{unix_now, ChannelMeta, Commit, DynamoItemStore, ItemStore, StoredItem};
use serde_json::json;

const RETENTION: Duration = Duration::from_secs(1000);

fn ch(id: &str) -> restream::channel::ChannelId {
    restream::channel::ChannelId::parse(id).expect("a valid channel id")
}

async fn client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let settings = emulators::aws_settings(endpoint);
    let sdk = emulators::sdk_config(&settings).await;
    restream::aws::dynamodb(&sdk, &settings)
}

fn item(id: &str, seq: u64, first_seen: u64) -> StoredItem {
    StoredItem {
        id: id.into(),
        hash: format!("h{seq}"),
        data: json!({"id": id}).as_object().unwrap().clone(),
        seq,
        first_seen,
        last_changed: first_seen,
    }
}

fn meta(seq: u64) -> ChannelMeta {
    ChannelMeta {
        seq,
        log_floor: 1,
        ..ChannelMeta::default()
    }
}

struct Table {
    store: DynamoItemStore,
    raw: aws_sdk_dynamodb::Client,
    name: String,
}

impl Table {
    async fn new(moto: &emulators::Server) -> Table {
        let name = emulators::unique("retention");
        let store = DynamoItemStore::connect(
            client(&moto.url).await,
            &name,
            10,
            Duration::from_secs(3600),
            true,
        )
        .await
        .unwrap()
        .with_retention(Some(RETENTION));
        Table {
            store,
            raw: client(&moto.url).await,
            name,
        }
    }

    /// One record, read consistently; `None` when it is missing.
    async fn record(
        &self,
        pk: &str,
        sk: &str,
    ) -> Option<std::collections::HashMap<String, AttributeValue>> {
        self.raw
            .get_item()
            .table_name(&self.name)
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
    }

    /// `expires_at` of one record; `None` when it or the attribute is missing.
    async fn expires_at(&self, pk: &str, sk: &str) -> Option<u64> {
        self.record(pk, sk)
            .await?
            .get("expires_at")?
            .as_n()
            .ok()?
            .parse()
            .ok()
    }

    async fn delete(&self, pk: &str, sk: &str) {
        self.raw
            .delete_item()
            .table_name(&self.name)
            .key("pk", AttributeValue::S(pk.into()))
            .key("sk", AttributeValue::S(sk.into()))
            .send()
            .await
            .unwrap();
    }

    async fn exists(&self, pk: &str, sk: &str) -> bool {
        self.record(pk, sk).await.is_some()
    }
}

#[tokio::test]
async fn commits_and_touches_keep_an_active_channel_alive() {
    let moto = emulators::start_moto();
    let t = Table::new(&moto).await;
    let now = unix_now();
    t.store
        .commit(Commit {
            meta: meta(1),
            upserts: vec![item("a", 1, now), item("b", 1, now)],
            ..Commit::new(ch("live"))
        })
        .await
        .unwrap();
    let r = RETENTION.as_secs();
    let meta_expiry = t.expires_at("live", "meta").await.expect("meta stamped");
    assert!(
        (now + r..=now + r + 5).contains(&meta_expiry),
        "{meta_expiry}"
    );
    for sk in ["item#a", "item#b"] {
        let at = t.expires_at("live", sk).await.expect("items stamped");
        assert!(at >= meta_expiry, "an item never expires before its meta");
    }
    // A touch soon after changes nothing (at most every quarter of the retention)...
    t.store.touch(&ch("live"), now + r / 8).await.unwrap();
    assert_eq!(t.expires_at("live", "meta").await, Some(meta_expiry));
    // ...a later one pushes every record's expiry on, unchanged items included.
    let later = now + r / 2;
    t.store.touch(&ch("live"), later).await.unwrap();
    for sk in ["meta", "item#a", "item#b"] {
        assert_eq!(t.expires_at("live", sk).await, Some(later + r), "{sk}");
    }
    let (m, items) = t.store.load(&ch("live")).await.unwrap();
    assert_eq!((m.seq, items.len()), (1, 2));
    // Touching a channel that is not stored writes nothing.
    t.store.touch(&ch("absent"), later).await.unwrap();
    assert!(!t.exists("absent", "meta").await);
}

/// TTL deletes in any order and late: a meta gone first, or past its `expires_at` but still
/// there, leaves a channel that reads as new, whose old items are never shown and are deleted
/// on load; the next first commit takes over.
#[tokio::test]
async fn an_expired_channel_comes_back_as_a_new_one() {
    let moto = emulators::start_moto();
    let t = Table::new(&moto).await;
    let long_ago = unix_now() - 10 * RETENTION.as_secs();
    for name in ["meta-gone", "meta-expired"] {
        t.store
            .commit(Commit {
                meta: meta(1),
                upserts: vec![item("old-1", 1, long_ago), item("old-2", 1, long_ago)],
                ..Commit::new(ch(name))
            })
            .await
            .unwrap();
        t.store
            .commit(Commit {
                expected_seq: 1,
                meta: meta(5),
                upserts: vec![item("old-3", 5, long_ago)],
                ..Commit::new(ch(name))
            })
            .await
            .unwrap();
    }
    // TTL deleted one meta first; the other is expired, not yet deleted (as on AWS).
    t.delete("meta-gone", "meta").await;
    t.raw
        .update_item()
        .table_name(&t.name)
        .key("pk", AttributeValue::S("meta-expired".into()))
        .key("sk", AttributeValue::S("meta".into()))
        .update_expression("SET expires_at = :e")
        .expression_attribute_values(":e", AttributeValue::N((long_ago + 1).to_string()))
        .send()
        .await
        .unwrap();
    for name in ["meta-gone", "meta-expired"] {
        let page = t.store.items_page(&ch(name), None, 10).await.unwrap();
        assert!(
            page.items.is_empty() && page.meta.seq == 0,
            "{name}: no stale page"
        );
        assert_eq!(t.store.item_count(&ch(name)).await.unwrap(), 0);
        assert_eq!(t.store.events_after(&ch(name), 1).await.unwrap(), None);
        let (m, items) = t.store.load(&ch(name)).await.unwrap();
        assert_eq!((m, items), (ChannelMeta::default(), vec![]), "{name}: new");
        for sk in ["item#old-1", "item#old-2", "item#old-3"] {
            assert!(!t.exists(name, sk).await, "{name}: {sk} deleted on load");
        }
        // The poller's first commit (seq 0 -> 1) succeeds over the expired meta.
        let now = unix_now();
        t.store
            .commit(Commit {
                meta: meta(1),
                upserts: vec![item("old-1", 1, now), item("new", 1, now)],
                ..Commit::new(ch(name))
            })
            .await
            .unwrap();
        let (m, items) = t.store.load(&ch(name)).await.unwrap();
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            (m.seq, ids),
            (1, vec!["new", "old-1"]),
            "{name}: a fresh life"
        );
    }
    // Items of a concurrent first commit (first seen now) are never taken for leftovers.
    let now = unix_now();
    let raw_item = HashMap::from([
        ("pk".to_string(), AttributeValue::S("racing".into())),
        ("sk".to_string(), AttributeValue::S("item#x".into())),
        ("first_seen".to_string(), AttributeValue::N(now.to_string())),
    ]);
    t.raw
        .put_item()
        .table_name(&t.name)
        .set_item(Some(raw_item))
        .send()
        .await
        .unwrap();
    t.store.load(&ch("racing")).await.unwrap();
    assert!(t.exists("racing", "item#x").await, "a new item stays");
}
