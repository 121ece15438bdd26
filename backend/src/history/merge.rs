//! A page of history over one or many channels: a k-way merge by (time, channel id, seq) that
//! reads each channel only as far as the page needs, and the cursor where it stopped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::cursor::Cursor;
use super::source::{ReadError, Source};
use super::Position;
use crate::store::LoggedEvent;

/// Channels whose first chunk is read at once.
const PARALLEL_READS: usize = 16;

/// One page: events with the index of their channel (in the request's order).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub events: Vec<(usize, LoggedEvent)>,
    /// Where each channel stopped: its last event on this page, else where it was.
    pub cursor: Cursor,
    /// More events in the range exist now after this page.
    pub more: bool,
}

/// The next `limit` events of `sources` after `cursor` (one position per source), merged by
/// (time, channel id, seq). Each channel is read in chunks, the first about `limit / k`
/// events long, then refilled only when its buffered events run out.
pub async fn page(
    mut sources: Vec<Source<'_>>,
    cursor: Cursor,
    limit: usize,
) -> Result<Page, ReadError> {
    let k = sources.len();
    // Ties on time go by channel id: rank each source by its id.
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| sources[a].channel().cmp(sources[b].channel()));
    let mut rank = vec![0; k];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r;
    }
    let first = (limit / k.max(1)).max(1) + 1;
    let mut buffers: Vec<VecDeque<LoggedEvent>> = stream::iter(sources.iter_mut())
        .map(|s| async move { s.next_chunk(first).await.map(VecDeque::from) })
        .buffered(PARALLEL_READS)
        .try_collect()
        .await?;
    let head = |i: usize, e: &LoggedEvent| Reverse((e.time_ms, rank[i], e.seq, i));
    let mut heap: BinaryHeap<_> = buffers
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.front().map(|e| head(i, e)))
        .collect();
    let mut positions = cursor.positions;
    let mut events = Vec::with_capacity(limit);
    while let Some(Reverse((_, _, _, i))) = heap.pop() {
        if events.len() == limit {
            heap.push(head(i, buffers[i].front().expect("a head is buffered")));
            break;
        }
        let event = buffers[i].pop_front().expect("a head is buffered");
        positions[i] = Position::of(&event);
        events.push((i, event));
        if buffers[i].is_empty() {
            // Refill this channel: as much as the page may still take, plus one to know
            // whether more follow. When the page is full and others are buffered, skip it.
            let room = limit - events.len();
            if room > 0 || heap.is_empty() {
                buffers[i] = sources[i].next_chunk(room + 1).await?.into();
            }
        }
        if let Some(e) = buffers[i].front() {
            heap.push(head(i, e));
        }
    }
    Ok(Page {
        events,
        more: !heap.is_empty(),
        cursor: Cursor { positions },
    })
}
