//! The embedded store's retention sweep: one pass deletes channels whose last activity is
//! older than the cutoff, looking at a bounded number of activity records, round robin.

use std::ops::Bound;

use redb::{Database, ReadableTable};

use super::redb_store::{backend, ACTIVITY, ITEMS, LOG, LOG_TIMES, META, SWEEP_SCAN};
use super::StoreError;

/// One pass from where the last one stopped (`from`): deletes up to `max_channels` channels
/// last active before `cutoff` (unix seconds) and returns how many.
pub(super) fn sweep_pass(
    db: &Database,
    from: &mut Option<String>,
    cutoff: u64,
    max_channels: usize,
) -> Result<usize, StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    let swept = {
        let mut activity = txn.open_table(ACTIVITY).map_err(backend)?;
        let start = match from.as_deref() {
            Some(f) => Bound::Excluded(f),
            None => Bound::Unbounded,
        };
        let mut expired = Vec::new();
        let mut last_seen = None;
        for entry in activity
            .range::<&str>((start, Bound::Unbounded))
            .map_err(backend)?
            .take(SWEEP_SCAN)
        {
            let (k, v) = entry.map_err(backend)?;
            last_seen = Some(k.value().to_string());
            if v.value() < cutoff {
                expired.push(k.value().to_string());
                if expired.len() >= max_channels {
                    break;
                }
            }
        }
        // At the end of the table the next pass starts over.
        *from = last_seen;
        for channel in &expired {
            activity.remove(channel.as_str()).map_err(backend)?;
            delete_channel(&txn, channel)?;
        }
        expired.len()
    };
    txn.commit().map_err(backend)?;
    Ok(swept)
}

/// Removes a channel's meta, items and change log.
fn delete_channel(txn: &redb::WriteTransaction, channel: &str) -> Result<(), StoreError> {
    txn.open_table(META)
        .map_err(backend)?
        .remove(channel)
        .map_err(backend)?;
    let mut items = txn.open_table(ITEMS).map_err(backend)?;
    let mut ids = Vec::new();
    for entry in items.range((channel, "")..).map_err(backend)? {
        let (k, _) = entry.map_err(backend)?;
        if k.value().0 != channel {
            break;
        }
        ids.push(k.value().1.to_string());
    }
    for id in &ids {
        items.remove((channel, id.as_str())).map_err(backend)?;
    }
    txn.open_table(LOG)
        .map_err(backend)?
        .retain_in((channel, 0)..=(channel, u64::MAX), |_, _| false)
        .map_err(backend)?;
    txn.open_table(LOG_TIMES)
        .map_err(backend)?
        .retain_in((channel, 0)..=(channel, u64::MAX), |_, _| false)
        .map_err(backend)?;
    Ok(())
}
