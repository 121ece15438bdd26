//! Scenario 6: change-detection throughput. Times `restream::changes::diff` (the exact function
//! every poll runs: id lookup, a 128-bit XXH3 of each item's content, an RFC 6902 patch and a
//! copy per changed item, removal scan) over a channel of USGS-like earthquake features that is unchanged, 1 % changed
//! or 100 % changed. A quick timed loop; `benches/change_detection.rs` runs the same cases
//! under criterion and includes this file, so it uses nothing else from the bench crate.

use std::time::{Duration, Instant};

use restream::changes::{content_hash, diff, hash::legacy_hash, item_id};
use restream::store::{StoredItem, StoredItems};
use serde_json::{json, Map, Value};

/// The id field of the generated items (as in `channels/usgs-earthquakes.toml`).
pub const ID_FIELD: &str = "id";

/// How much of a fetch differs from the stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Unchanged,
    /// 1 % of the items (at least one) updated.
    Changed1Pct,
    /// Every item updated.
    Changed100Pct,
}

impl Case {
    pub const ALL: [Case; 3] = [Case::Unchanged, Case::Changed1Pct, Case::Changed100Pct];

    /// The key used in JSON output and benchmark names.
    pub fn name(self) -> &'static str {
        match self {
            Case::Unchanged => "unchanged",
            Case::Changed1Pct => "changed_1pct",
            Case::Changed100Pct => "changed_100pct",
        }
    }

    /// How many of `n` items this case changes.
    pub fn changed(self, n: usize) -> usize {
        match self {
            Case::Unchanged => 0,
            Case::Changed1Pct => (n / 100).max(1).min(n),
            Case::Changed100Pct => n,
        }
    }

    /// Whether item `i` of `n` is among the changed ones (spread evenly over the list).
    pub fn changes_item(self, i: usize, n: usize) -> bool {
        let k = self.changed(n);
        if k == 0 {
            return false;
        }
        if k == n {
            return true;
        }
        // Item i is changed when it is the first index of one of k equal strides.
        let stride = n / k;
        i.is_multiple_of(stride) && i / stride < k
    }
}

/// A small deterministic pseudo-random number for item `i` (splitmix64).
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Earthquake `i` as the USGS GeoJSON summary feeds publish it (one feature: `id`, `type`,
/// 26 `properties`, a `geometry` point), about 700 bytes of JSON. `version` is how many times
/// the USGS has revised it: each revision moves `updated`, the magnitude and `sig`, and marks
/// it reviewed, as real revisions do.
pub fn quake(i: usize, version: u64) -> Map<String, Value> {
    const NETS: [&str; 8] = ["us", "nc", "ci", "ak", "hv", "nn", "uw", "pr"];
    const PLACES: [&str; 6] = [
        "8 km NW of The Geysers, CA",
        "22 km SSE of Pahala, Hawaii",
        "47 km W of Cantwell, Alaska",
        "5 km SW of Ridgecrest, CA",
        "112 km NNE of Hihifo, Tonga",
        "14 km E of Carlsbad, New Mexico",
    ];
    let r = mix(i as u64);
    let net = NETS[(r % 8) as usize];
    let code = format!("{:08}", 70_000_000 + i);
    let id = format!("{net}{code}");
    let time = 1_741_900_000_000u64 + (r >> 20) % 3_600_000;
    let mag = ((r >> 8) % 500) as f64 / 100.0 + (version as f64) * 0.01;
    let mag = (mag * 100.0).round() / 100.0;
    let place = PLACES[((r >> 40) % 6) as usize];
    let lon = -180.0 + ((r >> 12) % 36_000) as f64 / 100.0;
    let lat = -60.0 + ((r >> 28) % 13_000) as f64 / 100.0;
    let depth = ((r >> 44) % 70_000) as f64 / 1000.0;
    let value = json!({
        "type": "Feature",
        "properties": {
            "mag": mag,
            "place": place,
            "time": time,
            "updated": time + 95_000 + version * 60_000,
            "tz": null,
            "url": format!("https://earthquake.usgs.gov/earthquakes/eventpage/{id}"),
            "detail": format!("https://earthquake.usgs.gov/earthquakes/feed/v1.0/detail/{id}.geojson"),
            "felt": null,
            "cdi": null,
            "mmi": null,
            "alert": null,
            "status": if version == 0 { "automatic" } else { "reviewed" },
            "tsunami": 0,
            "sig": (mag * mag * 15.0).round() as u64 + version,
            "net": net,
            "code": code,
            "ids": format!(",{id},"),
            "sources": format!(",{net},"),
            "types": ",nearby-cities,origin,phase-data,",
            "nst": 5 + (r >> 50) % 60,
            "dmin": ((r >> 16) % 10_000) as f64 / 10_000.0,
            "rms": ((r >> 24) % 100) as f64 / 100.0,
            "gap": 30 + (r >> 36) % 200,
            "magType": if mag >= 4.0 { "mb" } else { "md" },
            "type": "earthquake",
            "title": format!("M {mag:.1} - {place}"),
        },
        "geometry": {"type": "Point", "coordinates": [lon, lat, depth]},
        "id": id,
    });
    match value {
        Value::Object(m) => m,
        _ => unreachable!("json! of an object"),
    }
}

/// `n` earthquakes, all at `version`.
pub fn quakes(n: usize, version: u64) -> Vec<Map<String, Value>> {
    (0..n).map(|i| quake(i, version)).collect()
}

/// A fetch result derived from `previous` (what the store holds): the items `case` changes are
/// replaced by their revision `version` (which must differ from theirs in `previous`).
pub fn fetched(
    previous: &[Map<String, Value>],
    case: Case,
    version: u64,
) -> Vec<Map<String, Value>> {
    let n = previous.len();
    previous
        .iter()
        .enumerate()
        .map(|(i, item)| {
            if case.changes_item(i, n) {
                quake(i, version)
            } else {
                item.clone()
            }
        })
        .collect()
}

/// The store's view of `items` (by id), as the poller keeps it after persisting them.
pub fn stored_state(items: &[Map<String, Value>]) -> StoredItems {
    items
        .iter()
        .map(|data| StoredItem {
            id: item_id(data, ID_FIELD).expect("generated items have ids"),
            hash: content_hash(data),
            data: data.clone(),
            seq: 1,
            first_seen: 1_741_900_000,
            last_changed: 1_741_900_000,
        })
        .collect()
}

/// `stored` as an older version wrote it: hashes are hex SHA-256 of the item's JSON.
pub fn legacy_state(stored: &StoredItems) -> StoredItems {
    let mut out = stored.clone();
    for item in out.values_mut() {
        item.hash = legacy_hash(&item.data);
    }
    out
}

/// Classifies one fetch against the stored state, as a poll does (the feeds are complete, so
/// removals are scanned too); returns the number of changes. Changed items are taken out of
/// `items` (moved into the changes, as a poll does), so a changed fetch is classified once.
pub fn classify(items: &mut [Map<String, Value>], stored: &StoredItems) -> usize {
    diff(ID_FIELD, items, stored, true).changes.len()
}

/// Minimum measuring time per case: 1 s at 10,000 items and more, proportionally less for
/// smaller channels, never under 0.2 s (a 1,000-item smoke run takes well under 2 s in debug).
fn budget(items: usize) -> Duration {
    Duration::from_secs_f64((items as f64 / 10_000.0).clamp(0.2, 1.0))
}

pub fn run(items: usize) -> anyhow::Result<serde_json::Value> {
    run_with(items, None, None)
}

/// [`run`], optionally of one case only (by its output key) and with a fixed number of timed
/// repetitions per case instead of a time budget.
pub fn run_with(
    items: usize,
    only: Option<&str>,
    repetitions: Option<u64>,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(items > 0, "classify: --items must be at least 1");
    anyhow::ensure!(
        repetitions != Some(0),
        "classify: --repetitions must be at least 1"
    );
    const NAMES: [&str; 4] = [
        "unchanged",
        "changed_1pct",
        "changed_100pct",
        "unchanged_legacy_hashes",
    ];
    if let Some(name) = only {
        anyhow::ensure!(
            NAMES.contains(&name),
            "classify: unknown --case {name:?} (one of {NAMES:?})"
        );
    }
    let min_time = budget(items);
    let base = quakes(items, 0);
    let stored = stored_state(&base);
    let item_bytes = base
        .iter()
        .map(|i| serde_json::to_vec(i).map_or(0, |v| v.len()))
        .sum::<usize>()
        / items;
    let mut out = Map::new();
    out.insert("scenario".into(), json!("classify"));
    out.insert("items".into(), json!(items));
    let legacy = legacy_state(&stored);
    // The cases, then an unchanged fetch against hashes an older version stored (compared
    // by SHA-256 until a poller has seen them once).
    let runs = Case::ALL.iter().map(|&c| (c, c.name(), &stored)).chain([(
        Case::Unchanged,
        "unchanged_legacy_hashes",
        &legacy,
    )]);
    for (case, name, stored) in runs.filter(|(_, name, _)| only.is_none_or(|o| o == *name)) {
        let fetch = fetched(&base, case, 1);
        let changes = classify(&mut fetch.clone(), stored);
        anyhow::ensure!(
            changes == case.changed(items),
            "classify {name}: diff reported {changes} changes, expected {}",
            case.changed(items)
        );
        // Only the classification (and freeing its result) is timed; a fetch whose items were
        // taken by its changes is copied again, untimed, before the next repetition.
        let mut reps = 0u64;
        let mut elapsed = Duration::ZERO;
        let mut work = fetch.clone();
        loop {
            let started = Instant::now();
            std::hint::black_box(classify(
                std::hint::black_box(&mut work),
                std::hint::black_box(stored),
            ));
            elapsed += started.elapsed();
            reps += 1;
            let done = match repetitions {
                Some(n) => reps >= n,
                None => elapsed >= min_time,
            };
            if done {
                break;
            }
            if changes > 0 {
                work = fetch.clone();
            }
        }
        let secs = elapsed.as_secs_f64();
        let classified = reps as f64 * items as f64;
        out.insert(
            name.into(),
            json!({
                "changes": changes,
                "repetitions": reps,
                "seconds": round(secs, 3),
                "items_per_sec": (classified / secs).round() as u64,
                "us_per_item": round(secs * 1e6 / classified, 3),
                "ms_per_poll": round(secs * 1e3 / reps as f64, 3),
            }),
        );
    }
    out.insert("item_json_bytes".into(), json!(item_bytes));
    out.insert("complete".into(), json!(true));
    out.insert(
        "build".into(),
        json!(if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }),
    );
    Ok(Value::Object(out))
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}
