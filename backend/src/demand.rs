//! Demand: which channels have subscribers right now, from Pushpin's stats plus subscribe hints.
//!
//! A channel is active while any Pushpin reports subscribers for it (until that report's TTL
//! runs out), or while a hint from a WOH request is fresh. Hints make the first poll start
//! at once and let a restarted backend recover its channels from connection meta before the
//! next stats refresh. A report that a channel is gone clears older hints.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::stats::SubReport;

/// Slack added to Pushpin's TTL so a refresh arriving on time never flaps a channel.
const TTL_SLACK: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    /// channel → Pushpin instance → report expiry.
    reported: HashMap<String, HashMap<String, Instant>>,
    /// channel → hint expiry.
    hints: HashMap<String, Instant>,
}

/// Shared demand, written by the stats reader and WOH handlers, read by the scheduler.
pub struct Demand {
    state: Mutex<State>,
    changed: Notify,
    hint_ttl: Duration,
}

impl Demand {
    pub fn new(hint_ttl: Duration) -> Demand {
        Demand {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            hint_ttl,
        }
    }

    /// Applies one stats `sub` report.
    pub fn apply_report(&self, report: &SubReport, now: Instant) {
        let mut s = self.state.lock().expect("demand lock");
        let gone = report.unavailable || report.subscribers == Some(0);
        if gone {
            if let Some(sources) = s.reported.get_mut(&report.channel) {
                sources.remove(&report.from);
                if sources.is_empty() {
                    s.reported.remove(&report.channel);
                }
            }
            s.hints.remove(&report.channel);
        } else {
            let ttl = Duration::from_secs(report.ttl.unwrap_or(60)) + TTL_SLACK;
            s.reported
                .entry(report.channel.clone())
                .or_default()
                .insert(report.from.clone(), now + ttl);
        }
        drop(s);
        self.changed.notify_one();
    }

    /// Records that a connection is subscribed to `channel` right now.
    pub fn hint(&self, channel: &str, now: Instant) {
        let mut s = self.state.lock().expect("demand lock");
        let fresh = s
            .hints
            .insert(channel.to_string(), now + self.hint_ttl)
            .is_none();
        drop(s);
        if fresh {
            self.changed.notify_one();
        }
    }

    /// The channels that have subscribers at `now`; expired entries are dropped.
    pub fn active(&self, now: Instant) -> BTreeSet<String> {
        let mut s = self.state.lock().expect("demand lock");
        s.hints.retain(|_, exp| *exp > now);
        s.reported.retain(|_, sources| {
            sources.retain(|_, exp| *exp > now);
            !sources.is_empty()
        });
        s.reported.keys().chain(s.hints.keys()).cloned().collect()
    }

    /// Resolves when demand may have changed.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(channel: &str, from: &str, unavailable: bool) -> SubReport {
        SubReport {
            channel: channel.into(),
            from: from.into(),
            subscribers: if unavailable { None } else { Some(1) },
            ttl: if unavailable { None } else { Some(60) },
            unavailable,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reports_expire_unless_refreshed() {
        let d = Demand::new(Duration::from_secs(60));
        let t0 = Instant::now();
        d.apply_report(&report("a", "p1", false), t0);
        assert!(d.active(t0 + Duration::from_secs(64)).contains("a"));
        assert!(!d.active(t0 + Duration::from_secs(66)).contains("a"));
        d.apply_report(&report("a", "p1", false), t0 + Duration::from_secs(50));
        assert!(d.active(t0 + Duration::from_secs(100)).contains("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn active_while_any_pushpin_reports_subscribers() {
        let d = Demand::new(Duration::from_secs(60));
        let t = Instant::now();
        d.apply_report(&report("a", "p1", false), t);
        d.apply_report(&report("a", "p2", false), t);
        d.apply_report(&report("a", "p1", true), t);
        assert!(d.active(t).contains("a"));
        d.apply_report(&report("a", "p2", true), t);
        assert!(d.active(t).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn hints_activate_until_gone_or_expired() {
        let d = Demand::new(Duration::from_secs(30));
        let t = Instant::now();
        d.hint("a", t);
        d.hint("b", t);
        assert_eq!(d.active(t).len(), 2);
        d.apply_report(&report("a", "p1", true), t);
        assert_eq!(
            d.active(t).into_iter().collect::<Vec<_>>(),
            vec!["b".to_string()]
        );
        assert!(d.active(t + Duration::from_secs(31)).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn changes_wake_the_scheduler() {
        let d = std::sync::Arc::new(Demand::new(Duration::from_secs(30)));
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.changed().await }
        });
        tokio::task::yield_now().await;
        d.hint("a", Instant::now());
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
