//! CloudWatch Embedded Metric Format: every `log.emf_interval_secs`, one JSON line on stdout
//! that CloudWatch Logs turns into metrics (namespace `log.emf_namespace`, one dimension
//! `Service` = `log.emf_service`), for alarms without a scraper.
//!
//! Gauges are read from the current state; counters are the increase of the Prometheus
//! counters since the previous line, so a count is in exactly one line and `/metrics` and
//! CloudWatch never disagree about what happened.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::IntCounterVec;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::config::Emf;
use crate::demand::Demand;
use crate::metrics::Metrics;
use crate::status::StatusBoard;

/// What a line reports now: the gauges (current state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Channels with subscribers on any Pushpin (stats reports and fresh subscribe hints), as
    /// this replica sees them.
    pub channels_with_subscribers: u64,
    /// Channels this replica polls now.
    pub active_pollers: u64,
    /// Subscribers of every channel on every Pushpin (all transports).
    pub subscribers: u64,
    /// Channels this replica polls whose upstream is failing.
    pub failing_channels: u64,
}

/// Counter totals since the process started, or their increase over an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub publish_failures: u64,
    pub poll_failures: u64,
    pub leases_lost: u64,
    pub leases_acquired: u64,
}

impl Counts {
    /// The totals of the process-wide Prometheus counters.
    pub fn read(m: &Metrics) -> Counts {
        Counts {
            publish_failures: m.publish_failures.get(),
            poll_failures: total(&m.poll_failures, None),
            leases_lost: total(&m.lease_events, Some(("event", "lost"))),
            leases_acquired: total(&m.lease_events, Some(("event", "acquired"))),
        }
    }

    /// The increase from `earlier` (counters only grow; never negative).
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            publish_failures: self
                .publish_failures
                .saturating_sub(earlier.publish_failures),
            poll_failures: self.poll_failures.saturating_sub(earlier.poll_failures),
            leases_lost: self.leases_lost.saturating_sub(earlier.leases_lost),
            leases_acquired: self.leases_acquired.saturating_sub(earlier.leases_acquired),
        }
    }
}

/// The sum of a counter family's series (those with `label` when given), without creating
/// a series that was never counted.
fn total(vec: &IntCounterVec, label: Option<(&str, &str)>) -> u64 {
    vec.collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .filter(|m| {
            label.is_none_or(|(name, value)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == name && l.value() == value)
            })
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// Every metric of a line, by name (the names alarms and dashboards use: do not rename).
pub const METRIC_NAMES: [&str; 8] = [
    "ChannelsWithSubscribers",
    "ActivePollers",
    "Subscribers",
    "FailingChannels",
    "PublishFailures",
    "PollFailures",
    "LeasesLost",
    "LeasesAcquired",
];

/// The EMF document for one line (`timestamp_ms`: milliseconds since the Unix epoch).
pub fn document(emf: &Emf, timestamp_ms: u64, gauges: &Gauges, increases: &Counts) -> Value {
    let values = [
        gauges.channels_with_subscribers,
        gauges.active_pollers,
        gauges.subscribers,
        gauges.failing_channels,
        increases.publish_failures,
        increases.poll_failures,
        increases.leases_lost,
        increases.leases_acquired,
    ];
    let definitions: Vec<Value> = METRIC_NAMES
        .iter()
        .map(|name| json!({"Name": name, "Unit": "Count"}))
        .collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": emf.namespace,
                "Dimensions": [["Service"]],
                "Metrics": definitions,
            }],
        }),
    );
    root.insert("Service".into(), json!(emf.service));
    for (name, value) in METRIC_NAMES.iter().zip(values) {
        root.insert((*name).into(), json!(value));
    }
    Value::Object(root)
}

/// Where a line's gauges come from.
pub struct Sources {
    pub demand: Arc<Demand>,
    pub status: Arc<StatusBoard>,
}

impl Sources {
    fn gauges(&self) -> Gauges {
        let now = tokio::time::Instant::now();
        Gauges {
            channels_with_subscribers: self.demand.active_count(now) as u64,
            active_pollers: self.status.active_count() as u64,
            subscribers: self.demand.all_subscribers(now).total(),
            failing_channels: self.status.failing_count() as u64,
        }
    }
}

/// Writes one line on stdout in a single write under its lock, so no other output can land
/// inside it (logs go to stderr; this keeps it so even when both share a file or pipe).
fn write_line(document: &Value) -> std::io::Result<()> {
    let mut line = document.to_string();
    line.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.flush()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// The task writing the lines, until [`Reporter::finish`].
pub struct Reporter {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Reporter {
    pub fn start(emf: Emf, sources: Sources) -> Reporter {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(emf, sources, stop.clone()));
        Reporter { stop, task }
    }

    /// Writes the last line and stops: call it after the drain, so that line counts the
    /// drain too.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Writes a line every `emf.interval` until `shutdown`, then a last one (so the counts of
/// the final interval are not lost on a rolling deployment).
pub async fn run(emf: Emf, sources: Sources, shutdown: CancellationToken) {
    let mut reported = Counts::default();
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + emf.interval, emf.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(
        interval_s = emf.interval.as_secs(),
        namespace = %emf.namespace,
        "CloudWatch EMF metrics on stdout"
    );
    loop {
        let last = tokio::select! {
            _ = ticks.tick() => false,
            _ = shutdown.cancelled() => true,
        };
        let counts = Counts::read(crate::metrics::get());
        let line = document(&emf, now_ms(), &sources.gauges(), &counts.since(&reported));
        match write_line(&line) {
            Ok(()) => reported = counts,
            // Not counted as reported: the next line carries the increase.
            Err(e) => tracing::warn!(error = %e, "cannot write the EMF line to stdout"),
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
