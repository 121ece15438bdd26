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

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use serde::Deserialize;

use crate::channel::{ChannelId, GripChannel, Tally};

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
    /// (A list, not a map: one source per channel is the rule, and a map's smallest table
    /// holds four.)
    reported: HashMap<ChannelId, Vec<(Source, Reported)>>,
    /// channel → hint expiry.
    hints: HashMap<ChannelId, Instant>,
    /// Active channels (a report or a hint), overall and by fetcher name: kept as channels
    /// come and go, so a channel cap is checked without a scan.
    active: Tally,
}

impl State {
    /// Whether `channel` has a report or a hint (expired ones count until `Demand::active`
    /// drops them; the scheduler's periodic pass notices expiries).
    fn is_active(&self, channel: &ChannelId) -> bool {
        self.reported.contains_key(channel) || self.hints.contains_key(channel)
    }

    /// Sets `channel`'s hint expiry; an existing hint (every keep-alive re-hints its
    /// connection's channels) is updated in place, without a copy of the id.
    fn hint(&mut self, channel: &ChannelId, expires: Instant) {
        match self.hints.get_mut(channel) {
            Some(at) => *at = expires,
            None => {
                self.hints.insert(channel.clone(), expires);
            }
        }
    }

    /// Updates the counts after `channel`'s entries changed; it was active before if `was`.
    fn count(&mut self, channel: &ChannelId, was: bool) {
        match (was, self.is_active(channel)) {
            (false, true) => self.active.add(channel),
            (true, false) => self.active.remove(channel),
            _ => {}
        }
    }
}

/// Why a channel may not become active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapReached {
    /// Its fetcher has this many active channels already.
    Fetcher(usize),
    /// The service has this many active channels already.
    Total(usize),
}

impl CapReached {
    /// The metric label.
    pub fn limit(&self) -> &'static str {
        match self {
            CapReached::Fetcher(_) => "channels_per_fetcher",
            CapReached::Total(_) => "channels_total",
        }
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
                sources.retain(|(s, _)| *s != source);
                if sources.is_empty() {
                    s.reported.remove(&channel);
                }
            }
            if !s.reported.contains_key(&channel) {
                s.hints.remove(&channel);
            }
        } else {
            let ttl = Duration::from_secs(report.ttl.unwrap_or(60)) + TTL_SLACK;
            let reported = Reported {
                expires: now + ttl,
                subscribers: report.subscribers.unwrap_or(1),
            };
            // Refreshes (the steady state: one per channel and TTL) reuse the entries.
            match s.reported.get_mut(&channel) {
                Some(sources) => match sources.iter_mut().find(|(s, _)| *s == source) {
                    Some((_, r)) => *r = reported,
                    None => sources.push((source, reported)),
                },
                None => {
                    s.reported.insert(channel.clone(), vec![(source, reported)]);
                }
            }
        }
        s.count(&channel, was_active);
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
        s.hint(channel, now + self.hint_ttl);
        s.count(channel, was_active);
        drop(s);
        if !was_active {
            self.changed.notify_one();
        }
    }

    /// A subscribe's admission: `channel` may be active if it is already (existing channels
    /// are never starved by new ones), or if its fetcher has fewer than `fetcher_cap` active
    /// channels and the service fewer than `total_cap`. An admitted channel is hinted at once,
    /// under the same lock, so a burst of subscribes cannot overshoot a cap.
    pub fn admit(
        &self,
        channel: &ChannelId,
        fetcher_cap: usize,
        total_cap: usize,
        now: Instant,
    ) -> Result<(), CapReached> {
        let mut s = self.state.lock().expect("demand lock");
        let was_active = s.is_active(channel);
        if !was_active {
            if s.active.of_fetcher(channel.name()) >= fetcher_cap {
                return Err(CapReached::Fetcher(fetcher_cap));
            }
            if s.active.total() >= total_cap {
                return Err(CapReached::Total(total_cap));
            }
        }
        s.hint(channel, now + self.hint_ttl);
        s.count(channel, was_active);
        drop(s);
        if !was_active {
            self.changed.notify_one();
        }
        Ok(())
    }

    /// The channels that have subscribers at `now`; expired entries are dropped. Unordered:
    /// the scheduler reads it every second, and sorting thousands of ids each time cost more
    /// than everything else it does.
    pub fn active(&self, now: Instant) -> HashSet<ChannelId> {
        let mut s = self.state.lock().expect("demand lock");
        let s = &mut *s;
        let expired: Vec<ChannelId> = s
            .hints
            .iter()
            .filter(|(_, exp)| **exp <= now)
            .map(|(c, _)| c.clone())
            .collect();
        for channel in expired {
            s.hints.remove(&channel);
            s.count(&channel, true);
        }
        let mut emptied = Vec::new();
        for (channel, sources) in s.reported.iter_mut() {
            sources.retain(|(_, r)| r.expires > now);
            if sources.is_empty() {
                emptied.push(channel.clone());
            }
        }
        for channel in emptied {
            s.reported.remove(&channel);
            s.count(&channel, true);
        }
        let mut active = HashSet::with_capacity(s.reported.len().max(s.hints.len()));
        active.extend(s.reported.keys().chain(s.hints.keys()).cloned());
        active
    }

    /// Whether `channel` has subscribers at `now` (what [`Demand::active`] would contain,
    /// without building the whole set).
    pub fn is_active(&self, channel: &ChannelId, now: Instant) -> bool {
        let s = self.state.lock().expect("demand lock");
        s.hints.get(channel).is_some_and(|exp| *exp > now)
            || s.reported
                .get(channel)
                .is_some_and(|sources| sources.iter().any(|(_, r)| r.expires > now))
    }

    /// How many channels have subscribers at `now` (the size of [`Demand::active`], read
    /// without dropping expired entries: for metrics).
    pub fn active_count(&self, now: Instant) -> usize {
        let s = self.state.lock().expect("demand lock");
        let reported = |c: &ChannelId| {
            s.reported
                .get(c)
                .is_some_and(|sources| sources.iter().any(|(_, r)| r.expires > now))
        };
        let hinted_only = s
            .hints
            .iter()
            .filter(|(c, exp)| **exp > now && !reported(c))
            .count();
        s.reported.keys().filter(|c| reported(c)).count() + hinted_only
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
mod tests;
