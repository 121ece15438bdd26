//! `[history]`: how much of each channel's event history is kept (by kind: count and age) and
//! how much one history request may read (docs/history.md); the same in the file and typed
//! forms.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SettingsError;
use crate::history::ChannelKind;
use crate::store::LogRetention;

/// One kind's retention; an unset field takes the section's default.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KindRetention {
    /// Events kept per channel of the kind (also how far back `since` resumes).
    pub max_events: Option<u64>,
    /// Seconds an event is kept (0: no age limit).
    pub max_age_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// Seconds an event stays in a channel's history unless its kind says (0: no age limit,
    /// only `store.log_capacity` events).
    pub max_age_secs: u64,
    /// Per channel kind (`polled`, `push`): its own count and age limits.
    pub retention: BTreeMap<ChannelKind, KindRetention>,
    /// Events per history page when `limit` is not given.
    pub page_default: usize,
    /// The largest `limit` a history request accepts.
    pub page_max: usize,
    /// Channels one coalesced read (`GET /history?channel=…`) may name.
    pub max_channels: usize,
    /// Archive objects one read of a channel's archived range may open (older ranges come
    /// from the archive); a page that needs more reads again.
    pub archive_objects_per_read: usize,
}

impl Default for History {
    fn default() -> History {
        History {
            max_age_secs: 7 * 24 * 3600,
            // Empty: a map default would be merged key by key with the operator's (figment).
            retention: BTreeMap::new(),
            page_default: 100,
            page_max: 1000,
            max_channels: 100,
            archive_objects_per_read: 24,
        }
    }
}

impl History {
    /// Every check of the section, naming the key at fault.
    pub(super) fn check(self) -> Result<History, SettingsError> {
        for (key, n) in [
            ("history.page_default", self.page_default),
            ("history.page_max", self.page_max),
            ("history.max_channels", self.max_channels),
            (
                "history.archive_objects_per_read",
                self.archive_objects_per_read,
            ),
        ] {
            if n == 0 {
                return Err(SettingsError::BelowOne { key });
            }
        }
        if self.page_default > self.page_max {
            return Err(SettingsError::Invalid {
                key: "history.page_default",
                problem: "must not be more than history.page_max",
            });
        }
        if self.retention.values().any(|r| r.max_events == Some(0)) {
            return Err(SettingsError::BelowOne {
                key: "history.retention.<kind>.max_events",
            });
        }
        Ok(self)
    }

    /// What a channel of `kind` keeps; `log_capacity` is `store.log_capacity`.
    pub fn retention_for(&self, kind: ChannelKind, log_capacity: u64) -> LogRetention {
        let own = self.retention.get(&kind).copied().unwrap_or_default();
        let age = own.max_age_secs.unwrap_or(self.max_age_secs);
        LogRetention {
            max_events: own.max_events.unwrap_or(log_capacity),
            max_age: (age > 0).then(|| Duration::from_secs(age)),
        }
    }
}
