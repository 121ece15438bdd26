//! What a poller keeps in memory: a cache of the stored channel, the latest events for
//! resumes, and where it stands with the upstream and with Pushpin.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::channel::ChannelId;
use crate::protocol::FailureCode;
use crate::pushpin::grip::PublishItem;
use crate::store::{Commit, ItemStore, LoggedEvent};

use super::plan::ChannelState;

/// Events a poller keeps in memory for resumes.
pub(super) const RECENT_EVENTS: usize = 256;

/// A logged event and when its broadcast was handed to Pushpin (if by this poller).
pub(super) struct Recent {
    pub(super) event: LoggedEvent,
    pub(super) published_at: Option<Instant>,
}

/// The channel as this poller knows it.
pub(super) struct State {
    /// A cache of the store.
    pub(super) stored: ChannelState,
    /// Events persisted but not yet accepted by Pushpin, retried before the next poll.
    pub(super) unpublished: Vec<PublishItem>,
    /// The latest logged events (at most `RECENT_EVENTS`, consecutive, ending at the seq),
    /// so a reconnect storm's resumes are answered without reading the store.
    pub(super) recent: VecDeque<Recent>,
    /// When this poller had loaded the channel: a subscribe whose admission started it was
    /// handled before, though its snapshot request may reach the queue a little later.
    pub(super) loaded_at: Instant,
    /// When the channel's first snapshot was broadcast, if by this poller.
    pub(super) first_snapshot_at: Option<Instant>,
    /// The first poll is persisted and its snapshot not yet broadcast.
    pub(super) snapshot_due: bool,
    /// The last fetch error while the upstream is failing (subscribers were told once).
    pub(super) degraded: Option<FailureCode>,
    /// Failed polls in a row.
    pub(super) failures: u32,
    /// Delay before the next attempt while degraded.
    pub(super) retry_in: Duration,
    pub(super) poll_interval: Duration,
    /// When this poller last marked the channel active in the store (retention).
    pub(super) touched_at: Option<Instant>,
    /// What this poller handed Pushpin lately, so bursts stay within its buffers.
    pub(super) burst: crate::pushpin::publisher::BurstWindow,
    /// The seq whose snapshot an up-to-date subscriber's answer last offered to the snapshot
    /// cache (0: none): built at most once per seq on that path.
    pub(super) offered_seq: std::sync::atomic::AtomicU64,
}

impl State {
    fn new(stored: ChannelState, poll_interval: Duration) -> State {
        State {
            stored,
            unpublished: Vec::new(),
            recent: VecDeque::new(),
            loaded_at: Instant::now(),
            first_snapshot_at: None,
            snapshot_due: false,
            degraded: None,
            failures: 0,
            retry_in: poll_interval,
            poll_interval,
            touched_at: None,
            burst: Default::default(),
            offered_seq: Default::default(),
        }
    }

    pub(super) fn seq(&self) -> u64 {
        self.stored.meta.seq
    }

    /// Takes a persisted commit into the cache and the recent events.
    pub(super) fn committed(&mut self, commit: Commit) {
        let expected_seq = commit.expected_seq;
        let events = self.stored.apply(commit);
        if expected_seq == 0 {
            self.recent.clear(); // The first poll's snapshot is not logged.
            return;
        }
        if self
            .recent
            .back()
            .is_some_and(|r| r.event.seq != expected_seq)
        {
            self.recent.clear(); // Not consecutive (a commit we did not see): start over.
        }
        self.recent.extend(events.into_iter().map(|event| Recent {
            event,
            published_at: None,
        }));
        while self.recent.len() > RECENT_EVENTS {
            self.recent.pop_front();
        }
    }
}

/// Loads the channel from the store, retrying until it works or we are shut down.
pub(super) async fn load(
    channel: &ChannelId,
    store: &dyn ItemStore,
    poll_interval: Duration,
    shutdown: &CancellationToken,
) -> Option<State> {
    let mut delay = Duration::from_millis(200);
    loop {
        match store.load(channel).await {
            Ok((meta, items)) => {
                let stored = ChannelState::from_loaded(meta, items);
                return Some(State::new(stored, poll_interval));
            }
            Err(e) => {
                tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot load channel state")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ChannelMeta;

    fn commit(expected_seq: u64, seqs: impl IntoIterator<Item = u64>) -> Commit {
        let events: Vec<LoggedEvent> = seqs
            .into_iter()
            .map(|seq| LoggedEvent::new(seq, format!("e{seq}"), seq))
            .collect();
        let seq = events.last().map_or(expected_seq.max(1), |e| e.seq);
        Commit {
            expected_seq,
            meta: ChannelMeta {
                seq,
                ..ChannelMeta::default()
            },
            events,
            ..Commit::new(ChannelId::parse("t").unwrap())
        }
    }

    fn recent(state: &State) -> Vec<u64> {
        state.recent.iter().map(|r| r.event.seq).collect()
    }

    #[test]
    fn recent_events_stay_consecutive_and_bounded() {
        let mut state = State::new(ChannelState::default(), Duration::from_secs(1));
        state.committed(commit(0, [])); // The first poll: a snapshot, nothing logged.
        assert_eq!((state.seq(), recent(&state)), (1, vec![]));
        state.committed(commit(1, 2..=3));
        state.committed(commit(3, 4..=4));
        assert_eq!(recent(&state), vec![2, 3, 4]);
        // A commit this poller did not see (another replica's): start over from this one.
        state.committed(commit(9, 10..=11));
        assert_eq!(recent(&state), vec![10, 11]);
        state.committed(commit(11, 12..=(12 + RECENT_EVENTS as u64)));
        assert_eq!(state.recent.len(), RECENT_EVENTS);
        assert_eq!(state.recent.back().unwrap().event.seq, state.seq());
    }
}
