//! Event history by time: every logged event keeps its time; `GET /channels/{name}/history`
//! pages one channel's events in time order and `GET /history` merges many channels' into
//! one time-ordered page, both with opaque cursors; ranges older than the store keeps come
//! from the archive (docs/history.md).

mod cursor;
mod line;
mod merge;
mod source;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::channel::ChannelId;
use crate::fetcher::FetcherEntry;
use crate::store::LoggedEvent;

pub use cursor::{Cursor, CursorError, MAX_CURSOR_CHARS};
pub use line::{from_line, parse_rfc3339, rfc3339_ms, to_line, LineError};
pub use merge::{page, Page};
pub use source::{Range, ReadError, Source};

/// A place in one channel's history: the last event read, by time then seq (a channel's
/// events are in both orders at once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub time_ms: u64,
    pub seq: u64,
}

impl Position {
    pub fn of(event: &LoggedEvent) -> Position {
        Position {
            time_ms: event.time_ms,
            seq: event.seq,
        }
    }
}

/// Events read back from a channel's archive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArchivedPage {
    /// Oldest first, every one after the position asked for.
    pub events: Vec<LoggedEvent>,
    /// The archive may hold more after the last one (the limit or the object budget ran out).
    pub more: bool,
}

/// Reads archived events (what a sink wrote) back, for history ranges older than the store
/// keeps.
#[async_trait]
pub trait ArchiveRead: Send + Sync {
    /// `channel`'s archived events with seq > `after.seq`, oldest first, at most `limit`,
    /// opening at most `max_objects` objects (starting from the hour of `after.time_ms`).
    async fn read_after(
        &self,
        channel: &ChannelId,
        after: Position,
        limit: usize,
        max_objects: usize,
    ) -> anyhow::Result<ArchivedPage>;
}

/// What the history routes share: the settings and the archive.
#[derive(Clone)]
pub struct HistoryService {
    pub settings: crate::config::History,
    /// Where archived events are read from; `None` without an archive sink.
    pub archive: Option<Arc<dyn ArchiveRead>>,
    /// The sinks, for the admin API; `None` without an archive.
    pub sinks: Option<Arc<dyn crate::archive::SinkControl>>,
}

impl HistoryService {
    /// `settings`, no archive (tests, embedders).
    pub fn new(settings: crate::config::History) -> HistoryService {
        HistoryService {
            settings,
            archive: None,
            sinks: None,
        }
    }
}

/// What kind of channel a fetcher entry makes (history retention is set per kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// Polled upstream by a fetcher (process, Lambda, declarative HTTP).
    Polled,
    /// Fed by producers (`kind = "push"` channel files).
    Push,
}

impl ChannelKind {
    pub fn of(entry: &FetcherEntry) -> ChannelKind {
        match entry.fetcher.push() {
            Some(_) => ChannelKind::Push,
            None => ChannelKind::Polled,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Polled => "polled",
            ChannelKind::Push => "push",
        }
    }
}

/// The retention of each channel kind, resolved from `[history]` and `store.log_capacity`,
/// and what lagging archive sinks hold back.
#[derive(Clone)]
pub struct Retentions {
    pub polled: crate::store::LogRetention,
    pub push: crate::store::LogRetention,
    /// Checkpoints of the archive sinks (`None` without an archive).
    pub holds: Option<Arc<crate::archive::Holds>>,
}

impl Retentions {
    pub fn from_settings(history: &crate::config::History, log_capacity: u64) -> Retentions {
        Retentions {
            polled: history.retention_for(ChannelKind::Polled, log_capacity),
            push: history.retention_for(ChannelKind::Push, log_capacity),
            holds: None,
        }
    }

    /// Count only, `log_capacity` events, for every kind (tests, embedders).
    pub fn count_only(log_capacity: u64) -> Retentions {
        let r = crate::store::LogRetention {
            max_events: log_capacity,
            max_age: None,
        };
        Retentions {
            polled: r,
            push: r,
            holds: None,
        }
    }

    pub fn of(&self, kind: ChannelKind) -> crate::store::LogRetention {
        match kind {
            ChannelKind::Polled => self.polled,
            ChannelKind::Push => self.push,
        }
    }

    /// The retention of a commit bringing `channel` (of `kind`) to `seq`: its kind's, holding
    /// back what its archive sinks have not archived yet.
    pub fn for_commit(
        &self,
        kind: ChannelKind,
        channel: &ChannelId,
        seq: u64,
    ) -> crate::store::LogRetention {
        let base = self.of(kind);
        match &self.holds {
            Some(holds) => holds.retention(channel, seq, base),
            None => base,
        }
    }
}
