//! The pure decision of one batch: from the stored channel and a [`PushBatch`], what to write
//! (the [`Commit`](crate::store::Commit)), what to tell subscribers and what to answer. No I/O,
//! no clock: the writer passes the time, persists, and only then announces.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::changes::{checked_item_id, content_hash, same_content, Change, ChangeKind};
use crate::channel::ChannelId;
use crate::poller::plan::{event_item, event_message, ChannelState};
use crate::pushpin::grip::PublishItem;
use crate::store::{ChannelMeta, Commit, LoggedEvent, StoredItem};

use super::{PushBatch, PushError, PushMode, PushOp, PushReceipt, PushSpec};

mod remembered;
use remembered::Remembered;

/// Checks a batch against its channel before it is queued: the ops fit the mode, every item
/// has a usable id, the batch is within `max_items` and its key within bounds.
pub fn check(spec: &PushSpec, batch: &PushBatch, max_items: usize) -> Result<(), PushError> {
    if batch.ops.is_empty() && !batch.replace {
        return Err(PushError::Invalid("the batch holds no items".into()));
    }
    if batch.ops.len() > max_items {
        return Err(PushError::Invalid(format!(
            "the batch holds {} entries, more than the {max_items} one publish may carry",
            batch.ops.len()
        )));
    }
    if let Some(key) = &batch.idempotency_key {
        if key.is_empty() || key.len() > super::batch::MAX_IDEMPOTENCY_KEY_BYTES {
            return Err(PushError::Invalid(format!(
                "Idempotency-Key must be 1 to {} bytes",
                super::batch::MAX_IDEMPOTENCY_KEY_BYTES
            )));
        }
    }
    if batch.replace && spec.mode == PushMode::Events {
        return Err(PushError::Invalid(
            "an events channel is append-only: it cannot be replaced".into(),
        ));
    }
    for (index, op) in batch.ops.iter().enumerate() {
        match (spec.mode, op) {
            (PushMode::Items, PushOp::Upsert(item)) => {
                if let Err(problem) = checked_item_id(item, &spec.id_field) {
                    return Err(PushError::Invalid(format!(
                        "entry {index}: field {:?} is not a usable id ({}): a non-empty string of at most {} bytes, or a number",
                        spec.id_field,
                        problem.reason().replace('_', " "),
                        crate::changes::MAX_ITEM_ID_BYTES
                    )));
                }
            }
            (PushMode::Items, PushOp::Delete(id)) => {
                if id.is_empty() || id.len() > crate::changes::MAX_ITEM_ID_BYTES {
                    return Err(PushError::Invalid(format!(
                        "entry {index}: not a usable id"
                    )));
                }
            }
            (PushMode::Events, PushOp::Append(_)) => {}
            (PushMode::Items, PushOp::Append(_)) => {
                return Err(PushError::Invalid(format!(
                    "entry {index}: an items channel takes JSON objects with an id"
                )))
            }
            (PushMode::Events, _) => {
                return Err(PushError::Invalid(format!(
                    "entry {index}: an events channel only takes appended events"
                )))
            }
        }
    }
    Ok(())
}

/// What the plan needs besides the state and the batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchInput<'a> {
    pub channel: &'a ChannelId,
    pub spec: &'a PushSpec,
    /// Largest item JSON the store keeps (`usize::MAX`: no limit).
    pub max_item_bytes: usize,
    /// Idempotency keys remembered per channel (`push.idempotency_keys`).
    pub remembered_keys: usize,
    /// Unix milliseconds: the events' `time`, the items' `first_seen` / `last_changed`.
    pub now_ms: u64,
    /// Cluster mode: the lease epoch the commit is fenced with.
    pub fence: Option<u64>,
}

/// The decision of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPlan {
    /// What to write; `None` when the batch changes nothing and carries no key to remember.
    pub commit: Option<Commit>,
    /// The commit's events, one GRIP item each, in seq order.
    pub publish: Vec<PublishItem>,
    pub receipt: PushReceipt,
}

/// The commit that opens a push channel: an empty snapshot at seq 1, like a polled channel's
/// first poll, broadcast to whoever subscribed before.
pub fn opening(state: &ChannelState, channel: &ChannelId, fence: Option<u64>) -> Commit {
    Commit {
        expected_seq: state.meta.seq,
        meta: ChannelMeta {
            seq: 1,
            log_floor: 1,
            ..state.meta.clone()
        },
        fence,
        ..Commit::new(channel.clone())
    }
}

/// What a batch does to the channel, before seqs are assigned.
#[derive(Default)]
struct Effects {
    /// In order; one event each.
    changes: Vec<Change>,
    /// Stored items to drop without an event (events beyond `keep`).
    silent_removals: Vec<String>,
    unchanged: usize,
}

/// Decides one batch from the channel's stored `state` (opened: seq ≥ 1). A retry of a
/// remembered batch answers its first receipt and writes nothing.
pub fn plan(
    state: &ChannelState,
    batch: &PushBatch,
    input: &BatchInput<'_>,
) -> Result<BatchPlan, PushError> {
    let mut remembered = Remembered::read(state.meta.fetcher_state.as_ref());
    let key = batch
        .idempotency_key
        .as_deref()
        .filter(|_| input.remembered_keys > 0);
    let batch_hash = batch_hash(batch);
    if let Some(first) = key.and_then(|k| remembered.find(k)) {
        return match first.batch == batch_hash {
            true => Ok(BatchPlan {
                commit: None,
                publish: Vec::new(),
                receipt: PushReceipt {
                    replayed: true,
                    ..first.receipt.clone()
                },
            }),
            false => Err(PushError::KeyReused),
        };
    }
    let effects = match input.spec.mode {
        PushMode::Items => items_effects(state, batch, input)?,
        PushMode::Events => events_effects(state, batch, input),
    };
    let mut commit = Commit {
        expected_seq: state.meta.seq,
        meta: state.meta.clone(),
        fence: input.fence,
        ..Commit::new(input.channel.clone())
    };
    let mut receipt = PushReceipt {
        unchanged: effects.unchanged,
        ..PushReceipt::default()
    };
    let publish = events(state, effects.changes, input, &mut commit, &mut receipt);
    for id in effects.silent_removals {
        commit.upserts.retain(|i| i.id != id);
        if state.items.contains_key(&id) {
            commit.removals.push(id);
        }
    }
    receipt.seq = commit.meta.seq;
    if let Some(key) = key {
        remembered.push(key, batch_hash, &receipt, input.remembered_keys);
        commit.meta.fetcher_state = Some(remembered.to_value());
    }
    let commit = (!commit.is_empty(&state.meta)).then_some(commit);
    Ok(BatchPlan {
        commit,
        publish,
        receipt,
    })
}

/// An item as the batch left it: its hash and content, `None` once removed.
type Version = Option<(String, Map<String, Value>)>;

/// The decision of several batches committed together.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPlan {
    /// One commit for every batch that changes something.
    pub commit: Option<Commit>,
    /// Every batch's events, in seq order.
    pub publish: Vec<PublishItem>,
    /// One per batch, in order.
    pub results: Vec<Result<PushReceipt, PushError>>,
}

/// Plans `batches` in order, each on the channel as the ones before it left it, into one
/// commit. A single batch is planned on `state` itself; several, on a copy.
pub fn plan_group(
    state: &ChannelState,
    batches: &[&PushBatch],
    input: &BatchInput<'_>,
) -> GroupPlan {
    if let [batch] = batches {
        return match plan(state, batch, input) {
            Ok(p) => GroupPlan {
                commit: p.commit,
                publish: p.publish,
                results: vec![Ok(p.receipt)],
            },
            Err(e) => GroupPlan {
                commit: None,
                publish: Vec::new(),
                results: vec![Err(e)],
            },
        };
    }
    let mut scratch = state.clone();
    let mut out = GroupPlan {
        commit: None,
        publish: Vec::new(),
        results: Vec::with_capacity(batches.len()),
    };
    let mut upserts: BTreeMap<String, StoredItem> = BTreeMap::new();
    let mut removals: BTreeSet<String> = BTreeSet::new();
    let mut events = Vec::new();
    for batch in batches {
        match plan(&scratch, batch, input) {
            Ok(p) => {
                if let Some(commit) = p.commit {
                    for id in &commit.removals {
                        upserts.remove(id);
                        removals.insert(id.clone());
                    }
                    for item in &commit.upserts {
                        removals.remove(&item.id);
                        upserts.insert(item.id.clone(), item.clone());
                    }
                    events.extend(commit.events.iter().cloned());
                    scratch.apply(commit);
                }
                out.publish.extend(p.publish);
                out.results.push(Ok(p.receipt));
            }
            Err(e) => out.results.push(Err(e)),
        }
    }
    let mut commit = Commit {
        expected_seq: state.meta.seq,
        meta: scratch.meta,
        upserts: upserts.into_values().collect(),
        // Added and removed within the group: nothing to remove.
        removals: removals
            .into_iter()
            .filter(|id| state.items.contains_key(id))
            .collect(),
        events,
        fence: input.fence,
        ..Commit::new(input.channel.clone())
    };
    if !commit.events.is_empty() {
        commit.meta.committed_from = state.meta.seq;
    }
    out.commit = (!commit.is_empty(&state.meta)).then_some(commit);
    out
}

/// Items mode: each op against the channel as the ops before it left it.
fn items_effects(
    state: &ChannelState,
    batch: &PushBatch,
    input: &BatchInput<'_>,
) -> Result<Effects, PushError> {
    let mut out = Effects::default();
    // The batch's view of every id it touched: `None` once removed.
    let mut working: BTreeMap<String, Version> = BTreeMap::new();
    let current = |working: &BTreeMap<String, Version>, id: &str| match working.get(id) {
        Some(v) => v.clone(),
        None => state
            .items
            .get(id)
            .map(|s| (s.hash.clone(), s.data.clone())),
    };
    let mut upserted = HashSet::new();
    for (index, op) in batch.ops.iter().enumerate() {
        match op {
            PushOp::Upsert(item) => {
                let id = checked_item_id(item, &input.spec.id_field)
                    .map_err(|_| PushError::Invalid(format!("entry {index}: no usable id")))?;
                let bytes = serde_json::to_vec(item).map_or(0, |v| v.len());
                if bytes > input.max_item_bytes {
                    return Err(PushError::Invalid(format!(
                        "entry {index} is {bytes} bytes, over the store's limit of {}",
                        input.max_item_bytes
                    )));
                }
                let hash = content_hash(item);
                upserted.insert(id.clone());
                let kind = match current(&working, &id) {
                    Some((old_hash, _)) if same_content(&old_hash, item) => {
                        out.unchanged += 1;
                        continue;
                    }
                    Some((_, old)) => ChangeKind::Updated(crate::changes::patch(&old, item)),
                    None => ChangeKind::New,
                };
                working.insert(id.clone(), Some((hash.clone(), item.clone())));
                out.changes.push(Change {
                    kind,
                    id,
                    item: item.clone(),
                    hash,
                });
            }
            PushOp::Delete(id) => {
                upserted.remove(id);
                if let Some((hash, item)) = current(&working, id) {
                    working.insert(id.clone(), None);
                    out.changes.push(Change {
                        kind: ChangeKind::Removed,
                        id: id.clone(),
                        item,
                        hash,
                    });
                }
            }
            PushOp::Append(_) => {
                return Err(PushError::Invalid(format!(
                    "entry {index}: an items channel takes JSON objects with an id"
                )))
            }
        }
    }
    if batch.replace {
        let ids: Vec<String> = state.items.keys().chain(working.keys()).cloned().collect();
        for id in ids {
            if upserted.contains(&id) {
                continue;
            }
            if let Some((hash, item)) = current(&working, &id) {
                working.insert(id.clone(), None);
                out.changes.push(Change {
                    kind: ChangeKind::Removed,
                    id,
                    item,
                    hash,
                });
            }
        }
    }
    Ok(out)
}

/// Events mode: one `new` event per append, ids from the seq; the oldest events beyond `keep`
/// leave the snapshot without an event.
fn events_effects(state: &ChannelState, batch: &PushBatch, input: &BatchInput<'_>) -> Effects {
    let mut out = Effects::default();
    let time = crate::history::rfc3339_ms(input.now_ms);
    let mut seq = state.meta.seq;
    for op in &batch.ops {
        let PushOp::Append(data) = op else { continue };
        seq += 1;
        let id = event_id(seq);
        let item: Map<String, Value> = match json!({"id": id, "time": time, "data": data}) {
            Value::Object(m) => m,
            _ => unreachable!("a JSON object literal"),
        };
        out.changes.push(Change {
            kind: ChangeKind::New,
            hash: content_hash(&item),
            id,
            item,
        });
    }
    let keep = input.spec.keep;
    let total = state.items.len() + out.changes.len();
    // Ids are zero-padded seqs: id order is time order, stored items first.
    let ids = state
        .items
        .keys()
        .cloned()
        .chain(out.changes.iter().map(|c| c.id.clone()));
    out.silent_removals = ids.take(total.saturating_sub(keep)).collect();
    out
}

/// The id of the event at `seq`: zero-padded so ids sort in time order.
pub fn event_id(seq: u64) -> String {
    format!("{seq:020}")
}

/// Fills `commit` with one logged event per change (seqs after the state's), its upserts and
/// removals; returns the GRIP items.
fn events(
    state: &ChannelState,
    changes: Vec<Change>,
    input: &BatchInput<'_>,
    commit: &mut Commit,
    receipt: &mut PushReceipt,
) -> Vec<PublishItem> {
    let now = input.now_ms / 1000;
    let mut seq = state.meta.seq;
    let mut publish = Vec::with_capacity(changes.len());
    // Never before the channel's last event, so its history stays in time order.
    let time_ms = input.now_ms.max(state.meta.last_event_ms);
    if !changes.is_empty() {
        commit.meta.last_event_ms = time_ms;
    }
    // Each id's last version in the batch (or its removal).
    let mut last: BTreeMap<String, Option<StoredItem>> = BTreeMap::new();
    for change in changes {
        seq += 1;
        let message = event_message(input.channel, seq, &change).to_json();
        match change.kind {
            ChangeKind::New => receipt.new += 1,
            ChangeKind::Updated(_) => receipt.updated += 1,
            ChangeKind::Removed => receipt.removed += 1,
        }
        let version = match change.kind {
            ChangeKind::Removed => None,
            _ => Some(StoredItem {
                first_seen: state.items.get(&change.id).map_or(now, |i| i.first_seen),
                id: change.id.clone(),
                hash: change.hash,
                data: change.item,
                seq,
                last_changed: now,
            }),
        };
        last.insert(change.id, version);
        publish.push(event_item(input.channel, seq, message.clone()));
        commit.events.push(LoggedEvent::new(seq, message, time_ms));
    }
    for (id, version) in last {
        match version {
            Some(item) => commit.upserts.push(item),
            None if state.items.contains_key(&id) => commit.removals.push(id),
            None => {} // Added and removed within the batch.
        }
    }
    commit.meta.seq = seq;
    if !publish.is_empty() {
        commit.meta.committed_from = state.meta.seq;
    }
    publish
}

/// A short hash of what a batch asks for (not its key), to tell a retry from a reuse.
fn batch_hash(batch: &PushBatch) -> String {
    let bytes = serde_json::to_vec(&(&batch.ops, batch.replace)).expect("batches serialize");
    let digest = Sha256::digest(bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
