//! What a channel's log must keep for its lagging sinks: per channel, the lowest checkpoint of
//! its sinks, refreshed from the sink records on every replica. A commit raises its count
//! retention (up to `archive.max_held_events` more) so the log does not trim what a sink has
//! not archived yet — an outage of the sink's target delays archiving and loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::book::Book;
use crate::channel::ChannelId;
use crate::store::LogRetention;

/// Between two reads of the sink records.
const REFRESH: Duration = Duration::from_secs(5);

pub struct Holds {
    /// Channel → the lowest archived seq of its sinks.
    archived: RwLock<HashMap<ChannelId, u64>>,
    /// Events kept beyond the retention's count at most, per channel.
    max_held: u64,
}

impl Holds {
    pub fn new(max_held: u64) -> Holds {
        Holds {
            archived: RwLock::default(),
            max_held,
        }
    }

    /// Replaces the checkpoints (one refresh).
    pub fn set(&self, archived: HashMap<ChannelId, u64>) {
        *self.archived.write().expect("holds lock") = archived;
    }

    /// Whether `channel` has a sink on (as last read).
    pub fn has_sink(&self, channel: &ChannelId) -> bool {
        self.archived
            .read()
            .expect("holds lock")
            .contains_key(channel)
    }

    /// The retention of a commit that brings `channel` to `seq`: `base`, with its count raised
    /// to keep every event its sinks have not archived (at most `max_held` more).
    pub fn retention(&self, channel: &ChannelId, seq: u64, base: LogRetention) -> LogRetention {
        let archived = self
            .archived
            .read()
            .expect("holds lock")
            .get(channel)
            .copied();
        let Some(archived) = archived else {
            return base;
        };
        let unarchived = seq.saturating_sub(archived);
        LogRetention {
            max_events: base
                .max_events
                .max(unarchived.min(base.max_events.saturating_add(self.max_held))),
            ..base
        }
    }

    /// Reads the sink records every few seconds until `shutdown` (a failed read keeps the
    /// last checkpoints: a stale one is lower, so it holds more, never less).
    pub async fn run(self: Arc<Self>, book: Arc<Book>, shutdown: CancellationToken) {
        // The settings' sinks first, so they hold from the first commit on.
        if let Err(e) = book.ensure_settings().await {
            tracing::warn!(error = %e, "archive: cannot record the settings' sinks yet");
        }
        loop {
            match book.list().await {
                Ok(records) => {
                    let mut archived: HashMap<ChannelId, u64> = HashMap::new();
                    for r in records {
                        if let Ok(channel) = ChannelId::parse(&r.channel) {
                            let low = archived.entry(channel).or_insert(r.archived_seq);
                            *low = (*low).min(r.archived_seq);
                        }
                    }
                    self.set(archived);
                }
                Err(e) => tracing::warn!(error = %e, "archive: cannot read sink checkpoints"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(REFRESH) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ChannelMeta, Commit, ItemStore, LoggedEvent, MemoryStore};

    fn base() -> LogRetention {
        LogRetention {
            max_events: 3,
            max_age: None,
        }
    }

    #[test]
    fn a_lagging_sink_raises_the_count_within_the_bound() {
        let holds = Holds::new(10);
        let (c, other) = (
            ChannelId::parse("c").unwrap(),
            ChannelId::parse("o").unwrap(),
        );
        holds.set(HashMap::from([(c.clone(), 4)]));
        assert_eq!(
            holds.retention(&other, 50, base()),
            base(),
            "no sink: unchanged"
        );
        assert_eq!(
            holds.retention(&c, 6, base()).max_events,
            3,
            "caught up enough"
        );
        assert_eq!(
            holds.retention(&c, 12, base()).max_events,
            8,
            "keeps 5..=12"
        );
        assert_eq!(
            holds.retention(&c, 40, base()).max_events,
            13,
            "at most 10 more"
        );
    }

    #[tokio::test]
    async fn the_log_keeps_what_the_sink_has_not_archived() {
        let store = MemoryStore::new(3);
        let c = ChannelId::parse("held").unwrap();
        let holds = Holds::new(100);
        holds.set(HashMap::from([(c.clone(), 1)]));
        store
            .commit(Commit {
                meta: ChannelMeta {
                    seq: 1,
                    log_floor: 1,
                    ..Default::default()
                },
                ..Commit::new(c.clone())
            })
            .await
            .unwrap();
        for seq in 2..=20u64 {
            store
                .commit(Commit {
                    expected_seq: seq - 1,
                    meta: ChannelMeta {
                        seq,
                        log_floor: 1,
                        ..Default::default()
                    },
                    events: vec![LoggedEvent::new(seq, "{}", seq)],
                    retention: Some(holds.retention(&c, seq, base())),
                    ..Commit::new(c.clone())
                })
                .await
                .unwrap();
        }
        let events = store.events_after(&c, 1).await.unwrap().unwrap();
        assert_eq!(
            events.len(),
            19,
            "nothing trimmed while the sink is at seq 1"
        );
        holds.set(HashMap::from([(c.clone(), 20)]));
        store
            .commit(Commit {
                expected_seq: 20,
                meta: ChannelMeta {
                    seq: 21,
                    log_floor: 1,
                    ..Default::default()
                },
                events: vec![LoggedEvent::new(21, "{}", 21)],
                retention: Some(holds.retention(&c, 21, base())),
                ..Commit::new(c.clone())
            })
            .await
            .unwrap();
        assert_eq!(
            store.meta(&c).await.unwrap().log_floor,
            18,
            "caught up: back to 3"
        );
    }
}
