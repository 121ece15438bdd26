//! Saving budgets: debounced writes, the shutdown save, what a crash can forget, and usage
//! saved by the previous version. Paused time throughout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::{advance, Instant};
use tokio_util::sync::CancellationToken;

use super::Budgets;
use crate::channel::ChannelId;
use crate::store::StoredItem;
use crate::store::{ChannelMeta, Commit, ItemStore, LoggedEvent, MemoryStore, StoreError};

/// A memory store counting budget saves.
struct Saves(MemoryStore, AtomicU64);

#[async_trait]
impl ItemStore for Saves {
    async fn load(&self, c: &ChannelId) -> Result<(ChannelMeta, Vec<StoredItem>), StoreError> {
        self.0.load(c).await
    }
    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        self.0.commit(commit).await
    }
    async fn events_after(
        &self,
        c: &ChannelId,
        after: u64,
    ) -> Result<Option<Vec<LoggedEvent>>, StoreError> {
        self.0.events_after(c, after).await
    }
    fn writes(&self) -> u64 {
        self.0.writes()
    }
    fn log_capacity(&self) -> u64 {
        self.0.log_capacity()
    }
    async fn load_budget(&self, budget: &str) -> Result<Option<String>, StoreError> {
        self.0.load_budget(budget).await
    }
    async fn save_budget(&self, budget: &str, usage: String) -> Result<(), StoreError> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.save_budget(budget, usage).await
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_secs(5);

fn store() -> (Arc<Saves>, Arc<dyn ItemStore>) {
    let saves = Arc::new(Saves(MemoryStore::new(10), AtomicU64::new(0)));
    (saves.clone(), saves)
}

/// `n` calls, back to back; how long they waited.
async fn calls(budgets: &Budgets, max: u64, n: usize, store: &Arc<dyn ItemStore>) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        let b = budgets.get("keys:t", &[(MINUTE, max)]);
        let permit = b.acquire(store).await;
        b.finish(permit);
    }
    started.elapsed()
}

/// Lets the saver's pending work run.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_busy_budget_is_written_once_per_interval_and_at_shutdown() {
    let (saves, store) = store();
    let budgets = Arc::new(Budgets::default());
    let stop = CancellationToken::new();
    let saver = tokio::spawn(budgets.clone().persist(store.clone(), EVERY, stop.clone()));
    settle().await;
    // 100 calls a second for 12 s: 1,200 calls.
    for _ in 0..120 {
        calls(&budgets, 10_000, 10, &store).await;
        advance(Duration::from_millis(100)).await;
        settle().await;
    }
    assert_eq!(
        saves.1.load(Ordering::Relaxed),
        2,
        "saved at 5 s and 10 s only"
    );
    // Idle: nothing new to write.
    advance(EVERY * 3).await;
    settle().await;
    assert_eq!(
        saves.1.load(Ordering::Relaxed),
        3,
        "the calls after 10 s, once"
    );
    calls(&budgets, 10_000, 1, &store).await;
    stop.cancel();
    saver.await.unwrap();
    assert_eq!(
        saves.1.load(Ordering::Relaxed),
        4,
        "the shutdown saves the last call"
    );
    let restarted = Budgets::default();
    restarted
        .get("keys:t", &[(MINUTE, 10_000)])
        .acquire(&store)
        .await;
    let used = restarted.usage()[0].used;
    assert_eq!(
        used,
        1201 + 1,
        "every call (all within the minute), and the one in flight"
    );
}

#[tokio::test(start_paused = true)]
async fn a_crash_forgets_at_most_the_calls_of_one_interval() {
    let (_, store) = store();
    let budgets = Arc::new(Budgets::default());
    let stop = CancellationToken::new();
    let saver = tokio::spawn(budgets.clone().persist(store.clone(), EVERY, stop.clone()));
    settle().await;
    calls(&budgets, 10, 6, &store).await;
    advance(EVERY + Duration::from_millis(10)).await;
    settle().await;
    let saved = store.load_budget("keys:t").await.unwrap().expect("saved");
    assert_eq!(
        super::saved::decode(&saved)
            .unwrap()
            .iter()
            .map(|c| c.1)
            .sum::<u64>(),
        6
    );
    calls(&budgets, 10, 4, &store).await; // Not saved yet: the replica dies now.
    saver.abort();
    drop(budgets);
    // Its replacement (a restart, or another replica taking the channels over) knows 6 of the
    // 10 calls: 4 more start at once (the overshoot, at most one interval's calls), the next
    // waits for the first 6 to leave the window.
    let replacement = Budgets::default();
    assert_eq!(calls(&replacement, 10, 4, &store).await, Duration::ZERO);
    let waited = calls(&replacement, 10, 1, &store).await;
    assert!(
        waited >= MINUTE - EVERY - Duration::from_millis(20) && waited <= MINUTE,
        "waited {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn usage_saved_by_the_previous_version_holds_the_budget() {
    let (_, store) = store();
    let now = super::unix_ms();
    // The previous version's record: the unix ms of every call.
    let old: Vec<u64> = (0..5).map(|i| now - 30_000 + i).collect();
    store
        .save_budget("keys:t", serde_json::to_string(&old).unwrap())
        .await
        .unwrap();
    let budgets = Budgets::default();
    let waited = calls(&budgets, 5, 1, &store).await;
    assert!(
        waited >= Duration::from_secs(29) && waited <= Duration::from_secs(31),
        "the 5 old calls leave the minute 30 s from now: waited {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_huge_saved_count_loads_as_a_full_budget() {
    let (_, store) = store();
    let usage = format!(
        r#"{{"at":{},"calls":[[0,1000000000000]]}}"#,
        super::unix_ms()
    );
    store.save_budget("keys:t", usage).await.unwrap();
    let budgets = Budgets::default();
    let waited = calls(&budgets, 5, 1, &store).await;
    assert!(
        waited >= MINUTE - Duration::from_secs(1) && waited <= MINUTE,
        "the remembered calls (5 of them are enough) fill the minute: waited {waited:?}"
    );
}
