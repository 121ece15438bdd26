//! A held lease shared by its poller and the task that keeps it renewed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Cluster, Held};

/// A held lease shared by its poller and the task that renews it.
pub struct LeaseGuard {
    held: Mutex<Held>,
    lost: AtomicBool,
    /// Cancelled when the lease is lost: the poller runs under it and stops.
    poller: CancellationToken,
}

impl LeaseGuard {
    pub fn new(held: Held, poller: CancellationToken) -> LeaseGuard {
        LeaseGuard {
            held: Mutex::new(held),
            lost: AtomicBool::new(false),
            poller,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.held.lock().expect("lease lock").epoch
    }

    /// Whether this replica may still write and publish for the channel.
    pub fn is_valid(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
            && Instant::now() < self.held.lock().expect("lease lock").valid_until
    }

    /// Marks the lease lost (the store refused its epoch, or it could not be renewed in time)
    /// and stops the poller.
    pub fn lose(&self, why: &str) {
        if !self.lost.swap(true, Ordering::SeqCst) {
            let held = self.held();
            tracing::warn!(channel = %held.channel, epoch = held.epoch, reason = why, "lease lost; poller stops");
            crate::metrics::get()
                .lease_events
                .with_label_values(&["lost"])
                .inc();
        }
        self.poller.cancel();
    }

    fn held(&self) -> Held {
        self.held.lock().expect("lease lock").clone()
    }

    /// Records a renewal: the poller may act until `held.valid_until` again.
    pub fn renewed(&self, held: Held) {
        *self.held.lock().expect("lease lock") = held;
    }
}

impl Cluster {
    /// Keeps `guard`'s lease renewed until `stop` (then releases it) or until it is lost.
    pub async fn keep(self: Arc<Self>, guard: Arc<LeaseGuard>, stop: CancellationToken) {
        loop {
            let valid_until = guard.held().valid_until;
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = guard.poller.cancelled() => return, // Lost (the store refused the epoch).
                _ = tokio::time::sleep_until(valid_until) => {
                    // A session lease is renewed by the replica's heartbeat, which may have
                    // landed since the last look: one more look before giving it up.
                    match self.leases().renew(&guard.held()).await {
                        Ok(Some(held)) if held.valid_until > Instant::now() => guard.renewed(held),
                        _ => {
                            guard.lose("not renewed in time");
                            return;
                        }
                    }
                }
                _ = tokio::time::sleep(self.renew_every()) => {
                    match self.leases().renew(&guard.held()).await {
                        Ok(Some(held)) => guard.renewed(held),
                        Ok(None) => {
                            guard.lose("taken over by another replica");
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot renew a lease; retrying"),
                    }
                }
            }
        }
        if guard.is_valid() {
            self.release(&guard.held()).await;
        }
    }
}
