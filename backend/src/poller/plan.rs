//! The pure core of a poll: from the stored state and one fetch outcome, decide what to write
//! (the [`Commit`]) and what to tell subscribers ([`Announce`]). No I/O, no clock: the caller
//! passes the time and the store's limits, persists the commit, and only then announces.
//! `restream fetchers run` uses the same decision to show what a poll would do.

use serde_json::{Map, Value};

use crate::changes::{self, Change, ChangeKind};
use crate::channel::ChannelId;
use crate::fetcher::FetchOutcome;
use crate::protocol::ServerMessage;
use crate::pushpin::grip::{PublishItem, Transports};
use crate::store::{ChannelMeta, Commit, LoggedEvent, StoredItem, StoredItems};

/// A channel as stored: its meta and its items by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelState {
    pub meta: ChannelMeta,
    pub items: StoredItems,
}

impl ChannelState {
    /// The state `load` returned (items in any order).
    pub fn from_loaded(meta: ChannelMeta, items: Vec<StoredItem>) -> ChannelState {
        ChannelState {
            meta,
            items: StoredItems::from_unsorted(items),
        }
    }

    /// Replaces stored hashes of the older scheme with current ones (same content), in memory.
    pub fn rehash(&mut self, rehashed: Vec<(String, String)>) {
        for (id, hash) in rehashed {
            if let Some(item) = self.items.get_mut(&id) {
                item.hash = hash;
            }
        }
    }

    /// Takes in a persisted `commit`; returns its events.
    pub fn apply(&mut self, commit: Commit) -> Vec<LoggedEvent> {
        self.items.apply(&commit.removals, commit.upserts);
        self.meta = commit.meta;
        commit.events
    }
}

/// What the poll needs besides the state and the outcome; everything a pure function cannot
/// read itself.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub channel: &'a ChannelId,
    pub id_field: &'a str,
    /// Largest item JSON the store keeps (`usize::MAX`: no limit).
    pub max_item_bytes: usize,
    /// Unix seconds, for `first_seen` / `last_changed`.
    pub now: u64,
    /// Cluster mode: the lease epoch the commit is fenced with.
    pub fence: Option<u64>,
}

/// What subscribers are told once the commit is persisted.
#[derive(Debug, Clone, PartialEq)]
pub enum Announce {
    /// Nothing: nothing changed, or only the fetcher's state.
    Nothing,
    /// The first poll: one snapshot, broadcast once recent subscribers can receive it.
    FirstSnapshot,
    /// The commit's events, one GRIP item each, in seq order.
    Events(Vec<PublishItem>),
}

/// What the fetch held, for logs, metrics and `restream fetchers run`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The upstream answered "not modified": nothing is written.
    pub not_modified: bool,
    /// Usable items fetched (after the store's size limit).
    pub fetched: usize,
    pub new: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Fetched items equal to their stored version.
    pub unchanged: usize,
    /// Fetched entries without a usable id (missing, empty, not a string or number, or
    /// longer than `MAX_ITEM_ID_BYTES`): their index and why. They are skipped; the rest commits.
    pub bad_ids: Vec<(usize, changes::IdProblem)>,
    pub duplicates: usize,
    pub skipped_non_objects: usize,
    /// Items over the store's limit (their id if any, their size): skipped, or kept at their
    /// stored version.
    pub oversize: Vec<(Option<String>, usize)>,
}

impl Report {
    /// Whether some fetched entries could not be used as items.
    pub fn has_unusable(&self) -> bool {
        !self.bad_ids.is_empty() || self.duplicates > 0 || self.skipped_non_objects > 0
    }
}

/// The decision of one poll.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// What to write; `None` when the poll writes nothing.
    pub commit: Option<Commit>,
    pub announce: Announce,
    pub report: Report,
    /// Unchanged items whose stored hash is of the older SHA-256 scheme, with their current
    /// hash: the caller's in-memory state takes it (the store keeps the old one until the item
    /// changes; both compare correctly).
    pub rehashed: Vec<(String, String)>,
}

/// Decides one poll of `input.channel` from its stored `state` and the fetch `outcome`.
///
/// The first poll (seq 0) is one snapshot at seq 1, not N `new` events, and is not logged (a
/// resume from before it gets a fresh snapshot). Later polls log one event per change.
pub fn plan(state: &ChannelState, outcome: FetchOutcome, input: &PlanInput<'_>) -> Plan {
    if outcome.not_modified {
        let report = Report {
            not_modified: true,
            ..Report::default()
        };
        return Plan {
            commit: None,
            announce: Announce::Nothing,
            report,
            rehashed: Vec::new(),
        };
    }
    let mut report = Report {
        skipped_non_objects: outcome.skipped_non_objects,
        ..Report::default()
    };
    let mut items = within_store_limit(outcome.items, input, &state.items, &mut report.oversize);
    // The first poll snapshots every item, whatever the store held.
    let no_items = StoredItems::default();
    let known = match state.meta.seq {
        0 => &no_items,
        _ => &state.items,
    };
    let diff = changes::diff(input.id_field, &mut items, known, outcome.complete);
    report.fetched = items.len();
    report.bad_ids = diff.bad_ids;
    report.duplicates = diff.duplicates;
    classify(&diff.changes, diff.unchanged, &mut report);
    let mut commit = Commit {
        expected_seq: state.meta.seq,
        meta: ChannelMeta {
            fetcher_state: outcome.state,
            ..state.meta.clone()
        },
        fence: input.fence,
        ..Commit::new(input.channel.clone())
    };
    let rehashed = diff.rehashed;
    let announce = if state.meta.seq == 0 {
        commit.upserts = diff
            .changes
            .into_iter()
            .filter(|c| c.kind != ChangeKind::Removed)
            .map(|c| stored(state, input.now, c.id, c.hash, c.item, 1))
            .collect();
        commit.meta.seq = 1;
        commit.meta.log_floor = 1;
        Announce::FirstSnapshot
    } else {
        events(state, diff.changes, input, &mut commit)
    };
    if commit.is_empty(&state.meta) {
        return Plan {
            commit: None,
            announce: Announce::Nothing,
            report,
            rehashed,
        };
    }
    Plan {
        commit: Some(commit),
        announce,
        report,
        rehashed,
    }
}

/// Fills `commit` with one logged event per change and returns their GRIP items.
fn events(
    state: &ChannelState,
    changes: Vec<Change>,
    input: &PlanInput<'_>,
    commit: &mut Commit,
) -> Announce {
    let mut seq = state.meta.seq;
    let mut publish = Vec::with_capacity(changes.len());
    let time_ms = match changes.is_empty() {
        true => 0,
        false => crate::store::stamp_events(&mut commit.meta),
    };
    for change in changes {
        seq += 1;
        let message = event_message(input.channel, seq, &change).to_json();
        match change.kind {
            ChangeKind::Removed => commit.removals.push(change.id),
            _ => commit.upserts.push(stored(
                state,
                input.now,
                change.id,
                change.hash,
                change.item,
                seq,
            )),
        }
        publish.push(event_item(input.channel, seq, message.clone()));
        commit.events.push(LoggedEvent::new(seq, message, time_ms));
    }
    commit.meta.seq = seq;
    if publish.is_empty() {
        return Announce::Nothing; // At most the fetcher's state changed.
    }
    commit.meta.committed_from = state.meta.seq;
    Announce::Events(publish)
}

/// The client message of one change.
pub(crate) fn event_message(channel: &ChannelId, seq: u64, change: &Change) -> ServerMessage {
    let (name, params) = (channel.name().to_string(), channel.params());
    let item = change.item.clone();
    match &change.kind {
        ChangeKind::New => ServerMessage::New {
            channel: name,
            params,
            seq,
            item,
        },
        ChangeKind::Updated(patch) => ServerMessage::Updated {
            channel: name,
            params,
            seq,
            item,
            patch: patch.clone(),
        },
        ChangeKind::Removed => ServerMessage::Removed {
            channel: name,
            params,
            seq,
            item,
        },
    }
}

/// The GRIP item for event `seq` of `channel`, for WebSocket and SSE subscribers; ids follow
/// the seq so Pushpin keeps order.
pub fn event_item(channel: &ChannelId, seq: u64, message: String) -> PublishItem {
    PublishItem::message(channel.as_str(), Transports::Both, message, Some(seq)).ordered(seq)
}

fn stored(
    state: &ChannelState,
    now: u64,
    id: String,
    hash: String,
    data: Map<String, Value>,
    seq: u64,
) -> StoredItem {
    let first_seen = state.items.get(&id).map_or(now, |i| i.first_seen);
    StoredItem {
        id,
        hash,
        data,
        seq,
        first_seen,
        last_changed: now,
    }
}

fn classify(changes: &[Change], unchanged: usize, report: &mut Report) {
    for change in changes {
        let ids = match change.kind {
            ChangeKind::New => &mut report.new,
            ChangeKind::Updated(_) => &mut report.updated,
            ChangeKind::Removed => &mut report.removed,
        };
        ids.push(change.id.clone());
    }
    report.unchanged = unchanged;
}

/// Items the store cannot keep (larger than its limit) are left out; one it already holds
/// keeps its stored version, so it is neither updated nor removed.
fn within_store_limit(
    items: Vec<Map<String, Value>>,
    input: &PlanInput<'_>,
    known: &StoredItems,
    oversize: &mut Vec<(Option<String>, usize)>,
) -> Vec<Map<String, Value>> {
    if input.max_item_bytes == usize::MAX {
        return items;
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let bytes = serde_json::to_vec(&item).map_or(0, |v| v.len());
        if bytes <= input.max_item_bytes {
            out.push(item);
            continue;
        }
        let id = changes::item_id(&item, input.id_field);
        if let Some(stored) = id.as_ref().and_then(|id| known.get(id)) {
            out.push(stored.data.clone());
        }
        oversize.push((id, bytes));
    }
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
