//! Reads archived events back (`history::ArchiveRead`) from the sink history reads from:
//! lists the channel's objects from the hour asked for, in key order (hour, then first seq),
//! opens only those that can hold events after the position, and skips what it has seen
//! (an object replaced after a crash may repeat a neighbour's events). Unparseable lines are
//! skipped with a warning.

use std::sync::Arc;

use async_trait::async_trait;

use super::layout::{channel_dir, first_seq, hour_dir};
use super::target::SinkTarget;
use crate::channel::ChannelId;
use crate::history::{from_line, ArchiveRead, ArchivedPage, Position};

/// Keys listed per request.
const LIST_BATCH: usize = 1000;

pub struct ArchiveReader {
    target: Arc<dyn SinkTarget>,
    /// When set, only channels with a sink on are looked up (a stranger's read of any other
    /// channel costs no listing of the target).
    sinks: Option<Arc<super::Holds>>,
}

impl ArchiveReader {
    pub fn new(target: Arc<dyn SinkTarget>) -> ArchiveReader {
        ArchiveReader {
            target,
            sinks: None,
        }
    }

    /// Reads only the archives of channels that have a sink on (as `holds` last read them).
    pub fn only_channels_with_sinks(mut self, holds: Arc<super::Holds>) -> ArchiveReader {
        self.sinks = Some(holds);
        self
    }
}

#[async_trait]
impl ArchiveRead for ArchiveReader {
    async fn read_after(
        &self,
        channel: &ChannelId,
        after: Position,
        limit: usize,
        max_objects: usize,
    ) -> anyhow::Result<ArchivedPage> {
        if self.sinks.as_ref().is_some_and(|h| !h.has_sink(channel)) {
            return Ok(ArchivedPage::default());
        }
        let prefix = channel_dir(channel);
        // Every key of the position's hour and later sorts after its folder without the `/`.
        let hour = hour_dir(channel, after.time_ms);
        let mut start_after = hour.trim_end_matches('/').to_string();
        let mut last = after.seq;
        let mut page = ArchivedPage::default();
        let mut opened = 0;
        loop {
            let keys = self.target.list(&prefix, &start_after, LIST_BATCH).await?;
            let Some(final_key) = keys.last().cloned() else {
                return Ok(page);
            };
            let listed_all = keys.len() < LIST_BATCH;
            for (i, key) in keys.iter().enumerate() {
                // An object ends where the next one begins: skip those wholly at or before
                // the position (the batch's last one is opened: its successor is unknown).
                let next_first = keys.get(i + 1).and_then(|k| first_seq(k));
                if next_first.is_some_and(|n| n <= last + 1) {
                    continue;
                }
                if opened == max_objects || page.events.len() == limit {
                    page.more = true;
                    return Ok(page);
                }
                opened += 1;
                let body = self.target.get(key).await?;
                let text = String::from_utf8_lossy(&body);
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let event = match from_line(line) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(key, error = %e, "archive: unreadable line skipped");
                            continue;
                        }
                    };
                    if event.seq <= last {
                        continue;
                    }
                    if page.events.len() == limit {
                        page.more = true;
                        return Ok(page);
                    }
                    last = event.seq;
                    page.events.push(event);
                }
            }
            if listed_all {
                return Ok(page);
            }
            start_after = final_key;
        }
    }
}
