//! A budget's usage as the store keeps it: a bounded number of time buckets whatever the window
//! (at most [`BUCKETS`] per declared window), conservative on reload.
//!
//! Window `w_i` (ascending; `w_0 = 0`) covers call ages `[w_{i-1}, w_i)` with buckets of
//! `w_i / BUCKETS`; each bucket keeps its count and the age of its newest call, and a reload
//! puts every call of a bucket at that newest time. A call therefore never looks older than it
//! was (a restarted budget never allows more than the limit), and in window `w_i` it looks at
//! most `w_i / BUCKETS` younger (it may hold its slot that much longer after a restart): calls
//! a bucket of window `w_{i+1}` holds are at least `w_i` old, outside `w_i` either way.
//!
//! Encoded as JSON `{"at": <unix ms>, "calls": [[<ms before at>, <count>], ...]}`. The
//! original format, a JSON list of call times (unix ms), still loads.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Buckets per window: a reloaded call holds its slot at most 1/20 of the window longer.
pub const BUCKETS: u64 = 20;

#[derive(Serialize, Deserialize)]
struct Compact {
    at: u64,
    calls: Vec<(u64, u64)>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Compact(Compact),
    /// The original format: every call's time.
    Stamps(Vec<u64>),
}

/// Call end times as unix ms, each with a count of calls that ended then.
pub type Calls = Vec<(u64, u64)>;

/// Decodes a stored usage, in either format.
pub fn decode(text: &str) -> Result<Calls, String> {
    match serde_json::from_str::<Stored>(text).map_err(|e| e.to_string())? {
        Stored::Stamps(stamps) => Ok(stamps.into_iter().map(|ms| (ms, 1)).collect()),
        Stored::Compact(c) => Ok(c
            .calls
            .into_iter()
            .map(|(ago, n)| (c.at.saturating_sub(ago), n))
            .collect()),
    }
}

/// Encodes the calls of `ages` (how long ago each call ended, any order) that fall in the
/// longest of `windows`, as seen at unix ms `at`.
pub fn encode(at: u64, windows: &[Duration], ages: impl IntoIterator<Item = Duration>) -> String {
    let mut lengths: Vec<u64> = windows.iter().map(|w| w.as_millis() as u64).collect();
    lengths.sort_unstable();
    lengths.dedup();
    // (level, bucket) -> (newest age, count)
    let mut buckets: std::collections::BTreeMap<(usize, u64), (u64, u64)> = Default::default();
    for age in ages {
        let age = age.as_millis() as u64;
        let Some(level) = lengths.iter().position(|w| age < *w) else {
            continue; // Older than every window: forgotten.
        };
        let from = if level == 0 { 0 } else { lengths[level - 1] };
        let width = (lengths[level] / BUCKETS).max(1);
        let slot = buckets
            .entry((level, (age - from) / width))
            .or_insert((age, 0));
        slot.0 = slot.0.min(age);
        slot.1 += 1;
    }
    let calls = buckets.into_values().collect();
    serde_json::to_string(&Compact { at, calls }).expect("numbers serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &[u64]) -> Vec<Duration> {
        s.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn the_original_format_loads() {
        assert_eq!(
            decode("[1000,2000,2000]").unwrap(),
            vec![(1000, 1), (2000, 1), (2000, 1)]
        );
        assert_eq!(decode("[]").unwrap(), vec![]);
        assert!(decode("{\"nope\": 1}").is_err());
    }

    #[test]
    fn a_full_window_stays_small_and_counts_exactly() {
        let at = 1_000_000_000;
        // 100,000 calls over the last hour of a per-minute + per-hour budget.
        let ages: Vec<Duration> = (0..100_000u64)
            .map(|i| Duration::from_millis(i * 36))
            .collect();
        let text = encode(at, &secs(&[60, 3600]), ages.iter().copied());
        assert!(text.len() < 1024, "{} bytes: {text}", text.len());
        let calls = decode(&text).unwrap();
        assert_eq!(calls.iter().map(|c| c.1).sum::<u64>(), 100_000);
        for window in [60_000, 3_600_000] {
            let exact = ages
                .iter()
                .filter(|a| (a.as_millis() as u64) < window)
                .count() as u64;
            let stored: u64 = calls
                .iter()
                .filter(|(ms, _)| at - ms < window)
                .map(|c| c.1)
                .sum();
            // At the moment of the save every window counts exactly; later its calls leave
            // it at most one bucket late.
            assert_eq!(stored, exact, "window {window}");
        }
    }

    #[test]
    fn calls_older_than_every_window_are_dropped() {
        let text = encode(10_000_000, &secs(&[1, 60]), secs(&[0, 0, 30, 61, 5000]));
        let calls = decode(&text).unwrap();
        assert_eq!(calls.iter().map(|c| c.1).sum::<u64>(), 3);
        assert!(calls.contains(&(10_000_000, 2)), "{calls:?}");
    }
}
