//! One channel's history read a chunk at a time, oldest first: from the archive for what the
//! store's log no longer holds, then from the log itself, within the request's time range.

use super::{ArchiveRead, Position};
use crate::channel::ChannelId;
use crate::store::{ItemStore, LoggedEvent, StoreError};

/// A request's time range: `from` inclusive, `to` exclusive (unix ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
}

/// Why a history read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("item store: {0}")]
    Store(#[from] StoreError),
    #[error("archive: {0:#}")]
    Archive(anyhow::Error),
}

/// Where a channel's read has got to.
pub struct Source<'a> {
    store: &'a dyn ItemStore,
    archive: Option<&'a dyn ArchiveRead>,
    channel: ChannelId,
    range: Range,
    /// Objects one archive read may open.
    archive_objects: usize,
    /// The last event read (returned or skipped); `seq` 0 before the first.
    read: Position,
    /// Whether `read` was placed at the range's start yet.
    placed: bool,
    done: bool,
}

impl<'a> Source<'a> {
    /// A channel's reader that continues after `from` (the cursor's position; the default
    /// position = the range's start).
    pub fn new(
        store: &'a dyn ItemStore,
        archive: Option<&'a dyn ArchiveRead>,
        channel: ChannelId,
        range: Range,
        from: Position,
        archive_objects: usize,
    ) -> Source<'a> {
        Source {
            store,
            archive,
            channel,
            range,
            archive_objects,
            placed: from.seq != 0,
            read: from,
            done: false,
        }
    }

    pub fn channel(&self) -> &ChannelId {
        &self.channel
    }

    /// Up to `n` (≥ 1) more events of the range, oldest first; empty when there are no more
    /// now (a later call may find new ones only on a new `Source`).
    pub async fn next_chunk(&mut self, n: usize) -> Result<Vec<LoggedEvent>, ReadError> {
        if !self.placed {
            self.place().await?;
        }
        while !self.done {
            let batch = self.read_after_position(n.max(1)).await?;
            let Some(last) = batch.last() else {
                self.done = true;
                break;
            };
            self.read = Position::of(last);
            let mut out = Vec::with_capacity(batch.len());
            for e in batch {
                if self.range.to_ms.is_some_and(|to| e.time_ms >= to) {
                    self.done = true;
                    break;
                }
                if self.range.from_ms.is_none_or(|from| e.time_ms >= from) {
                    out.push(e);
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
        Ok(Vec::new())
    }

    /// Puts the read position just before the range's start: by a search of the log when the
    /// store still holds that time, else before everything (the archive, then the log).
    async fn place(&mut self) -> Result<(), ReadError> {
        self.placed = true;
        let Some(from) = self.range.from_ms else {
            return Ok(());
        };
        let first = self.store.log_page(&self.channel, 0, 1).await?;
        if first.events.first().is_some_and(|e| e.time_ms < from) {
            let seq = self.store.seq_before(&self.channel, from).await?;
            self.read = Position { time_ms: from, seq };
        } else {
            self.read = Position {
                time_ms: from,
                seq: 0,
            };
        }
        Ok(())
    }

    /// The next events after the read position, from the archive while the position lies
    /// below what the log holds, else from the log.
    async fn read_after_position(&self, n: usize) -> Result<Vec<LoggedEvent>, ReadError> {
        let page = self.store.log_page(&self.channel, self.read.seq, n).await?;
        let floor = page.meta.log_floor;
        // Floor 1: nothing was ever trimmed (seq 1 is the unlogged first snapshot).
        if let (Some(archive), true) = (self.archive, self.read.seq < floor && floor > 1) {
            let after = Position {
                time_ms: self.read.time_ms.max(self.range.from_ms.unwrap_or(0)),
                seq: self.read.seq,
            };
            let archived = archive
                .read_after(&self.channel, after, n, self.archive_objects)
                .await
                .map_err(ReadError::Archive)?;
            let older: Vec<LoggedEvent> = archived
                .events
                .into_iter()
                .filter(|e| e.seq > self.read.seq && e.seq <= floor)
                .collect();
            if !older.is_empty() {
                crate::metrics::get()
                    .history_events_read
                    .with_label_values(&["archive"])
                    .inc_by(older.len() as u64);
                return Ok(older);
            }
            if archived.more {
                tracing::warn!(
                    channel = %self.channel,
                    after_seq = self.read.seq,
                    "archive read found nothing within its object budget; continuing from the store"
                );
            }
        }
        crate::metrics::get()
            .history_events_read
            .with_label_values(&["store"])
            .inc_by(page.events.len() as u64);
        Ok(page.events)
    }
}
