//! When a poll fails: why (a typed [`PollError`]), how long to back off, telling subscribers
//! the channel is degraded, and recording every attempt on the status board.

use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::time::Instant;

use crate::fetcher::{FetchError, Keys};
use crate::keys::KeyStoreError;
use crate::status::{LastPoll, PollOutcome};

use super::shell::ChannelPoller;

/// Longest error text kept for subscribers and the status API.
const SUMMARY_CHARS: usize = 300;

/// Why a poll produced nothing.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PollError {
    /// Key store errors never hold key values.
    #[error("API keys unavailable: {0}")]
    Keys(#[source] KeyStoreError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

impl PollError {
    /// Seconds the upstream or the platform asked us to wait, honoured exactly.
    pub fn retry_after(&self) -> Option<f64> {
        match self {
            PollError::Fetch(
                FetchError::Upstream { retry_after, .. }
                | FetchError::Throttled { retry_after, .. },
            ) => *retry_after,
            _ => None,
        }
    }

    /// The error as subscribers and the status API see it: fetchers and upstreams may echo
    /// keys back in their errors, so every key value is redacted.
    pub fn summary(&self, keys: &Keys) -> String {
        crate::fetcher::redact(&self.to_string(), keys)
            .chars()
            .take(SUMMARY_CHARS)
            .collect()
    }
}

/// Delay after the `failures`-th failure in a row: the poll interval doubled per failure, with
/// ±20 % jitter so channels that failed together do not retry together, capped at `cap`.
pub fn backoff(interval: Duration, failures: u32, cap: Duration) -> Duration {
    let exponential = interval.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let jitter = 0.8 + 0.4 * rand::random::<f64>();
    exponential.min(cap).mul_f64(jitter).min(cap)
}

impl ChannelPoller {
    /// Records a failed attempt: backs off, and tells subscribers on the transition to
    /// degraded. Returns the delay before the next attempt: exactly what the upstream asked
    /// for (`retry_after`), else exponential backoff with jitter.
    pub(super) async fn fail(&mut self, error: &PollError, keys: &Keys) -> Duration {
        let summary = error.summary(keys);
        let state = &mut self.state;
        state.failures += 1;
        state.retry_in = match error.retry_after() {
            // Exactly as asked, up to the backoff cap (an hour-long Retry-After for a daily
            // quota is retried at the cap, politely, rather than trusted to the year 9999).
            Some(secs) => Duration::try_from_secs_f64(secs)
                .unwrap_or(self.ctx.max_backoff)
                .min(self.ctx.max_backoff),
            None => backoff(state.poll_interval, state.failures, self.ctx.max_backoff),
        };
        tracing::warn!(
            error = %summary,
            failures = state.failures,
            retry_in_s = state.retry_in.as_secs_f64(),
            "poll failed; backing off"
        );
        let retry_in = state.retry_in;
        if state.degraded.replace(summary).is_none() {
            // Only the transition is announced, not every failed poll.
            self.publish_status().await;
        }
        retry_in
    }

    /// A fetch worked: clears the failure count, and tells subscribers if it was degraded.
    pub(super) async fn recovered(&mut self) {
        self.state.failures = 0;
        if self.state.degraded.take().is_some() {
            tracing::info!("upstream recovered");
            self.publish_status().await;
        }
    }

    /// Puts a finished attempt on the status board and in the metrics.
    pub(super) fn record(
        &self,
        outcome: PollOutcome,
        (started_wall, started): (SystemTime, Instant),
        next: Instant,
    ) {
        crate::metrics::get()
            .polls
            .with_label_values(&[self.channel.name(), outcome.as_str()])
            .inc();
        let state = &self.state;
        self.ctx.status.update(&self.channel, |s| {
            s.last_poll = Some(LastPoll {
                at: started_wall,
                outcome,
                duration: started.elapsed(),
            });
            s.next_poll = Some(SystemTime::now() + next.saturating_duration_since(Instant::now()));
            s.seq = state.seq();
            s.item_count = state.stored.items.len();
            s.degraded = state.degraded.clone();
            s.retry_in = state.degraded.as_ref().map(|_| state.retry_in);
        });
    }
}
