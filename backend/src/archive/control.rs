//! The admin API's view of sinks (`SinkControl`): the stored sink records and the settings'
//! sinks, each with its lag (the channel's seq and oldest unarchived event, read live).

use std::sync::Arc;

use async_trait::async_trait;

use super::book::{Book, SinkRecord};
use super::{EnabledBy, SinkControl, SinkError, SinkState, SinkType};
use crate::channel::ChannelId;
use crate::store::unix_now_ms;

pub struct Sinks {
    book: Arc<Book>,
}

impl Sinks {
    pub fn new(book: Arc<Book>) -> Sinks {
        Sinks { book }
    }

    async fn state_of(&self, record: SinkRecord) -> Result<SinkState, SinkError> {
        let unavailable = |e: crate::store::StoreError| {
            tracing::warn!(error = %e, "archive: channel state unavailable");
            SinkError::Store("the item store did not answer".into())
        };
        let channel = ChannelId::parse(&record.channel)
            .map_err(|_| SinkError::Store("a sink record names no valid channel".into()))?;
        let page = self
            .book
            .store
            .log_page(&channel, record.archived_seq, 1)
            .await
            .map_err(unavailable)?;
        let lag_events = page.meta.seq.saturating_sub(record.archived_seq);
        let lag_secs = match (lag_events, page.events.first()) {
            (0, _) | (_, None) => 0,
            (_, Some(oldest)) => unix_now_ms().saturating_sub(oldest.time_ms) / 1000,
        };
        let enabled_by = match self.book.in_settings(&channel, record.sink) {
            true => EnabledBy::Settings,
            false => EnabledBy::Api,
        };
        // This replica's view is fresher when it is the one archiving.
        let last_error = self
            .book
            .failure(record.sink, &record.channel)
            .or(record.last_error);
        Ok(SinkState {
            channel: record.channel,
            sink: record.sink,
            enabled_by,
            archived_seq: record.archived_seq,
            archived_time_ms: record.archived_time_ms,
            channel_seq: page.meta.seq,
            lag_events,
            lag_secs,
            last_error,
        })
    }
}

#[async_trait]
impl SinkControl for Sinks {
    async fn list(&self) -> Result<Vec<SinkState>, SinkError> {
        self.book.ensure_settings().await?;
        let mut out = Vec::new();
        for record in self.book.list().await? {
            out.push(self.state_of(record).await?);
        }
        Ok(out)
    }

    async fn enable(&self, channel: &ChannelId, sink: SinkType) -> Result<SinkState, SinkError> {
        self.book.configured(sink)?;
        let record = self.book.create(channel, sink, EnabledBy::Api).await?;
        self.state_of(record).await
    }

    async fn disable(&self, channel: &ChannelId, sink: SinkType) -> Result<bool, SinkError> {
        self.book.configured(sink)?;
        if self.book.in_settings(channel, sink) {
            return Err(SinkError::InSettings);
        }
        self.book.delete(channel, sink).await
    }

    async fn state(
        &self,
        channel: &ChannelId,
        sink: SinkType,
    ) -> Result<Option<SinkState>, SinkError> {
        self.book.configured(sink)?;
        self.book.ensure_settings().await?;
        match self.book.get(channel, sink).await? {
            Some(record) => Ok(Some(self.state_of(record).await?)),
            None => Ok(None),
        }
    }

    fn failing(&self) -> Vec<(SinkType, String)> {
        self.book.failing()
    }
}
