//! The archiver: a background task that copies each enabled sink's channel log, after the
//! sink's checkpoint, into objects (one UTC hour each, cut at `max_object_bytes`), then moves
//! the checkpoint. It only reads the store, so it never holds up pollers or publishers.
//!
//! An object's key is fixed by its first event (`layout::object_key`): after a crash between
//! the upload and the checkpoint, the retry reads from the same checkpoint and replaces the
//! object with the same events, or more. A failing sink is retried with exponential backoff
//! (its own, so one bad sink never delays the others). In cluster mode one replica archives:
//! whoever holds the lease on [`super::leader::LEASE_ID`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::book::{Book, SinkRecord};
use super::layout::{cut, object_key, Cut};
use super::leader::Leader;
use super::target::{SinkTarget, TargetError};
use super::SinkType;
use crate::channel::ChannelId;
use crate::history::to_line;
use crate::store::{unix_now_ms, LoggedEvent, StoreError};

/// Events read from the log per request.
const PAGE: usize = 500;
/// The first retry of a failing sink, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Passes run at least this often (and at least every `flush_secs`).
const MAX_PASS_EVERY: Duration = Duration::from_secs(15);

pub type Targets = BTreeMap<SinkType, Arc<dyn SinkTarget>>;

/// The wall clock (unix ms) objects are flushed by; injected for tests.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("the item store did not answer")]
    Store(#[source] StoreError),
    #[error("{0}")]
    Target(TargetError),
}

impl Failure {
    fn detail(&self) -> String {
        match self {
            Failure::Store(e) => e.to_string(),
            Failure::Target(e) => e.detail.clone(),
        }
    }
}

struct Backoff {
    delay: Duration,
    until: Instant,
}

pub struct Archiver {
    book: Arc<Book>,
    targets: Targets,
    leader: Option<Leader>,
    clock: Clock,
    backoff: HashMap<(SinkType, String), Backoff>,
    lags: HashMap<(SinkType, String), u64>,
}

impl Archiver {
    pub fn new(book: Arc<Book>, targets: Targets) -> Archiver {
        Archiver {
            book,
            targets,
            leader: None,
            clock: Arc::new(unix_now_ms),
            backoff: HashMap::new(),
            lags: HashMap::new(),
        }
    }

    /// Cluster mode: archive only while holding the archiver lease.
    pub fn with_leader(mut self, leader: Leader) -> Archiver {
        self.leader = Some(leader);
        self
    }

    pub fn with_clock(mut self, clock: Clock) -> Archiver {
        self.clock = clock;
        self
    }

    /// Between passes: `flush_secs`, at most 15 s, and a third of the lease TTL.
    pub fn every(&self) -> Duration {
        let mut every = Duration::from_secs(self.book.settings.flush_secs).min(MAX_PASS_EVERY);
        if let Some(leader) = &self.leader {
            every = every.min(leader.ttl() / 3);
        }
        every.max(Duration::from_millis(100))
    }

    /// Passes until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.pass() => {}
            }
        }
        if let Some(leader) = &mut self.leader {
            leader.release().await;
        }
    }

    /// One round over every enabled sink that is not backing off; false when another
    /// replica archives.
    pub async fn pass(&mut self) -> bool {
        if let Some(leader) = &mut self.leader {
            if !leader.hold().await {
                return false;
            }
        }
        if let Err(e) = self.book.ensure_settings().await {
            tracing::warn!(error = %e, "archive: cannot record the settings' sinks yet");
        }
        let records = match self.book.list().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "archive: cannot read the sinks");
                return true;
            }
        };
        let live: Vec<(SinkType, String)> = records
            .iter()
            .map(|r| (r.sink, r.channel.clone()))
            .collect();
        // A target that failed this pass is not tried again for other channels until the
        // next (a bucket that is down would fail each in turn, one timeout each).
        let mut down = std::collections::BTreeSet::new();
        for record in records {
            if self.leader.as_ref().is_some_and(|l| !l.valid()) {
                break;
            }
            if down.contains(&record.sink) {
                continue;
            }
            if let Some(sink) = self.one(record).await {
                down.insert(sink);
            }
        }
        self.backoff.retain(|k, _| live.contains(k));
        self.lags.retain(|k, _| live.contains(k));
        self.book.retain_failing(&live);
        self.report(&live);
        true
    }

    /// Archives one sink if it is not backing off; `Some(its type)` when its target failed.
    async fn one(&mut self, mut record: SinkRecord) -> Option<SinkType> {
        let key = (record.sink, record.channel.clone());
        let target = self.targets.get(&record.sink).cloned()?;
        if self
            .backoff
            .get(&key)
            .is_some_and(|b| b.until > Instant::now())
        {
            return None;
        }
        let Ok(channel) = ChannelId::parse(&record.channel) else {
            tracing::warn!(channel = %record.channel, "archive: a sink names no valid channel");
            return None;
        };
        match self.archive(&channel, &mut record, &*target).await {
            Ok(()) => {
                self.backoff.remove(&key);
                self.book.set_failing(record.sink, &record.channel, None);
                if record.last_error.take().is_some() {
                    let _ = self.book.save(&record).await;
                }
                None
            }
            Err(e) => {
                let target_down = matches!(e, Failure::Target(_)).then_some(record.sink);
                let general = e.to_string();
                tracing::warn!(
                    sink = record.sink.as_str(), channel = %record.channel,
                    error = %general, detail = %e.detail(), "archive: sink failing; retrying later"
                );
                let delay = self
                    .backoff
                    .get(&key)
                    .map_or(FIRST_BACKOFF, |b| (b.delay * 2).min(MAX_BACKOFF));
                let until = Instant::now() + delay;
                self.backoff.insert(key, Backoff { delay, until });
                self.book
                    .set_failing(record.sink, &record.channel, Some(general.clone()));
                if record.last_error.as_deref() != Some(general.as_str()) {
                    record.last_error = Some(general);
                    let _ = self.book.save(&record).await;
                }
                target_down
            }
        }
    }

    /// Writes every object due of one sink, moving its checkpoint after each.
    async fn archive(
        &mut self,
        channel: &ChannelId,
        record: &mut SinkRecord,
        target: &dyn SinkTarget,
    ) -> Result<(), Failure> {
        let store = self.book.store.clone();
        let sink = record.sink.as_str();
        let metrics = crate::metrics::get();
        let flush_ms = self.book.settings.flush_secs * 1000;
        let max_bytes = self.book.settings.max_object_bytes;
        loop {
            let page = store
                .log_page(channel, record.archived_seq, PAGE)
                .await
                .map_err(Failure::Store)?;
            if page.meta.seq < record.archived_seq {
                // The channel was removed (store retention) and began again from seq 0.
                tracing::warn!(
                    sink, channel = %channel, seq = page.meta.seq, archived = record.archived_seq,
                    "archive: the channel's seq went back (it was removed and started again); archiving from its log"
                );
                let next = SinkRecord {
                    archived_seq: page.meta.log_floor.min(page.meta.seq),
                    ..record.clone()
                };
                if !self.checkpoint(record, next).await? {
                    return Ok(());
                }
                continue;
            }
            let lag = page.meta.seq.saturating_sub(record.archived_seq);
            self.lags.insert((record.sink, record.channel.clone()), lag);
            // Seq 1 is never an event (a channel's first snapshot is not logged).
            if page.meta.log_floor > record.archived_seq.max(1) {
                let lost = page.meta.log_floor - record.archived_seq.max(1);
                metrics.archive_lost_events.inc_by(lost);
                tracing::warn!(
                    sink, channel = %channel, lost, after = record.archived_seq,
                    "archive: events left the log before they were archived"
                );
                let next = SinkRecord {
                    archived_seq: page.meta.log_floor,
                    ..record.clone()
                };
                if !self.checkpoint(record, next).await? {
                    return Ok(());
                }
            }
            let mut events: Vec<LoggedEvent> = page.events;
            let mut more = page.more;
            let mut lines: Vec<String> = events.iter().map(to_line).collect();
            let n = loop {
                match cut(&events, &lines, more, (self.clock)(), flush_ms, max_bytes) {
                    Cut::Write(n) => break n,
                    Cut::Wait => return Ok(()),
                    Cut::NeedMore => {
                        let after = events.last().map_or(record.archived_seq, |e| e.seq);
                        let next = store
                            .log_page(channel, after, PAGE)
                            .await
                            .map_err(Failure::Store)?;
                        lines.extend(next.events.iter().map(to_line));
                        events.extend(next.events);
                        more = next.more;
                    }
                }
            };
            let mut body = lines[..n].join("\n");
            body.push('\n');
            let key = object_key(channel, &events[0]);
            if let Err(e) = target.put(&key, body.into_bytes()).await {
                metrics
                    .archive_objects
                    .with_label_values(&[sink, "failed"])
                    .inc();
                return Err(Failure::Target(e));
            }
            metrics
                .archive_objects
                .with_label_values(&[sink, "ok"])
                .inc();
            metrics
                .archive_events
                .with_label_values(&[sink])
                .inc_by(n as u64);
            let last = &events[n - 1];
            tracing::debug!(sink, channel = %channel, key, events = n, "archive: object written");
            let next = SinkRecord {
                archived_seq: last.seq,
                archived_time_ms: last.time_ms,
                last_error: None,
                ..record.clone()
            };
            if !self.checkpoint(record, next).await? {
                // Turned off meanwhile: what was written stays.
                return Ok(());
            }
            self.lags.insert(
                (record.sink, record.channel.clone()),
                page.meta.seq.saturating_sub(record.archived_seq),
            );
        }
    }

    /// Stores `next` as the sink's record; `record` follows only once it is stored (a
    /// failed write leaves the stored checkpoint, the one the retry starts from). False when
    /// the sink was turned off meanwhile.
    async fn checkpoint(&self, record: &mut SinkRecord, next: SinkRecord) -> Result<bool, Failure> {
        let saved = self.book.save(&next).await.map_err(Failure::Store)?;
        *record = next;
        Ok(saved)
    }

    /// Lag (worst channel) and failing, per sink type.
    fn report(&self, live: &[(SinkType, String)]) {
        let metrics = crate::metrics::get();
        for sink in self.targets.keys() {
            let lag = self
                .lags
                .iter()
                .filter(|((s, _), _)| s == sink)
                .map(|(_, l)| *l)
                .max()
                .unwrap_or(0);
            let label = [sink.as_str()];
            metrics
                .archive_lag_events
                .with_label_values(&label)
                .set(lag as i64);
            let failing = live
                .iter()
                .any(|(s, c)| s == sink && self.book.failure(*s, c).is_some());
            metrics
                .archive_failing
                .with_label_values(&label)
                .set(failing as i64);
        }
    }
}

#[cfg(test)]
#[path = "archiver_tests.rs"]
mod tests;
