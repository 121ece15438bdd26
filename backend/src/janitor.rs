//! Background upkeep of channel state, so what strangers make us remember does not grow for
//! ever: forgets inactive channels' in-memory state (status board, last poll times) after
//! `state.inactive_channel_memory_secs`, and sweeps channels inactive for longer than
//! `store.retention_secs` out of the store (a bounded batch per pass; DynamoDB's TTL does its
//! own), and hands the allocator's free pages back to the operating system.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::channel::ChannelId;
use crate::status::StatusBoard;
use crate::store::{unix_now, ItemStore};

/// Between two passes.
pub const PASS_INTERVAL: Duration = Duration::from_secs(60);
/// Channels one sweep pass deletes at most.
pub const SWEEP_BATCH: usize = 100;

/// What the janitor looks after.
pub struct Janitor {
    pub status: Arc<StatusBoard>,
    pub last_polls: Arc<Mutex<HashMap<ChannelId, Instant>>>,
    pub store: Arc<dyn ItemStore>,
    /// How long an inactive channel stays in memory.
    pub keep: Duration,
}

impl Janitor {
    /// Forgets the in-memory state of channels inactive for longer than `keep` (or their poll
    /// interval, when longer: a channel that comes back is never polled early). Returns how
    /// many last-poll times and status entries went.
    pub fn forget_inactive(&self, now: Instant) -> (usize, usize) {
        let last_polls = {
            let mut map = self.last_polls.lock().expect("last polls lock");
            let before = map.len();
            map.retain(|channel, at| {
                let status = self.status.get(channel);
                let active = status.as_ref().is_some_and(|s| s.active);
                let interval = status.map_or(Duration::ZERO, |s| s.poll_interval);
                active || now.saturating_duration_since(*at) < self.keep.max(interval)
            });
            before - map.len()
        };
        let statuses = self.status.prune(now, self.keep);
        let pruned = &crate::metrics::get().state_pruned;
        pruned
            .with_label_values(&["last_poll"])
            .inc_by(last_polls as u64);
        pruned
            .with_label_values(&["status"])
            .inc_by(statuses as u64);
        (last_polls, statuses)
    }

    /// One sweep pass of the store; returns the channels deleted.
    pub async fn sweep(&self) -> usize {
        match self.store.sweep(unix_now(), SWEEP_BATCH).await {
            Ok(0) => 0,
            Ok(swept) => {
                tracing::info!(
                    swept,
                    "deleted channels inactive for longer than the retention"
                );
                crate::metrics::get()
                    .store_swept_channels
                    .inc_by(swept as u64);
                swept
            }
            Err(e) => {
                tracing::warn!(error = %e, "the retention sweep failed; retrying next pass");
                0
            }
        }
    }

    /// A pass every [`PASS_INTERVAL`] until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(PASS_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    self.forget_inactive(Instant::now());
                    self.sweep().await;
                    crate::memory::release_free_pages();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn ch(id: &str) -> ChannelId {
        ChannelId::parse(id).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn inactive_channels_leave_memory_after_the_setting() {
        let janitor = Janitor {
            status: Arc::default(),
            last_polls: Arc::default(),
            store: Arc::new(MemoryStore::new(10)),
            keep: Duration::from_secs(3600),
        };
        let poll = |name: &str| {
            janitor
                .last_polls
                .lock()
                .unwrap()
                .insert(ch(name), Instant::now());
        };
        let gone = janitor
            .status
            .started(&ch("gone"), Duration::from_secs(5), 1, 1);
        janitor
            .status
            .started(&ch("busy"), Duration::from_secs(5), 1, 1);
        poll("gone");
        poll("busy");
        janitor.status.stopped(&ch("gone"), gone);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(
            Janitor {
                status: janitor.status.clone(),
                last_polls: janitor.last_polls.clone(),
                store: janitor.store.clone(),
                keep: janitor.keep,
            }
            .run(shutdown.clone()),
        );
        tokio::time::sleep(Duration::from_secs(1800)).await;
        assert!(
            janitor.status.get(&ch("gone")).is_some(),
            "half an hour: kept"
        );
        tokio::time::sleep(Duration::from_secs(1800 + 2 * PASS_INTERVAL.as_secs())).await;
        assert!(
            janitor.status.get(&ch("gone")).is_none(),
            "an hour: forgotten"
        );
        let polls = janitor.last_polls.lock().unwrap().clone();
        assert!(!polls.contains_key(&ch("gone")), "its last poll too");
        assert!(polls.contains_key(&ch("busy")), "an active channel stays");
        assert!(janitor.status.get(&ch("busy")).is_some());
        shutdown.cancel();
        task.await.unwrap();
    }
}
