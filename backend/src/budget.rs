//! Shared upstream budgets: every channel polling with the same API keys (or, for keyless
//! fetchers, the same fetcher) draws from one rate limit, in FIFO order so none starves.
//!
//! A budget is a set of sliding windows (`per_second` … `per_day`); a call may start when every
//! window has room. The in-memory usage is exact and authoritative; it is persisted through the
//! item store, compactly ([`saved`]) and at most once per `fetchers.budget_save_secs` and at
//! shutdown ([`Budgets::persist`]), so a restart does not reset it.

pub(crate) mod saved;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fetcher::Keys;
use crate::store::ItemStore;

/// A rate limit: at most `max` calls in any `window`.
pub type Window = (Duration, u64);

/// The budget a channel draws from: its key set (hashed, never the keys themselves) or, with
/// no keys, its fetcher.
pub fn key_set_id(channel_name: &str, keys: &Keys) -> String {
    if keys.is_empty() {
        return format!("fetcher:{channel_name}");
    }
    let mut h = Sha256::new();
    for (name, value) in keys {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(value.expose_secret().as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    format!(
        "keys:{}",
        digest
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

struct Usage {
    windows: Vec<Window>,
    /// End times of finished calls, oldest first.
    ended: VecDeque<Instant>,
    /// Calls started and not finished: they occupy the budget until they end.
    in_flight: usize,
    loaded: bool,
    /// Calls ended since the last save.
    changed: bool,
}

/// When the next call may start.
#[derive(Debug, PartialEq, Eq)]
enum Slot {
    Now,
    At(Instant),
    /// Every slot is held by a call in flight.
    AfterAFinish,
}

/// One key set's budget.
pub struct Budget {
    id: String,
    usage: Mutex<Usage>,
    /// Held while waiting for room: tokio's mutex is FIFO, which makes the budget fair.
    turn: tokio::sync::Mutex<()>,
    finished: tokio::sync::Notify,
}

impl Budget {
    fn longest(windows: &[Window]) -> Duration {
        windows.iter().map(|w| w.0).max().unwrap_or(Duration::ZERO)
    }

    /// A call may start when, in every window, finished calls that ended within it plus calls
    /// in flight (they end at the earliest now) leave room. Counting calls by their end keeps
    /// the upstream's own count (by arrival) within the limit whatever the latency.
    fn next_slot(
        windows: &[Window],
        ended: &VecDeque<Instant>,
        in_flight: usize,
        now: Instant,
    ) -> Slot {
        let mut at = now;
        for &(window, max) in windows {
            let max = max as usize;
            if in_flight >= max {
                return Slot::AfterAFinish;
            }
            let room_for = max - in_flight;
            let recent = ended
                .iter()
                .filter(|t| now.saturating_duration_since(**t) < window)
                .count();
            if recent >= room_for {
                // This end must leave the window before there is room.
                at = at.max(ended[ended.len() - room_for] + window);
            }
        }
        if at <= now {
            Slot::Now
        } else {
            Slot::At(at)
        }
    }

    /// Waits until every window has room, then counts a call in flight; pass the result to
    /// [`Budget::finish`] when the call is done.
    pub async fn acquire(&self, store: &Arc<dyn ItemStore>) -> Option<Instant> {
        if self.usage.lock().expect("budget lock").windows.is_empty() {
            return None; // No declared limit: nothing to count.
        }
        let _turn = self.turn.lock().await;
        self.load(store).await;
        loop {
            let finished = self.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            let slot = {
                let mut u = self.usage.lock().expect("budget lock");
                let now = Instant::now();
                let keep = Budget::longest(&u.windows);
                while u
                    .ended
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) >= keep)
                {
                    u.ended.pop_front();
                }
                let slot = Budget::next_slot(&u.windows, &u.ended, u.in_flight, now);
                if slot == Slot::Now {
                    u.in_flight += 1;
                }
                slot
            };
            match slot {
                Slot::Now => return Some(Instant::now()),
                Slot::At(at) => {
                    tracing::debug!(budget = %self.id, wait_ms = (at - Instant::now()).as_millis() as u64, "waiting for upstream budget");
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = &mut finished => {}
                    }
                }
                Slot::AfterAFinish => finished.await,
            }
        }
    }

    /// Ends a call counted by [`Budget::acquire`]; [`Budgets::persist`] saves it later.
    pub fn finish(&self, permit: Option<Instant>) {
        if permit.is_none() {
            return;
        }
        {
            let mut u = self.usage.lock().expect("budget lock");
            u.in_flight = u.in_flight.saturating_sub(1);
            u.ended.push_back(Instant::now());
            u.changed = true;
        }
        self.finished.notify_waiters();
    }

    async fn load(&self, store: &Arc<dyn ItemStore>) {
        if self.usage.lock().expect("budget lock").loaded {
            return;
        }
        let calls = match store.load_budget(&self.id).await {
            Ok(None) => Vec::new(),
            Ok(Some(text)) => saved::decode(&text).unwrap_or_else(|e| {
                tracing::warn!(budget = %self.id, error = %e, "unreadable budget usage; starting empty");
                Vec::new()
            }),
            Err(e) => {
                tracing::warn!(budget = %self.id, error = %e, "cannot read budget usage; starting empty");
                Vec::new()
            }
        };
        let (now, wall) = (Instant::now(), unix_ms());
        let mut u = self.usage.lock().expect("budget lock");
        let keep = Budget::longest(&u.windows);
        // More calls at one time than the largest limit hold no window longer than that many.
        let most = u.windows.iter().map(|w| w.1).max().unwrap_or(0);
        let mut ended: Vec<Instant> = Vec::new();
        for (ms, count) in calls {
            // A time in the future (another clock) counts as now, the most recent it can be.
            let ago = Duration::from_millis(wall.saturating_sub(ms));
            if ago >= keep {
                continue;
            }
            // Older than this process's clock reaches (just after boot): forgotten, as before.
            let Some(at) = now.checked_sub(ago) else {
                continue;
            };
            ended.extend(std::iter::repeat_n(at, count.min(most) as usize));
        }
        ended.extend(u.ended.drain(..));
        ended.sort();
        u.ended = ended.into();
        u.loaded = true;
    }

    /// Writes the usage if calls ended since the last save; a failed write is retried at the
    /// next save.
    async fn save(&self, store: &Arc<dyn ItemStore>) {
        let text = {
            let mut u = self.usage.lock().expect("budget lock");
            if !u.changed || u.windows.is_empty() {
                return;
            }
            u.changed = false;
            let now = Instant::now();
            let windows: Vec<Duration> = u.windows.iter().map(|w| w.0).collect();
            let ages = u.ended.iter().map(|t| now.saturating_duration_since(*t));
            saved::encode(unix_ms(), &windows, ages)
        };
        if let Err(e) = store.save_budget(&self.id, text).await {
            self.usage.lock().expect("budget lock").changed = true;
            tracing::warn!(budget = %self.id, error = %e, "cannot persist budget usage");
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How much of one window of one budget is taken right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowUsage {
    /// The key set (`fetcher:<name>` or `keys:<hash>`; never a key).
    pub budget: String,
    pub window: Duration,
    /// Calls that ended within the window plus calls in flight.
    pub used: u64,
    pub max: u64,
}

/// Every budget, by key set.
#[derive(Default)]
pub struct Budgets {
    by_id: Mutex<HashMap<String, Arc<Budget>>>,
}

impl Budgets {
    /// Usage of every window of every declared budget, sorted by budget and window.
    pub fn usage(&self) -> Vec<WindowUsage> {
        let now = Instant::now();
        let budgets: Vec<Arc<Budget>> = self
            .by_id
            .lock()
            .expect("budgets lock")
            .values()
            .cloned()
            .collect();
        let mut out = Vec::new();
        for b in budgets {
            let u = b.usage.lock().expect("budget lock");
            for &(window, max) in &u.windows {
                let ended = u
                    .ended
                    .iter()
                    .filter(|t| now.saturating_duration_since(**t) < window)
                    .count();
                out.push(WindowUsage {
                    budget: b.id.clone(),
                    window,
                    used: (ended + u.in_flight) as u64,
                    max,
                });
            }
        }
        out.sort_by(|a, b| (&a.budget, a.window).cmp(&(&b.budget, b.window)));
        out
    }

    /// The budget for `id`; `windows` from this fetcher tighten it (the strictest limit per
    /// window length wins when fetchers sharing keys declare different limits).
    pub fn get(&self, id: &str, windows: &[Window]) -> Arc<Budget> {
        let mut map = self.by_id.lock().expect("budgets lock");
        let budget = map
            .entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(Budget {
                    id: id.to_string(),
                    usage: Mutex::new(Usage {
                        windows: Vec::new(),
                        ended: VecDeque::new(),
                        in_flight: 0,
                        loaded: false,
                        changed: false,
                    }),
                    turn: tokio::sync::Mutex::new(()),
                    finished: tokio::sync::Notify::new(),
                })
            })
            .clone();
        let mut u = budget.usage.lock().expect("budget lock");
        for &(len, max) in windows {
            match u.windows.iter_mut().find(|w| w.0 == len) {
                Some(w) => w.1 = w.1.min(max),
                None => u.windows.push((len, max)),
            }
        }
        drop(u);
        budget
    }

    /// Saves every budget that changed since its last save.
    pub async fn save_changed(&self, store: &Arc<dyn ItemStore>) {
        let budgets: Vec<Arc<Budget>> = self
            .by_id
            .lock()
            .expect("budgets lock")
            .values()
            .cloned()
            .collect();
        for b in budgets {
            b.save(store).await;
        }
    }

    /// Saves changed budgets every `every` until `stop`, then once more (call it after the
    /// pollers stopped): at most one write per budget per `every`.
    pub async fn persist(
        self: Arc<Self>,
        store: Arc<dyn ItemStore>,
        every: Duration,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.save_changed(&store).await,
                _ = stop.cancelled() => break,
            }
        }
        self.save_changed(&store).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn key_sets_are_shared_and_hide_the_keys() {
        let mut a = Keys::new();
        a.insert("api-key".into(), SecretString::from("k1"));
        let b = a.clone();
        assert_eq!(key_set_id("nyt-top", &a), key_set_id("nyt-newswire", &b));
        assert!(!key_set_id("nyt-top", &a).contains("k1"));
        assert_eq!(key_set_id("hn-top", &Keys::new()), "fetcher:hn-top");
    }

    #[test]
    fn calls_in_flight_hold_their_slot_until_they_end() {
        let now = Instant::now();
        let ended: VecDeque<_> =
            [now - Duration::from_secs(50), now - Duration::from_secs(10)].into();
        let minute = [(Duration::from_secs(60), 2)];
        assert_eq!(
            Budget::next_slot(&minute, &ended, 0, now),
            Slot::At(now + Duration::from_secs(10))
        );
        assert_eq!(
            Budget::next_slot(&minute, &ended, 1, now),
            Slot::At(now + Duration::from_secs(50))
        );
        assert_eq!(
            Budget::next_slot(&minute, &ended, 2, now),
            Slot::AfterAFinish
        );
        assert_eq!(
            Budget::next_slot(&[(Duration::from_secs(60), 3)], &ended, 0, now),
            Slot::Now
        );
        assert_eq!(
            Budget::next_slot(&[(Duration::from_secs(60), 3)], &VecDeque::new(), 2, now),
            Slot::Now
        );
    }

    #[tokio::test]
    async fn usage_counts_calls_in_each_window() {
        let store: Arc<dyn ItemStore> = Arc::new(crate::store::MemoryStore::new(10));
        let budgets = Budgets::default();
        let windows = [
            (Duration::from_secs(1), 5),
            (Duration::from_secs(3600), 100),
        ];
        let b = budgets.get("fetcher:x", &windows);
        budgets.get("fetcher:free", &[]);
        let first = b.acquire(&store).await;
        b.finish(first);
        let in_flight = b.acquire(&store).await;
        let usage = budgets.usage();
        assert_eq!(
            usage.len(),
            2,
            "a budget without limits has no windows: {usage:?}"
        );
        assert!(usage.iter().all(|u| u.budget == "fetcher:x" && u.used == 2));
        assert_eq!((usage[0].window, usage[0].max), (Duration::from_secs(1), 5));
        b.finish(in_flight);
    }
}

#[cfg(test)]
mod persist_tests;
