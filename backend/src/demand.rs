//! Demand: which channels have subscribers right now, from Pushpin's stats plus subscribe hints.
//!
//! A channel is active while any Pushpin reports subscribers for it (until that report's TTL
//! runs out), or while a hint from a WOH request is fresh. Hints make the first poll start
//! at once and let a restarted backend recover its channels from connection meta before the
//! next stats refresh. A report that a channel is gone clears older hints.
//!
//! Pushpin reports each transport (`mode`) separately, so WebSocket and SSE subscribers of one
//! channel keep it active independently. Reports on per-connection channels (`_conn:…`,
//! `_sse:…`; one per client) are not demand and are ignored, and the scheduler is woken only
//! when a channel becomes active or inactive, not by every refresh: with thousands of clients
//! both would otherwise cost a full reconcile per report.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use serde::Deserialize;

use crate::channel::{ChannelId, GripChannel};

/// One stats `sub` report as Pushpin sends it (`pushpin::stats` reads them off the socket).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubReport {
    /// The GRIP channel, as Pushpin names it: parsed once, in [`Demand::apply_report`].
    pub channel: String,
    /// Which Pushpin handler sent it (several Pushpins may report the same channel).
    #[serde(default)]
    pub from: String,
    /// The subscribers' transport: `ws`, `stream` (SSE and other HTTP streaming) or
    /// `response` (long-polling); counted separately by Pushpin.
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub subscribers: Option<u64>,
    #[serde(default)]
    pub ttl: Option<u64>,
    #[serde(default)]
    pub unavailable: bool,
}

/// Slack added to Pushpin's TTL so a refresh arriving on time never flaps a channel.
const TTL_SLACK: Duration = Duration::from_secs(5);

/// Where a report came from: a Pushpin instance and a transport.
type Source = (String, String);

/// The latest report from one source.
#[derive(Clone, Copy)]
struct Reported {
    expires: Instant,
    subscribers: u64,
}

/// Subscribers of one channel across every Pushpin, by transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Subscribers {
    pub websocket: u64,
    pub sse: u64,
    /// Other HTTP transports (long-polling).
    pub other: u64,
}

impl Subscribers {
    pub fn total(&self) -> u64 {
        self.websocket + self.sse + self.other
    }

    fn add(&mut self, mode: &str, n: u64) {
        match mode {
            "ws" => self.websocket += n,
            "stream" => self.sse += n,
            _ => self.other += n,
        }
    }
}

#[derive(Default)]
struct State {
    /// channel → (Pushpin instance, mode) → latest report.
    reported: HashMap<ChannelId, HashMap<Source, Reported>>,
    /// channel → hint expiry.
    hints: HashMap<ChannelId, Instant>,
}

impl State {
    /// Whether `channel` has a report or a hint (expired ones count until `Demand::active`
    /// drops them; the scheduler's periodic pass notices expiries).
    fn is_active(&self, channel: &ChannelId) -> bool {
        self.reported.contains_key(channel) || self.hints.contains_key(channel)
    }
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
        // Per-connection channels and names that are not ours are not demand.
        let Ok(GripChannel::Public(channel)) = GripChannel::parse(&report.channel) else {
            return;
        };
        let mut s = self.state.lock().expect("demand lock");
        let was_active = s.is_active(&channel);
        let gone = report.unavailable || report.subscribers == Some(0);
        let source = (report.from.clone(), report.mode.clone());
        if gone {
            if let Some(sources) = s.reported.get_mut(&channel) {
                sources.remove(&source);
                if sources.is_empty() {
                    s.reported.remove(&channel);
                }
            }
            if !s.reported.contains_key(&channel) {
                s.hints.remove(&channel);
            }
        } else {
            let ttl = Duration::from_secs(report.ttl.unwrap_or(60)) + TTL_SLACK;
            s.reported.entry(channel.clone()).or_default().insert(
                source,
                Reported {
                    expires: now + ttl,
                    subscribers: report.subscribers.unwrap_or(1),
                },
            );
        }
        let flipped = s.is_active(&channel) != was_active;
        drop(s);
        if flipped {
            self.changed.notify_one();
        }
    }

    /// Records that a connection is subscribed to `channel` right now. Wakes the scheduler
    /// only for a channel that was not active: every WOH request (keep-alives included)
    /// hints all of its connection's channels, and a full pass per hint costs O(channels).
    pub fn hint(&self, channel: &ChannelId, now: Instant) {
        let mut s = self.state.lock().expect("demand lock");
        let was_active = s.is_active(channel);
        s.hints.insert(channel.clone(), now + self.hint_ttl);
        drop(s);
        if !was_active {
            self.changed.notify_one();
        }
    }

    /// The channels that have subscribers at `now`; expired entries are dropped.
    pub fn active(&self, now: Instant) -> BTreeSet<ChannelId> {
        let mut s = self.state.lock().expect("demand lock");
        s.hints.retain(|_, exp| *exp > now);
        s.reported.retain(|_, sources| {
            sources.retain(|_, r| r.expires > now);
            !sources.is_empty()
        });
        s.reported.keys().chain(s.hints.keys()).cloned().collect()
    }

    /// Whether `channel` has subscribers at `now` (what [`Demand::active`] would contain,
    /// without building the whole set).
    pub fn is_active(&self, channel: &ChannelId, now: Instant) -> bool {
        let s = self.state.lock().expect("demand lock");
        s.hints.get(channel).is_some_and(|exp| *exp > now)
            || s.reported
                .get(channel)
                .is_some_and(|sources| sources.values().any(|r| r.expires > now))
    }

    /// Subscribers of `channel` as Pushpin last reported them (unexpired reports only).
    pub fn subscribers(&self, channel: &ChannelId, now: Instant) -> Subscribers {
        let s = self.state.lock().expect("demand lock");
        let mut out = Subscribers::default();
        for ((_, mode), r) in s.reported.get(channel).into_iter().flatten() {
            if r.expires > now {
                out.add(mode, r.subscribers);
            }
        }
        out
    }

    /// Subscribers of every channel id, by transport.
    pub fn all_subscribers(&self, now: Instant) -> Subscribers {
        let s = self.state.lock().expect("demand lock");
        let mut out = Subscribers::default();
        for ((_, mode), r) in s.reported.values().flatten() {
            if r.expires > now {
                out.add(mode, r.subscribers);
            }
        }
        out
    }

    /// Resolves when demand may have changed.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ChannelId {
        ChannelId::parse(name).unwrap()
    }

    fn report(channel: &str, from: &str, unavailable: bool) -> SubReport {
        moded(channel, from, "ws", unavailable)
    }

    fn moded(channel: &str, from: &str, mode: &str, unavailable: bool) -> SubReport {
        SubReport {
            channel: channel.into(),
            from: from.into(),
            mode: mode.into(),
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
        assert!(d.active(t0 + Duration::from_secs(64)).contains(&id("a")));
        assert!(!d.active(t0 + Duration::from_secs(66)).contains(&id("a")));
        d.apply_report(&report("a", "p1", false), t0 + Duration::from_secs(50));
        assert!(d.active(t0 + Duration::from_secs(100)).contains(&id("a")));
    }

    #[tokio::test(start_paused = true)]
    async fn active_while_any_pushpin_reports_subscribers() {
        let d = Demand::new(Duration::from_secs(60));
        let t = Instant::now();
        d.apply_report(&report("a", "p1", false), t);
        d.apply_report(&report("a", "p2", false), t);
        d.apply_report(&report("a", "p1", true), t);
        assert!(d.active(t).contains(&id("a")));
        d.apply_report(&report("a", "p2", true), t);
        assert!(d.active(t).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn websocket_and_sse_subscribers_are_counted_apart() {
        let d = Demand::new(Duration::from_secs(60));
        let t = Instant::now();
        d.apply_report(&moded("a", "p1", "ws", false), t);
        d.apply_report(
            &SubReport {
                subscribers: Some(3),
                ..moded("a", "p1", "stream", false)
            },
            t,
        );
        d.apply_report(&moded("a", "p2", "stream", false), t);
        d.apply_report(&moded("_sse:1", "p2", "stream", false), t);
        let a = d.subscribers(&id("a"), t);
        assert_eq!((a.websocket, a.sse, a.total()), (1, 4, 5));
        assert_eq!(
            d.all_subscribers(t).sse,
            4,
            "private channels are not subscribers"
        );
        // The last SSE stream leaving does not end the WebSocket subscribers' demand.
        d.apply_report(&moded("a", "p1", "stream", true), t);
        d.apply_report(&moded("a", "p2", "stream", true), t);
        assert!(d.active(t).contains(&id("a")));
        assert_eq!(d.subscribers(&id("a"), t).total(), 1);
        assert_eq!(
            d.subscribers(&id("a"), t + Duration::from_secs(70)).total(),
            0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hints_activate_until_gone_or_expired() {
        let d = Demand::new(Duration::from_secs(30));
        let t = Instant::now();
        d.hint(&id("a"), t);
        d.hint(&id("b"), t);
        assert_eq!(d.active(t).len(), 2);
        d.apply_report(&report("a", "p1", true), t);
        assert_eq!(d.active(t).into_iter().collect::<Vec<_>>(), vec![id("b")]);
        assert!(d.active(t + Duration::from_secs(31)).is_empty());
    }

    /// Whether `changed` resolves now (a stored wake-up) rather than timing out.
    async fn woken(d: &Demand) -> bool {
        tokio::time::timeout(Duration::from_millis(10), d.changed())
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_channel_turning_active_or_inactive_wakes_the_scheduler() {
        let d = Demand::new(Duration::from_secs(60));
        let t = Instant::now();
        d.apply_report(&report("a", "p1", false), t);
        assert!(woken(&d).await, "a new channel");
        d.apply_report(&report("a", "p1", false), t + Duration::from_secs(10));
        d.apply_report(&moded("a", "p2", "stream", false), t);
        assert!(
            !woken(&d).await,
            "a refresh or another source of an active channel"
        );
        d.apply_report(&moded("a", "p2", "stream", true), t);
        assert!(
            !woken(&d).await,
            "a channel still reported by another source"
        );
        d.apply_report(&report("a", "p1", true), t);
        assert!(woken(&d).await, "a channel gone");
        assert!(d.active(t).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hint_wakes_the_scheduler_only_for_a_channel_not_yet_active() {
        let d = Demand::new(Duration::from_secs(60));
        let t = Instant::now();
        d.hint(&id("a"), t);
        assert!(woken(&d).await, "a new channel");
        d.hint(&id("a"), t + Duration::from_secs(30));
        assert!(!woken(&d).await, "a repeated hint");
        d.apply_report(&report("b", "p1", false), t);
        assert!(woken(&d).await, "a reported channel");
        d.hint(&id("b"), t);
        assert!(!woken(&d).await, "a hint for a reported channel");
        // Once its hint expired and a pass dropped it, the channel is new again.
        let later = t + Duration::from_secs(200);
        assert!(d.active(later).is_empty());
        d.hint(&id("a"), later);
        assert!(woken(&d).await, "a channel active again");
    }

    #[tokio::test(start_paused = true)]
    async fn is_active_agrees_with_the_active_set() {
        let d = Demand::new(Duration::from_secs(30));
        let t = Instant::now();
        d.hint(&id("hinted"), t);
        d.apply_report(&report("reported", "p1", false), t);
        d.apply_report(&report("gone", "p1", false), t);
        d.apply_report(&report("gone", "p1", true), t);
        assert!(d.is_active(&id("reported"), t + Duration::from_secs(40)));
        assert!(!d.is_active(&id("hinted"), t + Duration::from_secs(40)));
        for at in [0, 20, 40, 100] {
            let now = t + Duration::from_secs(at);
            let one_by_one: Vec<bool> = ["hinted", "reported", "gone", "never"]
                .iter()
                .map(|c| d.is_active(&id(c), now))
                .collect();
            let set = d.active(now);
            let from_set: Vec<bool> = ["hinted", "reported", "gone", "never"]
                .iter()
                .map(|c| set.contains(&id(c)))
                .collect();
            assert_eq!(one_by_one, from_set, "{at} s in");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn per_connection_channels_are_not_demand() {
        let d = Demand::new(Duration::from_secs(60));
        let t = Instant::now();
        d.apply_report(&report("_conn:42", "p1", false), t);
        d.apply_report(&moded("_sse:1", "p1", "stream", false), t);
        assert!(!woken(&d).await);
        assert!(d.active(t).is_empty());
        assert_eq!(d.all_subscribers(t).total(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_wake_the_scheduler() {
        let d = std::sync::Arc::new(Demand::new(Duration::from_secs(30)));
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.changed().await }
        });
        tokio::task::yield_now().await;
        d.hint(&id("a"), Instant::now());
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
