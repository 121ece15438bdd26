//! What each channel's poller last did, for the status API: last poll time and result, next
//! poll, seq, item count and upstream health. Written by pollers, read by HTTP handlers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::protocol::FailureCode;

use serde::Serialize;

use crate::channel::ChannelId;

/// The result of one poll attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PollOutcome {
    /// New, updated or removed items were persisted and published (or the first snapshot).
    Changed,
    /// Fetched, and nothing changed.
    Unchanged,
    /// The upstream answered "not modified" (conditional request).
    NotModified,
    /// The fetch (or the key lookup before it) failed.
    Failed,
    /// The store refused the changes or a pending publish could not be delivered; retried.
    Deferred,
}

impl PollOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PollOutcome::Changed => "changed",
            PollOutcome::Unchanged => "unchanged",
            PollOutcome::NotModified => "not_modified",
            PollOutcome::Failed => "failed",
            PollOutcome::Deferred => "deferred",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LastPoll {
    pub at: SystemTime,
    pub outcome: PollOutcome,
    pub duration: Duration,
}

/// One channel as its poller last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelStatus {
    /// Which poller run wrote it: a stopping poller must not mark its successor's channel
    /// inactive.
    run: u64,
    /// A poller is running for it (it has subscribers).
    pub active: bool,
    pub poll_interval: Duration,
    pub last_poll: Option<LastPoll>,
    pub next_poll: Option<SystemTime>,
    pub seq: u64,
    pub item_count: usize,
    /// The last error while the upstream is failing; `None` when healthy.
    pub degraded: Option<FailureCode>,
    pub retry_in: Option<Duration>,
    /// When its poller stopped; `None` while active.
    pub inactive_since: Option<tokio::time::Instant>,
}

/// Every channel polled since the process started, by channel id.
#[derive(Default)]
pub struct StatusBoard {
    channels: Mutex<HashMap<ChannelId, ChannelStatus>>,
    runs: std::sync::atomic::AtomicU64,
}

impl StatusBoard {
    /// A poller started (or resumed) `channel` with this state; returns its run, for
    /// [`StatusBoard::stopped`]. The last poll stays on record; the upstream health starts
    /// unknown-but-healthy like the new poller's.
    pub fn started(
        &self,
        channel: &ChannelId,
        poll_interval: Duration,
        seq: u64,
        item_count: usize,
    ) -> u64 {
        let run = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut map = self.channels.lock().expect("status lock");
        let entry = map.entry(channel.clone()).or_insert(ChannelStatus {
            run,
            active: true,
            poll_interval,
            last_poll: None,
            next_poll: None,
            seq,
            item_count,
            degraded: None,
            retry_in: None,
            inactive_since: None,
        });
        entry.run = run;
        entry.active = true;
        entry.poll_interval = poll_interval;
        entry.seq = seq;
        entry.item_count = item_count;
        entry.next_poll = None;
        entry.degraded = None;
        entry.retry_in = None;
        entry.inactive_since = None;
        run
    }

    /// Applies `change` to a channel a poller has started.
    pub fn update(&self, channel: &ChannelId, change: impl FnOnce(&mut ChannelStatus)) {
        if let Some(status) = self.channels.lock().expect("status lock").get_mut(channel) {
            change(status);
        }
    }

    /// The poller of `run` stopped (no subscribers left): the last poll stays on record. A
    /// later run of the same channel is left alone.
    pub fn stopped(&self, channel: &ChannelId, run: u64) {
        self.update(channel, |s| {
            if s.run == run {
                s.active = false;
                s.next_poll = None;
                s.inactive_since = Some(tokio::time::Instant::now());
            }
        });
    }

    pub fn get(&self, channel: &ChannelId) -> Option<ChannelStatus> {
        self.channels
            .lock()
            .expect("status lock")
            .get(channel)
            .cloned()
    }

    /// Forgets channels inactive since longer than `keep` (or their poll interval, when
    /// longer); returns how many.
    pub fn prune(&self, now: tokio::time::Instant, keep: Duration) -> usize {
        let mut map = self.channels.lock().expect("status lock");
        let before = map.len();
        map.retain(|_, s| {
            s.inactive_since.is_none_or(|since| {
                now.saturating_duration_since(since) < keep.max(s.poll_interval)
            })
        });
        before - map.len()
    }

    /// Channels with a running poller.
    pub fn active_count(&self) -> usize {
        self.channels
            .lock()
            .expect("status lock")
            .values()
            .filter(|s| s.active)
            .count()
    }

    /// Channels with a running poller whose upstream is failing (degraded since its last
    /// failed poll, until one succeeds).
    pub fn failing_count(&self) -> usize {
        self.channels
            .lock()
            .expect("status lock")
            .values()
            .filter(|s| s.active && s.degraded.is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(id: &str) -> ChannelId {
        ChannelId::parse(id).unwrap()
    }

    #[test]
    fn a_stopped_channel_keeps_its_last_poll() {
        let board = StatusBoard::default();
        let run = board.started(&ch("a"), Duration::from_secs(5), 0, 0);
        board.update(&ch("a"), |s| {
            s.seq = 3;
            s.last_poll = Some(LastPoll {
                at: SystemTime::UNIX_EPOCH,
                outcome: PollOutcome::Changed,
                duration: Duration::from_millis(4),
            });
            s.next_poll = Some(SystemTime::UNIX_EPOCH);
        });
        assert_eq!(board.active_count(), 1);
        board.stopped(&ch("a"), run);
        let a = board.get(&ch("a")).unwrap();
        assert!(!a.active && a.next_poll.is_none());
        assert_eq!(
            (a.seq, a.last_poll.unwrap().outcome),
            (3, PollOutcome::Changed)
        );
        assert_eq!(board.active_count(), 0);
        board.update(&ch("unknown"), |s| s.seq = 1);
        assert!(board.get(&ch("unknown")).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn inactive_channels_are_forgotten_after_a_while() {
        let board = StatusBoard::default();
        let hour = Duration::from_secs(3600);
        let a = board.started(&ch("a"), Duration::from_secs(5), 1, 1);
        let slow = board.started(&ch("slow"), 2 * hour, 1, 1);
        board.started(&ch("active"), Duration::from_secs(5), 1, 1);
        board.stopped(&ch("a"), a);
        board.stopped(&ch("slow"), slow);
        tokio::time::advance(hour - Duration::from_secs(1)).await;
        assert_eq!(board.prune(tokio::time::Instant::now(), hour), 0, "not yet");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(board.prune(tokio::time::Instant::now(), hour), 1);
        assert!(board.get(&ch("a")).is_none(), "forgotten");
        assert!(
            board.get(&ch("slow")).is_some(),
            "kept for its poll interval"
        );
        tokio::time::advance(hour).await;
        assert_eq!(board.prune(tokio::time::Instant::now(), hour), 1);
        assert!(
            board.get(&ch("active")).is_some(),
            "an active channel stays"
        );
    }

    #[test]
    fn a_stopping_poller_leaves_its_successor_active() {
        let board = StatusBoard::default();
        let old = board.started(&ch("a"), Duration::from_secs(5), 0, 0);
        board.update(&ch("a"), |s| {
            s.degraded = Some(crate::protocol::FailureCode::UpstreamUnavailable)
        });
        let new = board.started(&ch("a"), Duration::from_secs(5), 2, 1);
        board.stopped(&ch("a"), old);
        let a = board.get(&ch("a")).unwrap();
        assert!(
            a.active,
            "the old run's stop must not deactivate the new run"
        );
        assert_eq!(a.degraded, None, "the new run starts healthy");
        assert_eq!(board.failing_count(), 0);
        board.update(&ch("a"), |s| {
            s.degraded = Some(crate::protocol::FailureCode::UpstreamUnavailable)
        });
        assert_eq!(board.failing_count(), 1);
        board.stopped(&ch("a"), new);
        assert!(!board.get(&ch("a")).unwrap().active);
        assert_eq!(board.failing_count(), 0, "only active channels count");
    }
}
