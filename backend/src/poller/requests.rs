//! A poller's queue of snapshot requests: bounded, one sender (the scheduler's slot) and one
//! receiver (the poller), and no allocation while it is empty. A tokio channel allocates a
//! block of 32 slots up front, about 2 KB for every running poller, most of which never get a
//! request between two polls.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use super::SnapshotRequest;

struct Shared {
    queue: Mutex<VecDeque<SnapshotRequest>>,
    capacity: usize,
    /// A request was queued, or the other side went away.
    ready: Notify,
    /// The sender or the receiver was dropped.
    closed: AtomicBool,
}

/// The scheduler's end: queues requests for the poller without waiting.
pub struct RequestSender {
    shared: Arc<Shared>,
}

/// The poller's end.
pub struct RequestReceiver {
    shared: Arc<Shared>,
}

/// The poller's own queue as others may hand it requests owed to it (the snapshot cache, for
/// the subscribers it served when the poller commits): they go first and past the capacity
/// (their number is bounded where they were kept). Held weakly: nothing once the queue is gone.
#[derive(Clone, Default)]
pub struct Requeue {
    shared: Weak<Shared>,
}

impl Requeue {
    /// Puts `owed` at the front of the queue, in order.
    pub fn push_front(&self, owed: Vec<SnapshotRequest>) {
        if owed.is_empty() {
            return;
        }
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut queue = shared.queue.lock().expect("request queue lock");
        for request in owed.into_iter().rev() {
            queue.push_front(request);
        }
        drop(queue);
        shared.ready.notify_one();
    }
}

/// A queue that holds at most `capacity` requests.
pub fn channel(capacity: usize) -> (RequestSender, RequestReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        capacity: capacity.max(1),
        ready: Notify::new(),
        closed: AtomicBool::new(false),
    });
    let sender = RequestSender {
        shared: shared.clone(),
    };
    (sender, RequestReceiver { shared })
}

impl RequestSender {
    /// Queues `request`; gives it back when the queue is full or the poller is gone.
    pub fn try_send(&self, request: SnapshotRequest) -> Result<(), SnapshotRequest> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(request);
        }
        let mut queue = self.shared.queue.lock().expect("request queue lock");
        if queue.len() >= self.shared.capacity {
            return Err(request);
        }
        queue.push_back(request);
        drop(queue);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Requests queued and not yet taken.
    pub fn len(&self) -> usize {
        self.shared.queue.lock().expect("request queue lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for RequestSender {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.ready.notify_one();
    }
}

impl RequestReceiver {
    /// A handle others may give this queue's owner the requests it owes.
    pub fn requeue(&self) -> Requeue {
        Requeue {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// The oldest queued request, if any.
    pub fn try_recv(&mut self) -> Option<SnapshotRequest> {
        let mut queue = self.shared.queue.lock().expect("request queue lock");
        let request = queue.pop_front();
        if queue.is_empty() && queue.capacity() > 0 {
            // A drained queue holds nothing: most pollers get a request now and then, and
            // thousands of them would each keep the room for several.
            *queue = VecDeque::new();
        }
        request
    }

    /// Waits for the next request; `None` once the sender is gone and the queue drained.
    /// Cancel-safe: a request is taken only when this returns it.
    pub async fn recv(&mut self) -> Option<SnapshotRequest> {
        loop {
            if let Some(request) = self.try_recv() {
                return Some(request);
            }
            if self.shared.closed.load(Ordering::Acquire) {
                // Whatever was queued before the sender went away is still delivered.
                return self.try_recv();
            }
            // A notification sent since the check above is kept as a permit, so none is lost.
            self.shared.ready.notified().await;
        }
    }
}

impl Drop for RequestReceiver {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::GripChannel;
    use crate::pushpin::grip::Transports;
    use std::time::Duration;
    use tokio::time::Instant;

    fn request(since: u64) -> SnapshotRequest {
        SnapshotRequest {
            connection_channel: GripChannel::connection("c"),
            since: Some(since),
            transport: Transports::WebSocket,
            requested_at: Instant::now(),
        }
    }

    #[tokio::test]
    async fn requests_arrive_in_order_and_a_full_queue_refuses() {
        let (tx, mut rx) = channel(2);
        assert!(tx.try_send(request(1)).is_ok());
        assert!(tx.try_send(request(2)).is_ok());
        assert_eq!(tx.try_send(request(3)).unwrap_err().since, Some(3));
        assert_eq!(tx.len(), 2);
        assert_eq!(rx.recv().await.unwrap().since, Some(1));
        assert_eq!(rx.try_recv().unwrap().since, Some(2));
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_request_and_ends_when_the_sender_goes() {
        let (tx, mut rx) = channel(8);
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await.map(|r| r.since);
            let second = rx.recv().await.map(|r| r.since);
            let end = rx.recv().await.map(|r| r.since);
            (first, second, end)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.try_send(request(7)).unwrap();
        tx.try_send(request(8)).unwrap();
        drop(tx);
        let got = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the receiver woke")
            .unwrap();
        assert_eq!(got, (Some(Some(7)), Some(Some(8)), None));
    }

    #[tokio::test]
    async fn a_cancelled_wait_loses_nothing() {
        let (tx, mut rx) = channel(8);
        let timed_out = tokio::time::timeout(Duration::from_millis(10), rx.recv()).await;
        assert!(timed_out.is_err());
        tx.try_send(request(1)).unwrap();
        assert_eq!(rx.recv().await.unwrap().since, Some(1));
    }

    #[test]
    fn owed_requests_go_first_past_the_capacity_and_nowhere_once_the_queue_is_gone() {
        let (tx, mut rx) = channel(1);
        tx.try_send(request(1)).unwrap();
        let requeue = rx.requeue();
        requeue.push_front(vec![request(5), request(6)]);
        let order: Vec<_> = std::iter::from_fn(|| rx.try_recv())
            .map(|r| r.since)
            .collect();
        assert_eq!(order, vec![Some(5), Some(6), Some(1)]);
        drop((tx, rx));
        requeue.push_front(vec![request(7)]); // Harmless.
        Requeue::default().push_front(vec![request(8)]);
    }

    #[test]
    fn sending_to_a_stopped_poller_gives_the_request_back() {
        let (tx, rx) = channel(8);
        drop(rx);
        assert!(tx.try_send(request(1)).is_err());
    }
}
