//! What the scheduler knows of one channel: one enum per channel instead of a map per fact.

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::channel::ChannelId;
use crate::cluster::Holder;
use crate::poller::requests::RequestSender;
use crate::poller::{PublishRequest, SnapshotRequest};

/// One channel's state in the scheduler.
pub(super) enum Slot {
    /// Its poller runs here.
    Polling(Poller),
    /// It has subscribers but is not ours to poll (no fetcher serves it), remembered so it is
    /// logged once, until the registry changes.
    Ignored,
    /// Cluster mode: not polled here (yet), polled elsewhere, or only waited for by snapshot
    /// requests.
    Remote(Remote),
}

/// A running poller.
pub(super) struct Poller {
    /// Cancelled by the scheduler (demand ended, shutdown): the lease is released.
    pub token: CancellationToken,
    /// Cluster mode: it runs under a lease (which it may lose).
    pub leased: bool,
    /// What the poller runs under: `token`, or a lost lease.
    pub run: CancellationToken,
    pub requests: RequestSender,
    /// A push channel's writer: where its batches go.
    pub batches: Option<mpsc::Sender<PublishRequest>>,
    /// A push channel's writer stays until then without subscribers (its last publish plus
    /// `push.linger_secs`).
    pub linger_until: Option<Instant>,
}

impl Poller {
    /// A push channel's writer that published recently enough to stay without subscribers.
    pub fn lingers(&self, now: Instant) -> bool {
        self.linger_until.is_some_and(|t| t > now)
    }

    /// Stopped because its lease was lost, not by the scheduler.
    pub fn lost_lease(&self) -> bool {
        // Checked for every channel once a second: a token's check takes a lock.
        self.leased && self.run.is_cancelled() && !self.token.is_cancelled()
    }

    pub fn send(&self, channel: &ChannelId, request: SnapshotRequest) {
        if self.requests.try_send(request).is_err() {
            // Per channel, so a flood on one channel never delays another's subscribers.
            tracing::debug!(channel = %channel, "poller busy; snapshot request dropped");
            crate::metrics::get()
                .queue_full
                .with_label_values(&["poller"])
                .inc();
        }
    }
}

/// Snapshot requests one channel's poller (or, in cluster mode, its remote bookkeeping) holds
/// at most; more are dropped and counted (`restream_queue_full_total`).
pub const MAX_WAITING_REQUESTS: usize = 1024;

/// Cluster mode's bookkeeping for a channel this replica does not poll.
#[derive(Default)]
pub(super) struct Remote {
    /// When it was first seen active without a poller here (`None` while it is not active):
    /// a replica it does not prefer waits a lease TTL from then before trying its lease.
    pub unowned_since: Option<Instant>,
    pub attempt: Attempt,
    /// The last lease seen, so forwarding reads it once per lease period.
    pub holder: Option<Holder>,
    /// Snapshot requests waiting for the channel's poller, here or elsewhere.
    pub waiting: Vec<SnapshotRequest>,
    /// A forwarding task is under way; its result brings the waiting requests along.
    pub forwarding: bool,
    /// Push batches waiting for the channel's lease to be taken here or found elsewhere, and
    /// whether each was forwarded to us already (it is not forwarded again).
    pub publishes: Vec<(PublishRequest, bool)>,
}

/// Where the channel's next try at its lease stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Attempt {
    /// May be tried at the next chance.
    #[default]
    Due,
    /// A try is running.
    InFlight,
    /// Not before then.
    After(Instant),
}

impl Remote {
    /// Forgets what only matters while the channel has subscribers; whether anything is left
    /// (requests to deliver, a task to hear back from).
    pub fn demand_ended(&mut self) -> bool {
        self.unowned_since = None;
        self.holder = None;
        if let Attempt::After(_) = self.attempt {
            self.attempt = Attempt::Due;
        }
        !self.waiting.is_empty()
            || self.forwarding
            || self.attempt == Attempt::InFlight
            || !self.publishes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::GripChannel;
    use crate::pushpin::grip::Transports;

    #[tokio::test]
    async fn a_full_poller_queue_drops_and_counts_instead_of_logging_each() {
        let (tx, _rx) = crate::poller::requests::channel(1);
        let poller = Poller {
            leased: false,
            token: CancellationToken::new(),
            run: CancellationToken::new(),
            requests: tx,
            batches: None,
            linger_until: None,
        };
        let full = || {
            crate::metrics::get()
                .queue_full
                .with_label_values(&["poller"])
                .get()
        };
        let before = full();
        let channel = ChannelId::parse("a").unwrap();
        for _ in 0..3 {
            poller.send(
                &channel,
                SnapshotRequest {
                    connection_channel: GripChannel::connection("c"),
                    since: None,
                    transport: Transports::WebSocket,
                    requested_at: Instant::now(),
                },
            );
        }
        assert!(full() - before >= 2, "two of three dropped and counted");
    }
}
