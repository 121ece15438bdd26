//! The production key store: one JSON object in S3 (the original restream layout), cached,
//! and re-checked in the background with a conditional GET, so it is downloaded again only
//! when its ETag changes. A missing or broken object keeps the last good keys.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use tokio_util::sync::CancellationToken;

use super::{parse_keys, KeyMap, KeyStore, KeyStoreError};
use crate::fetcher::Keys;

/// Keys from `s3://bucket/key`.
pub struct S3KeyStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    location: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// ETag of the last version read (good or not), for `If-None-Match`.
    etag: Option<String>,
    /// The last good keys; `None` until one version parsed.
    keys: Option<KeyMap>,
    /// Why the last check failed, if it did.
    problem: Option<String>,
}

impl S3KeyStore {
    /// Reads the object once (a failure is logged and reported by `keys_for`, not fatal: the
    /// object may be uploaded after the service starts), then re-checks every `refresh` until
    /// `shutdown`.
    pub async fn start(
        client: aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        refresh: Duration,
        shutdown: CancellationToken,
    ) -> S3KeyStore {
        let inner = Arc::new(Inner {
            client,
            bucket: bucket.to_string(),
            key: key.to_string(),
            location: format!("s3://{bucket}/{key}"),
            state: Mutex::new(State::default()),
        });
        inner.check().await;
        let background = inner.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(refresh) => background.check().await,
                }
            }
        });
        S3KeyStore { inner }
    }

    /// Checks the object now; `Ok(true)` when a new version was loaded.
    pub async fn refresh(&self) -> Result<bool, KeyStoreError> {
        self.inner.refresh().await
    }
}

impl Inner {
    /// A refresh whose failure is logged once per distinct problem.
    async fn check(&self) {
        let before = self.state.lock().expect("keys lock").problem.clone();
        match self.refresh().await {
            Ok(true) => tracing::info!(location = %self.location, "API keys loaded"),
            Ok(false) => {}
            Err(e) => {
                if before != self.state.lock().expect("keys lock").problem {
                    tracing::warn!(error = %e, "API keys not refreshed; keeping the last good keys");
                }
            }
        }
    }

    /// Records why the check failed (the reason only: `keys_for` adds the location).
    fn fail(&self, e: KeyStoreError) -> KeyStoreError {
        let reason = match &e {
            KeyStoreError::Unavailable { problem, .. } => problem.clone(),
            KeyStoreError::Invalid { problem, .. } => format!("the object is invalid: {problem}"),
            other => other.to_string(),
        };
        self.state.lock().expect("keys lock").problem = Some(reason);
        e
    }

    async fn refresh(&self) -> Result<bool, KeyStoreError> {
        let etag = self.state.lock().expect("keys lock").etag.clone();
        let unavailable = |problem: String| KeyStoreError::Unavailable {
            location: self.location.clone(),
            problem,
        };
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .set_if_none_match(etag)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(304) => {
                self.state.lock().expect("keys lock").problem = None;
                return Ok(false);
            }
            Err(e) => {
                let problem = match e.code() {
                    Some("NoSuchKey") => "the object does not exist".to_string(),
                    Some("NoSuchBucket") => "the bucket does not exist".to_string(),
                    Some("AccessDenied") => "access denied (check the task role)".to_string(),
                    _ => DisplayErrorContext(&e).to_string(),
                };
                return Err(self.fail(unavailable(problem)));
            }
        };
        let new_etag = out.e_tag().map(str::to_string);
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| self.fail(unavailable(format!("reading the body failed: {e}"))))?
            .into_bytes();
        let parsed = parse_keys(&body);
        // Remember a broken version's ETag too: it is not downloaded again until replaced.
        self.state.lock().expect("keys lock").etag = new_etag;
        match parsed {
            Ok(keys) => {
                let mut state = self.state.lock().expect("keys lock");
                state.keys = Some(keys);
                state.problem = None;
                Ok(true)
            }
            Err(problem) => Err(self.fail(KeyStoreError::Invalid {
                path: self.location.clone(),
                problem,
            })),
        }
    }
}

#[async_trait]
impl KeyStore for S3KeyStore {
    async fn keys_for(&self, channel: &str) -> Result<Keys, KeyStoreError> {
        let state = self.inner.state.lock().expect("keys lock");
        match &state.keys {
            Some(keys) => Ok(keys.get(channel).cloned().unwrap_or_default()),
            None => Err(KeyStoreError::Unavailable {
                location: self.inner.location.clone(),
                problem: state
                    .problem
                    .clone()
                    .unwrap_or_else(|| "not loaded yet".to_string()),
            }),
        }
    }
}
