//! The pure decision of one batch: from the stored channel and a [`PushBatch`], what to write
//! (the [`Commit`](crate::store::Commit)), what to tell subscribers and what to answer. No I/O,
//! no clock: the writer passes the time, persists, and only then announces.

use crate::changes::checked_item_id;

use super::{PushBatch, PushError, PushMode, PushOp, PushSpec};

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
