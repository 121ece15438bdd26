//! Token buckets in a bounded map: per connection or per client address, with no unbounded
//! state in the backend. A bucket that has refilled is the same as no bucket, so it is what
//! gets dropped when the map is full; a map full of live buckets lets a new key through
//! untracked and counts it in a metric (never a log line per request).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How a bucket fills: `burst` tokens at most, `per_sec` tokens a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: f64,
    pub per_sec: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(&self, rate: Rate, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * rate.per_sec).min(rate.burst)
    }
}

/// Sweeps for refilled buckets at most this often when the map is full.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Token buckets by key, at most `capacity` of them.
pub struct RateTracker<K> {
    name: &'static str,
    rate: Rate,
    capacity: usize,
    state: Mutex<(HashMap<K, Bucket>, Option<Instant>)>,
}

impl<K: Eq + Hash + Clone> RateTracker<K> {
    pub fn new(name: &'static str, rate: Rate, capacity: usize) -> RateTracker<K> {
        RateTracker {
            name,
            rate,
            capacity,
            state: Mutex::new((HashMap::new(), None)),
        }
    }

    /// Takes one token for `key`, or says in how many whole seconds (≥ 1) one will be there.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), u64> {
        let mut guard = self.state.lock().expect("rate tracker lock");
        let (buckets, last_sweep) = &mut *guard;
        let tokens = match buckets.get(key) {
            Some(b) => b.refilled(self.rate, now),
            None => {
                if buckets.len() >= self.capacity {
                    let due = last_sweep.is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY);
                    if due {
                        *last_sweep = Some(now);
                        let rate = self.rate;
                        buckets.retain(|_, b| b.refilled(rate, now) < rate.burst);
                    }
                    if buckets.len() >= self.capacity {
                        crate::metrics::get()
                            .rate_tracker_full
                            .with_label_values(&[self.name])
                            .inc();
                        return Ok(());
                    }
                }
                self.rate.burst
            }
        };
        if tokens < 1.0 {
            let wait = (1.0 - tokens) / self.rate.per_sec;
            return Err((wait.ceil() as u64).max(1));
        }
        buckets.insert(
            key.clone(),
            Bucket {
                tokens: tokens - 1.0,
                at: now,
            },
        );
        Ok(())
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.state.lock().expect("rate tracker lock").0.len()
    }
}

/// Keys seen within `window`, at most `capacity` of them: "at most once per window per key".
pub struct Recent<K> {
    name: &'static str,
    window: Duration,
    capacity: usize,
    seen: Mutex<HashMap<K, Instant>>,
}

impl<K: Eq + Hash + Clone> Recent<K> {
    pub fn new(name: &'static str, window: Duration, capacity: usize) -> Recent<K> {
        Recent {
            name,
            window,
            capacity,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// True (and remembered) when `key` was not seen within the window.
    pub fn first_in_window(&self, key: &K, now: Instant) -> bool {
        let mut seen = self.seen.lock().expect("recent lock");
        if seen
            .get(key)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.window)
        {
            return false;
        }
        if seen.len() >= self.capacity && !seen.contains_key(key) {
            let window = self.window;
            seen.retain(|_, t| now.saturating_duration_since(*t) < window);
            if seen.len() >= self.capacity {
                crate::metrics::get()
                    .rate_tracker_full
                    .with_label_values(&[self.name])
                    .inc();
                return true;
            }
        }
        seen.insert(key.clone(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        burst: 3.0,
        per_sec: 0.5,
    };

    #[test]
    fn a_burst_then_the_refill_rate() {
        let t = RateTracker::new("test", RATE, 10);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.take(&"a", now), Ok(()));
        }
        assert_eq!(t.take(&"a", now), Err(2));
        assert_eq!(t.take(&"b", now), Ok(()), "keys are independent");
        assert_eq!(t.take(&"a", now + Duration::from_secs(1)), Err(1));
        assert_eq!(t.take(&"a", now + Duration::from_secs(2)), Ok(()));
    }

    #[test]
    fn a_full_map_drops_refilled_buckets_then_lets_new_keys_through_untracked() {
        let t = RateTracker::new("test", RATE, 2);
        let now = Instant::now();
        for k in [1, 2] {
            for _ in 0..3 {
                t.take(&k, now).unwrap();
            }
        }
        // Full of empty buckets: a third key is let through, not tracked.
        for _ in 0..5 {
            assert_eq!(t.take(&3, now), Ok(()));
        }
        assert_eq!(t.tracked(), 2);
        assert!(t.take(&1, now).is_err(), "tracked keys stay limited");
        // Once refilled, old buckets make room.
        let later = now + Duration::from_secs(10);
        t.take(&3, later).unwrap();
        assert_eq!(t.tracked(), 1);
    }

    #[test]
    fn recent_says_first_once_per_window() {
        let r = Recent::new("test", Duration::from_secs(5), 2);
        let now = Instant::now();
        assert!(r.first_in_window(&"a", now));
        assert!(!r.first_in_window(&"a", now + Duration::from_secs(4)));
        assert!(r.first_in_window(&"a", now + Duration::from_secs(5)));
        assert!(r.first_in_window(&"b", now));
        // Full of live entries: a new key is always "first" (fails open, counted).
        assert!(r.first_in_window(&"c", now + Duration::from_secs(1)));
        assert!(r.first_in_window(&"c", now + Duration::from_secs(1)));
    }
}
