//! What declarative channels may spend on a stranger's behalf (`[declarative]` settings): the
//! `url` allowlist, pages per poll, feed size, transform time and output, calls per host; and
//! the refusal codes when a limit says no.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::allowlist::Allowlist;
use super::transform::TransformLimits;
use crate::config::Declarative;

/// Why a declarative channel refused to call (or to keep reading) its upstream; each has
/// its own code, sent to subscribers in `status` and counted in
/// `restream_declarative_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A `url` param (or a redirect, or a next-page link) names a host not on the allowlist.
    UrlNotAllowed,
    /// A feed document is larger than `declarative.max_feed_bytes`.
    FeedTooLarge,
    /// The transform failed or passed its time or output limit.
    TransformFailed,
    /// The host had its `declarative.host_calls_per_minute` calls this minute.
    HostBudgetExhausted,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UrlNotAllowed => "url_not_allowed",
            Refusal::FeedTooLarge => "feed_too_large",
            Refusal::TransformFailed => "transform_failed",
            Refusal::HostBudgetExhausted => "host_budget_exhausted",
        }
    }
}

/// Calls per host in a sliding minute, shared by every declarative channel of a process.
#[derive(Debug, Default)]
pub struct HostBudgets {
    per_minute: u64,
    calls: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Hosts remembered before empty windows are dropped.
const MAX_TRACKED_HOSTS: usize = 10_000;

impl HostBudgets {
    pub fn new(per_minute: u64) -> HostBudgets {
        HostBudgets {
            per_minute,
            calls: Mutex::default(),
        }
    }

    /// Takes one call to `host`, or says how long until one is free.
    pub fn take(&self, host: &str) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let window = Duration::from_secs(60);
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        if calls.len() >= MAX_TRACKED_HOSTS {
            calls.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let q = calls.entry(host.to_ascii_lowercase()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() as u64 >= self.per_minute {
            let oldest = q.front().copied().unwrap_or(now);
            return Err(window.saturating_sub(now.duration_since(oldest)));
        }
        q.push_back(now);
        Ok(())
    }
}

/// The limits every declarative channel of a process shares.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub allowlist: Allowlist,
    pub max_pages: u32,
    pub max_feed_bytes: usize,
    pub transform: TransformLimits,
    pub hosts: Arc<HostBudgets>,
}

impl HttpLimits {
    pub fn new(d: &Declarative) -> HttpLimits {
        HttpLimits {
            allowlist: Allowlist::new(&d.url_allowlist),
            max_pages: d.max_pages,
            max_feed_bytes: usize::try_from(d.max_feed_bytes).unwrap_or(usize::MAX),
            transform: TransformLimits {
                timeout: Duration::from_millis(d.transform_timeout_ms),
                max_items: usize::try_from(d.transform_max_items).unwrap_or(usize::MAX),
                max_bytes: usize::try_from(d.transform_max_bytes).unwrap_or(usize::MAX),
            },
            hosts: Arc::new(HostBudgets::new(d.host_calls_per_minute)),
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::new(&Declarative::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_host_budget_refills_after_a_minute() {
        let b = HostBudgets::new(2);
        assert!(b.take("a.example").is_ok());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.take("A.example").is_ok());
        assert_eq!(b.take("a.example"), Err(Duration::from_secs(50)));
        assert!(b.take("b.example").is_ok(), "hosts are counted apart");
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(b.take("a.example").is_ok());
        assert!(HostBudgets::new(0).take("x").is_ok(), "0 = no limit");
    }
}
