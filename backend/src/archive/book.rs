//! The sinks' durable state, shared by every replica through the item store: one record per
//! (channel, sink type) in namespace [`NS`], holding the checkpoint (the last archived event)
//! and the last failure; and this replica's live view of failures (for `/readyz` and metrics).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{EnabledBy, SinkError, SinkType};
use crate::channel::ChannelId;
use crate::config::Archive;
use crate::store::{ItemStore, RecordWrite, StoreError};

/// The item store namespace of sink records.
pub const NS: &str = "archive_sinks";

/// One sink as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkRecord {
    pub channel: String,
    pub sink: SinkType,
    pub enabled_by: EnabledBy,
    /// Every event up to this seq is archived (or was lost before it could be).
    pub archived_seq: u64,
    pub archived_time_ms: u64,
    #[serde(default)]
    pub last_error: Option<String>,
}

pub fn record_key(channel: &str, sink: SinkType) -> String {
    format!("{channel}|{}", sink.as_str())
}

fn store_error(e: StoreError) -> SinkError {
    tracing::warn!(error = %e, "archive: sink state unavailable");
    SinkError::Store("the item store did not answer".into())
}

/// The sinks' state and settings, shared by the archiver and the admin API.
pub struct Book {
    pub store: Arc<dyn ItemStore>,
    pub settings: Archive,
    /// Settings sinks, parsed.
    pub in_settings: Vec<(ChannelId, SinkType)>,
    /// (sink, channel) → the current failure on this replica.
    failing: Mutex<BTreeMap<(SinkType, String), String>>,
    ensured: AtomicBool,
}

impl Book {
    pub fn new(store: Arc<dyn ItemStore>, settings: Archive) -> Book {
        let in_settings = settings
            .sinks
            .iter()
            .filter_map(|e| Some((ChannelId::parse(&e.channel).ok()?, e.sink)))
            .collect();
        Book {
            store,
            settings,
            in_settings,
            failing: Mutex::default(),
            ensured: AtomicBool::new(false),
        }
    }

    pub fn configured(&self, sink: SinkType) -> Result<(), SinkError> {
        match self.settings.has_target(sink) {
            true => Ok(()),
            false => Err(SinkError::NotConfigured(sink.as_str())),
        }
    }

    pub fn in_settings(&self, channel: &ChannelId, sink: SinkType) -> bool {
        self.in_settings
            .iter()
            .any(|(c, s)| c == channel && *s == sink)
    }

    /// Creates the record of every settings sink that has none yet, and turns off the sinks
    /// the settings turned on but no longer list (once per process).
    pub async fn ensure_settings(&self) -> Result<(), SinkError> {
        if self.ensured.load(Ordering::Acquire) {
            return Ok(());
        }
        for (channel, sink) in &self.in_settings {
            self.create(channel, *sink, EnabledBy::Settings).await?;
        }
        for record in self.list().await? {
            let Ok(channel) = ChannelId::parse(&record.channel) else {
                continue;
            };
            if record.enabled_by == EnabledBy::Settings && !self.in_settings(&channel, record.sink)
            {
                tracing::info!(
                    channel = %channel,
                    sink = record.sink.as_str(),
                    "archive sink no longer in the settings (archive.sinks): turned off"
                );
                self.delete(&channel, record.sink).await?;
            }
        }
        self.ensured.store(true, Ordering::Release);
        Ok(())
    }

    /// The sink's record, created if missing with its checkpoint at the log's floor (what
    /// the log no longer holds is not archived: it was never there to be).
    pub async fn create(
        &self,
        channel: &ChannelId,
        sink: SinkType,
        by: EnabledBy,
    ) -> Result<SinkRecord, SinkError> {
        let key = record_key(channel.as_str(), sink);
        if let Some(r) = self.get(channel, sink).await? {
            return Ok(r);
        }
        let meta = self.store.meta(channel).await.map_err(store_error)?;
        let record = SinkRecord {
            channel: channel.to_string(),
            sink,
            enabled_by: by,
            archived_seq: meta.log_floor,
            archived_time_ms: 0,
            last_error: None,
        };
        let text = serde_json::to_string(&record).expect("a record serializes");
        let created = self
            .store
            .put_record(NS, &key, &text, RecordWrite::IfAbsent)
            .await
            .map_err(store_error)?;
        match created {
            true => Ok(record),
            // Someone else created it first: theirs stands.
            false => self
                .get(channel, sink)
                .await?
                .ok_or_else(|| SinkError::Store("the sink state changed under us".into())),
        }
    }

    pub async fn get(
        &self,
        channel: &ChannelId,
        sink: SinkType,
    ) -> Result<Option<SinkRecord>, SinkError> {
        let key = record_key(channel.as_str(), sink);
        let text = self.store.get_record(NS, &key).await.map_err(store_error)?;
        Ok(text.and_then(|t| parse(&key, &t)))
    }

    /// Every sink record, in channel then type order (unreadable ones skipped, logged).
    pub async fn list(&self) -> Result<Vec<SinkRecord>, SinkError> {
        let records = self.store.list_records(NS).await.map_err(store_error)?;
        let mut out: Vec<SinkRecord> = records.iter().filter_map(|(k, v)| parse(k, v)).collect();
        out.sort_by(|a, b| (&a.channel, a.sink).cmp(&(&b.channel, b.sink)));
        Ok(out)
    }

    /// Saves a record over an existing one; false when the sink was turned off meanwhile.
    pub async fn save(&self, record: &SinkRecord) -> Result<bool, StoreError> {
        let key = record_key(&record.channel, record.sink);
        let text = serde_json::to_string(record).expect("a record serializes");
        self.store
            .put_record(NS, &key, &text, RecordWrite::IfPresent)
            .await
    }

    pub async fn delete(&self, channel: &ChannelId, sink: SinkType) -> Result<bool, SinkError> {
        let key = record_key(channel.as_str(), sink);
        let deleted = self
            .store
            .delete_record(NS, &key)
            .await
            .map_err(store_error)?;
        self.set_failing(sink, channel.as_str(), None);
        Ok(deleted)
    }

    pub fn set_failing(&self, sink: SinkType, channel: &str, error: Option<String>) {
        let mut failing = self.failing.lock().expect("failing lock");
        let key = (sink, channel.to_string());
        match error {
            Some(e) => failing.insert(key, e),
            None => failing.remove(&key),
        };
    }

    /// Forgets the failures of sinks not in `live` (turned off elsewhere).
    pub fn retain_failing(&self, live: &[(SinkType, String)]) {
        let mut failing = self.failing.lock().expect("failing lock");
        failing.retain(|k, _| live.contains(k));
    }

    pub fn failure(&self, sink: SinkType, channel: &str) -> Option<String> {
        let failing = self.failing.lock().expect("failing lock");
        failing.get(&(sink, channel.to_string())).cloned()
    }

    /// Each failing sink type: how many channels fail and the first failure.
    pub fn failing(&self) -> Vec<(SinkType, String)> {
        let failing = self.failing.lock().expect("failing lock");
        let mut out: BTreeMap<SinkType, (usize, String)> = BTreeMap::new();
        for ((sink, _), error) in failing.iter() {
            out.entry(*sink).or_insert((0, error.clone())).0 += 1;
        }
        out.into_iter()
            .map(|(sink, (n, e))| (sink, format!("{e} ({n} channel(s))")))
            .collect()
    }
}

fn parse(key: &str, text: &str) -> Option<SinkRecord> {
    match serde_json::from_str(text) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(key, error = %e, "archive: unreadable sink record skipped");
            None
        }
    }
}
