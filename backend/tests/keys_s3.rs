//! The S3 key store through the real aws-sdk-s3 against moto: conditional refresh by ETag, a
//! missing object, a broken upload keeping the last good keys, and no secret in any error.

mod emulators;

use std::time::Duration;

use restream::keys::{KeyStore, KeyStoreError, S3KeyStore};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

struct Bucket {
    _moto: emulators::Server,
    s3: aws_sdk_s3::Client,
    name: String,
}

impl Bucket {
    async fn new() -> Bucket {
        let moto = emulators::start_moto();
        let (s3, name) = emulators::s3_bucket(&moto).await;
        Bucket {
            _moto: moto,
            s3,
            name,
        }
    }

    async fn put(&self, text: &str) {
        self.s3
            .put_object()
            .bucket(&self.name)
            .key("keys.json")
            .body(text.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }

    async fn delete(&self) {
        self.s3
            .delete_object()
            .bucket(&self.name)
            .key("keys.json")
            .send()
            .await
            .unwrap();
    }

    /// A store that never refreshes on its own (the test calls `refresh`).
    async fn store(&self) -> S3KeyStore {
        S3KeyStore::start(
            self.s3.clone(),
            &self.name,
            "keys.json",
            Duration::from_secs(3600),
            CancellationToken::new(),
        )
        .await
    }
}

async fn key(store: &S3KeyStore, channel: &str, name: &str) -> Option<String> {
    store
        .keys_for(channel)
        .await
        .unwrap()
        .get(name)
        .map(|s| s.expose_secret().to_string())
}

#[tokio::test]
async fn keys_are_cached_and_refreshed_only_when_the_etag_changes() {
    let bucket = Bucket::new().await;
    bucket
        .put(r#"{"nyt-top": {"api-key": "first-secret"}}"#)
        .await;
    let store = bucket.store().await;
    assert_eq!(
        key(&store, "nyt-top", "api-key").await.as_deref(),
        Some("first-secret")
    );
    assert!(store.keys_for("other").await.unwrap().is_empty());
    assert!(
        !store.refresh().await.unwrap(),
        "unchanged object: conditional GET answered 304"
    );
    bucket
        .put(r#"{"nyt-top": {"api-key": "second-secret"}}"#)
        .await;
    assert!(store.refresh().await.unwrap(), "new version loaded");
    assert_eq!(
        key(&store, "nyt-top", "api-key").await.as_deref(),
        Some("second-secret")
    );
}

#[tokio::test]
async fn a_broken_or_deleted_object_keeps_the_last_good_keys() {
    let bucket = Bucket::new().await;
    bucket.put(r#"{"a": {"k": "good-secret"}}"#).await;
    let store = bucket.store().await;
    bucket.put(r#"{"a": {"k": "new-secret"}, "b": 7}"#).await;
    let err = store.refresh().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("s3://{}/keys.json", bucket.name)) && err.contains("\"b\""),
        "{err}"
    );
    assert!(!err.contains("secret"), "no value in errors: {err}");
    assert_eq!(key(&store, "a", "k").await.as_deref(), Some("good-secret"));
    bucket.delete().await;
    let err = store.refresh().await.unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    assert_eq!(key(&store, "a", "k").await.as_deref(), Some("good-secret"));
    bucket.put(r#"{"a": {"k": "fixed-secret"}}"#).await;
    assert!(store.refresh().await.unwrap());
    assert_eq!(key(&store, "a", "k").await.as_deref(), Some("fixed-secret"));
}

#[tokio::test]
async fn a_missing_object_is_a_clear_error_until_it_is_uploaded() {
    let bucket = Bucket::new().await;
    let store = bucket.store().await;
    match store.keys_for("nyt-top").await {
        Err(e @ KeyStoreError::Unavailable { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("s3://{}/keys.json", bucket.name))
                    && text.contains("does not exist"),
                "{text}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    bucket
        .put(r#"{"nyt-top": {"api-key": "late-secret"}}"#)
        .await;
    assert!(store.refresh().await.unwrap());
    assert_eq!(
        key(&store, "nyt-top", "api-key").await.as_deref(),
        Some("late-secret")
    );
}

#[tokio::test]
async fn the_background_refresh_picks_up_new_versions() {
    let bucket = Bucket::new().await;
    bucket.put(r#"{"a": {"k": "v1-secret"}}"#).await;
    let stop = CancellationToken::new();
    let store = S3KeyStore::start(
        bucket.s3.clone(),
        &bucket.name,
        "keys.json",
        Duration::from_millis(200),
        stop.clone(),
    )
    .await;
    bucket.put(r#"{"a": {"k": "v2-secret"}}"#).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while key(&store, "a", "k").await.as_deref() != Some("v2-secret") {
        assert!(std::time::Instant::now() < deadline, "not refreshed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
}

#[tokio::test]
async fn a_missing_bucket_is_named() {
    let bucket = Bucket::new().await;
    let store = S3KeyStore::start(
        bucket.s3.clone(),
        "no-such-bucket",
        "keys.json",
        Duration::from_secs(3600),
        CancellationToken::new(),
    )
    .await;
    let err = store.keys_for("x").await.unwrap_err().to_string();
    assert!(
        err.contains("s3://no-such-bucket/keys.json") && err.contains("bucket does not exist"),
        "{err}"
    );
}
