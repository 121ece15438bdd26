//! When a poll fails: why (a typed [`PollError`]), how long to back off, telling subscribers
//! the channel is degraded, and recording every attempt on the status board.

use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::time::Instant;

use crate::fetcher::{FetchError, Keys};
use crate::keys::KeyStoreError;
use crate::protocol::FailureCode;
use crate::status::{LastPoll, PollOutcome};

use super::shell::ChannelPoller;

/// Longest error text logged.
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
                | FetchError::Throttled { retry_after, .. }
                | FetchError::Refused { retry_after, .. },
            ) => *retry_after,
            _ => None,
        }
    }

    /// What subscribers and the public status API are told.
    pub fn code(&self) -> FailureCode {
        match self {
            PollError::Keys(_) => FailureCode::KeysUnavailable,
            PollError::Fetch(FetchError::Upstream { status: 429, .. }) => {
                FailureCode::UpstreamRateLimited
            }
            PollError::Fetch(FetchError::Upstream { .. }) => FailureCode::UpstreamUnavailable,
            PollError::Fetch(FetchError::Refused { code, .. }) => {
                use crate::fetcher::http::Refusal;
                match code {
                    Refusal::UrlNotAllowed => FailureCode::UrlNotAllowed,
                    Refusal::FeedTooLarge => FailureCode::FeedTooLarge,
                    Refusal::TransformFailed => FailureCode::TransformFailed,
                    Refusal::HostBudgetExhausted => FailureCode::HostBudgetExhausted,
                }
            }
            PollError::Fetch(
                FetchError::Throttled { .. }
                | FetchError::Unavailable { .. }
                | FetchError::Spawn { .. },
            ) => FailureCode::FetcherUnavailable,
            PollError::Fetch(_) => FailureCode::FetcherFailed,
        }
    }

    /// The error for the logs: fetchers and upstreams may echo keys back in their errors, so
    /// every key value is redacted.
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
        let code = error.code();
        crate::metrics::get()
            .poll_failures
            .with_label_values(&[self.channel.name(), code.as_str()])
            .inc();
        tracing::warn!(
            error = %summary,
            code = code.as_str(),
            failures = state.failures,
            retry_in_s = state.retry_in.as_secs_f64(),
            "poll failed; backing off"
        );
        let retry_in = state.retry_in;
        if state.degraded.replace(code).is_none() {
            // Only the transition is announced, not every failed poll; subscribers served
            // the kept snapshot meanwhile are handed back to be told too.
            self.ctx.snapshots.forget(&self.channel);
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
            s.degraded = state.degraded;
            s.retry_in = state.degraded.as_ref().map(|_| state.retry_in);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(e: FetchError) -> PollError {
        PollError::Fetch(e)
    }

    #[test]
    fn every_failure_has_a_public_code_and_its_details_stay_out_of_it() {
        let f = || "crash".to_string();
        let cases = [
            (
                fetch(FetchError::upstream(
                    "f",
                    429,
                    "slow down, key s3cr3t",
                    Some(5.0),
                )),
                FailureCode::UpstreamRateLimited,
            ),
            (
                fetch(FetchError::upstream("f", 503, "down", None)),
                FailureCode::UpstreamUnavailable,
            ),
            (
                fetch(FetchError::Crashed {
                    fetcher: f(),
                    detail: "Traceback: KeyError".into(),
                }),
                FailureCode::FetcherFailed,
            ),
            (
                fetch(FetchError::Timeout {
                    fetcher: f(),
                    seconds: 2.0,
                }),
                FailureCode::FetcherFailed,
            ),
            (
                fetch(FetchError::InvalidResponse {
                    fetcher: f(),
                    detail: "not JSON".into(),
                }),
                FailureCode::FetcherFailed,
            ),
            (
                fetch(FetchError::Throttled {
                    fetcher: f(),
                    detail: "Rate exceeded".into(),
                    retry_after: None,
                }),
                FailureCode::FetcherUnavailable,
            ),
            (
                fetch(FetchError::Unavailable {
                    fetcher: f(),
                    detail: "AccessDenied".into(),
                }),
                FailureCode::FetcherUnavailable,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error}");
            for secret in [
                "s3cr3t",
                "KeyError",
                "AccessDenied",
                "Rate exceeded",
                "not JSON",
            ] {
                assert!(!code.message().contains(secret));
            }
        }
    }
}
