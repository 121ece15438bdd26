//! The store-cost scenario's machinery: the real poller driven one poll at a time by a
//! scripted fetcher, with the store wrapped to count what each commit writes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_trait::async_trait;
use restream::channel::ChannelId;
use restream::fetcher::{
    parse_fetch_response, FetchError, FetchOutcome, FetchRequest, Fetcher, FetcherEntry, Keys,
    Metadata,
};
use restream::keys::{KeyStore, KeyStoreError};
use restream::poller::{self, PollerContext};
use restream::pushpin::grip::PublishItem;
use restream::pushpin::publisher::{PublishError, Publisher};
use restream::status::{PollOutcome, StatusBoard};
use restream::store::{ChannelMeta, Commit, ItemStore, LoggedEvent, StoreError, StoredItem};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{CHANNEL, POLL_TIMEOUT};

/// The store, counting the records of each commit it accepted.
pub(super) struct Counted {
    pub(super) inner: Arc<dyn ItemStore>,
    pub(super) upserts: AtomicU64,
    pub(super) removals: AtomicU64,
    pub(super) events: AtomicU64,
    /// Accepted commits (each writes the channel's meta record once).
    pub(super) commits: AtomicU64,
    /// Why the last refused commit was refused.
    pub(super) last_error: Mutex<Option<String>>,
}

impl Counted {
    pub(super) fn new(inner: Arc<dyn ItemStore>) -> Counted {
        Counted {
            inner,
            upserts: AtomicU64::new(0),
            removals: AtomicU64::new(0),
            events: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }
}

#[async_trait]
impl ItemStore for Counted {
    async fn load(
        &self,
        channel: &ChannelId,
    ) -> Result<(ChannelMeta, Vec<StoredItem>), StoreError> {
        self.inner.load(channel).await
    }
    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        let (upserts, removals, events) = (
            commit.upserts.len() as u64,
            commit.removals.len() as u64,
            commit.events.len() as u64,
        );
        if let Err(e) = self.inner.commit(commit).await {
            *self.last_error.lock().expect("last error") = Some(e.to_string());
            return Err(e);
        }
        self.upserts.fetch_add(upserts, Ordering::Relaxed);
        self.removals.fetch_add(removals, Ordering::Relaxed);
        self.events.fetch_add(events, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn events_after(
        &self,
        channel: &ChannelId,
        after: u64,
    ) -> Result<Option<Vec<LoggedEvent>>, StoreError> {
        self.inner.events_after(channel, after).await
    }
    fn writes(&self) -> u64 {
        self.inner.writes()
    }
    fn log_capacity(&self) -> u64 {
        self.inner.log_capacity()
    }
    fn max_item_bytes(&self) -> usize {
        self.inner.max_item_bytes()
    }
    async fn load_budget(&self, budget: &str) -> Result<Option<String>, StoreError> {
        self.inner.load_budget(budget).await
    }
    async fn save_budget(&self, budget: &str, usage: String) -> Result<(), StoreError> {
        self.inner.save_budget(budget, usage).await
    }
}

/// A fetcher that answers each fetch with the next result the benchmark hands it, and says
/// when the poller asks (which is when the previous poll has finished).
struct Feed {
    results: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
    asked: mpsc::UnboundedSender<()>,
}

#[async_trait]
impl Fetcher for Feed {
    fn label(&self) -> &str {
        "bench-feed"
    }
    async fn metadata(&self) -> Result<Value, FetchError> {
        Ok(Value::Null)
    }
    async fn fetch(&self, _: FetchRequest<'_>) -> Result<FetchOutcome, FetchError> {
        let _ = self.asked.send(());
        match self.results.lock().await.recv().await {
            Some(v) => parse_fetch_response("bench-feed", v),
            // The benchmark is over: wait for the shutdown.
            None => std::future::pending().await,
        }
    }
}

/// Counts published messages.
#[derive(Default)]
pub(super) struct Published(pub(super) AtomicU64);

#[async_trait]
impl Publisher for Published {
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError> {
        self.0.fetch_add(items.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

struct NoKeys;

#[async_trait]
impl KeyStore for NoKeys {
    async fn keys_for(&self, _: &str) -> Result<Keys, KeyStoreError> {
        Ok(Keys::default())
    }
}

/// One channel's poller, polled on demand.
pub(super) struct Driver {
    pub(super) results: mpsc::UnboundedSender<Value>,
    pub(super) asked: mpsc::UnboundedReceiver<()>,
    pub(super) status: Arc<StatusBoard>,
    pub(super) published: Arc<Published>,
    /// Kept open, as the service keeps each poller's subscriber queue.
    pub(super) _requests: poller::requests::RequestSender,
    pub(super) stop: CancellationToken,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl Driver {
    pub(super) async fn start(store: Arc<dyn ItemStore>) -> anyhow::Result<Driver> {
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let (asked_tx, asked_rx) = mpsc::unbounded_channel();
        let entry = Arc::new(FetcherEntry {
            // Polled back to back: the benchmark paces the polls.
            metadata: Metadata::from_value(&json!({
                "name": CHANNEL, "id_field": crate::classify::ID_FIELD, "poll_interval": 1e-6,
            }))
            .context("fetcher metadata")?,
            fetcher: Arc::new(Feed {
                results: tokio::sync::Mutex::new(results_rx),
                asked: asked_tx,
            }),
        });
        let published = Arc::new(Published::default());
        let status = Arc::new(StatusBoard::default());
        let retentions = restream::history::Retentions::count_only(store.log_capacity());
        let ctx = PollerContext {
            keys: Arc::new(NoKeys),
            publisher: published.clone(),
            store,
            max_backoff: Duration::from_secs(60),
            budgets: Default::default(),
            last_polls: Default::default(),
            status: status.clone(),
            retentions,
            snapshots: Default::default(),
        };
        let channel = ChannelId::from_request(CHANNEL, None, &BTreeMap::new())
            .map_err(|e| anyhow::anyhow!("channel id: {e:?}"))?;
        let (requests_tx, requests_rx) = poller::requests::channel(1);
        let stop = CancellationToken::new();
        let task = tokio::spawn(poller::run(
            channel,
            entry,
            ctx,
            requests_rx,
            stop.clone(),
            None,
        ));
        let mut driver = Driver {
            results: results_tx,
            asked: asked_rx,
            status,
            published,
            _requests: requests_tx,
            stop,
            task,
        };
        // The poller has loaded the channel and asks for its first result.
        driver
            .wait_for_fetch()
            .await
            .context("the poller never fetched")?;
        Ok(driver)
    }

    pub(super) async fn wait_for_fetch(&mut self) -> anyhow::Result<()> {
        match tokio::time::timeout(POLL_TIMEOUT, self.asked.recv()).await {
            Ok(Some(())) => Ok(()),
            Ok(None) => bail!("the poller stopped"),
            Err(_) => bail!("no poll finished within {} s", POLL_TIMEOUT.as_secs()),
        }
    }

    /// One poll whose fetch returns `items`: its duration and outcome.
    pub(super) async fn poll(
        &mut self,
        items: &[Map<String, Value>],
    ) -> anyhow::Result<(Duration, PollOutcome)> {
        let result = json!({
            "status_code": 200,
            "result": items.iter().cloned().map(Value::Object).collect::<Vec<_>>(),
            "complete": true,
        });
        let started = Instant::now();
        self.results
            .send(result)
            .map_err(|_| anyhow::anyhow!("the poller stopped"))?;
        self.wait_for_fetch().await?;
        let elapsed = started.elapsed();
        let outcome = self
            .status
            .get(&ChannelId::parse(CHANNEL).expect("a valid channel id"))
            .and_then(|s| s.last_poll)
            .map(|p| p.outcome)
            .context("the poller recorded no poll")?;
        Ok((elapsed, outcome))
    }

    pub(super) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
