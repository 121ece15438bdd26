//! Paced bursts: Pushpin 1.36 hands a published WebSocket message to a connection only if
//! the connection's buffer (`client_buffer_size`, 8192 bytes by default) has room *now*, and
//! silently drops it otherwise (`wsproxysession.cpp`: a publish is sent with `queue=false`).
//! A burst of events larger than that buffer (a big batch, a poll with many changes) would
//! lose its tail on every WebSocket. So a burst goes out in chunks of at most
//! `pushpin.ws_burst_bytes` of WebSocket content, [`PAUSE`] apart: longer than Pushpin's
//! delivery batching (25 ms), long enough for a connection to drain a chunk into its socket.

use std::time::Duration;

use async_trait::async_trait;

use super::{PublishError, Publisher};
use crate::pushpin::grip::PublishItem;

/// Between two chunks of one burst.
pub const PAUSE: Duration = Duration::from_millis(30);

/// A publisher that splits long bursts into paced chunks.
pub struct Paced<P> {
    inner: P,
    /// WebSocket content bytes per chunk at most (0: no pacing).
    burst_bytes: usize,
}

impl<P> Paced<P> {
    pub fn new(inner: P, burst_bytes: usize) -> Paced<P> {
        Paced { inner, burst_bytes }
    }
}

/// Splits `items` into consecutive chunks of at most `max` WebSocket content bytes (an item
/// larger than that alone); items without a WebSocket format weigh nothing.
pub fn chunks(items: &[PublishItem], max: usize) -> Vec<&[PublishItem]> {
    if max == 0 {
        return vec![items];
    }
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let size = item
            .formats
            .ws_message
            .as_ref()
            .map_or(0, |c| c.content.len());
        if i > start && bytes + size > max {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    out.push(&items[start..]);
    out
}

/// What one sender handed Pushpin in the current burst window: bytes, since when.
#[derive(Debug, Default, Clone, Copy)]
pub struct BurstWindow {
    started: Option<tokio::time::Instant>,
    bytes: usize,
}

impl BurstWindow {
    /// When `bytes` more may go (`None`: now): the window has room, or has passed.
    pub fn wait_until(
        &self,
        bytes: usize,
        max: usize,
        now: tokio::time::Instant,
    ) -> Option<tokio::time::Instant> {
        let started = self.started?;
        let open = now < started + PAUSE;
        let over = self.bytes.saturating_add(bytes) > max;
        (max > 0 && open && self.bytes > 0 && over).then_some(started + PAUSE)
    }

    /// A burst of unknown size (an answer to one subscriber) went at `now`: the next waits a
    /// whole window.
    pub fn filled(&mut self, now: tokio::time::Instant) {
        self.started = Some(now);
        self.bytes = usize::MAX;
    }

    /// Counts `bytes` handed over at `now`, in the current window or a new one.
    pub fn sent(&mut self, bytes: usize, now: tokio::time::Instant) {
        match self.started {
            Some(started) if now < started + PAUSE => self.bytes = self.bytes.saturating_add(bytes),
            _ => {
                self.started = Some(now);
                self.bytes = bytes;
            }
        }
    }
}

#[async_trait]
impl<P: Publisher> Publisher for Paced<P> {
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError> {
        for (n, chunk) in chunks(items, self.burst_bytes).into_iter().enumerate() {
            if n > 0 {
                tokio::time::sleep(PAUSE).await;
            }
            self.inner.publish(chunk).await?;
        }
        Ok(())
    }

    fn set_remotes(&self, targets: &[String]) {
        self.inner.set_remotes(targets)
    }

    fn burst_bytes(&self) -> usize {
        self.burst_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pushpin::grip::Transports;

    fn item(bytes: usize) -> PublishItem {
        PublishItem::message("c", Transports::Both, "x".repeat(bytes), None)
    }

    #[test]
    fn bursts_split_by_websocket_bytes_and_keep_their_order() {
        let items: Vec<PublishItem> = [100, 100, 100, 500, 50].map(item).into();
        let sizes = |max| -> Vec<usize> { chunks(&items, max).iter().map(|c| c.len()).collect() };
        assert_eq!(
            sizes(250),
            vec![2, 1, 1, 1],
            "an item over the bound goes alone"
        );
        assert_eq!(sizes(10_000), vec![5]);
        assert_eq!(sizes(0), vec![5], "0: no pacing");
        let sse_only = [PublishItem::message(
            "c",
            Transports::Sse,
            "y".repeat(999),
            None,
        )];
        assert_eq!(chunks(&sse_only, 10).len(), 1);
        assert_eq!(chunks(&[], 10).len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn chunks_cover_every_item_once_in_order(sizes in proptest::collection::vec(0usize..300, 0..40), max in 0usize..700) {
            let items: Vec<PublishItem> = sizes.iter().map(|s| item(*s)).collect();
            let parts = chunks(&items, max);
            let flat: Vec<&PublishItem> = parts.iter().flat_map(|c| c.iter()).collect();
            proptest::prop_assert_eq!(flat.len(), items.len());
            for part in &parts {
                let bytes: usize = part.iter().map(|i| i.formats.ws_message.as_ref().map_or(0, |c| c.content.len())).sum();
                proptest::prop_assert!(max == 0 || bytes <= max || part.len() == 1);
            }
        }
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn a_burst_over_the_bound_waits_for_the_next_window() {
        let now = Instant::now();
        let mut w = BurstWindow::default();
        assert_eq!(w.wait_until(5000, 6000, now), None, "nothing sent yet");
        w.sent(5000, now);
        assert_eq!(w.wait_until(1000, 6000, now), None, "fits");
        assert_eq!(w.wait_until(1001, 6000, now), Some(now + PAUSE));
        assert_eq!(
            w.wait_until(1001, 6000, now + PAUSE),
            None,
            "the window passed"
        );
        assert_eq!(w.wait_until(1001, 0, now), None, "0: no pacing");
        w.filled(now + PAUSE);
        assert_eq!(w.wait_until(1, 6000, now + PAUSE), Some(now + PAUSE * 2));
    }
}
