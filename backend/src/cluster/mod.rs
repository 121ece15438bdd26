//! Scale-out: several replicas share the channels through DynamoDB leases (docs/scaling.md).
//!
//! Every replica sees the global demand (the stats of every Pushpin). A channel is polled only
//! by the replica holding its lease; the replica the channel prefers (rendezvous hashing over
//! the live replicas) takes it at once, any other only after the lease has been free for a
//! grace period. A lease is renewed while its poller runs and released when demand ends; a
//! replica that cannot renew in time stops its poller before anyone else may take over, and
//! the store refuses commits carrying an old epoch (a replica that was paused past its lease).

mod lease;
mod members;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use lease::{lease_pk, now_ms, Held, Holder, LeaseError, LeaseTable, LEASE_SK};
pub use members::{preferred, Member, Membership};

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

    fn renewed(&self, held: Held) {
        *self.held.lock().expect("lease lock") = held;
    }
}

/// This replica's view of the cluster.
pub struct Cluster {
    pub leases: LeaseTable,
    membership: Membership,
    me: Member,
    live: RwLock<Vec<Member>>,
}

impl Cluster {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: &str,
        me: Member,
        ttl: Duration,
    ) -> Cluster {
        Cluster {
            leases: LeaseTable::new(client.clone(), table, &me.id, ttl),
            membership: Membership::new(client, table),
            live: RwLock::new(vec![me.clone()]),
            me,
        }
    }

    pub fn me(&self) -> &Member {
        &self.me
    }

    pub fn ttl(&self) -> Duration {
        self.leases.ttl()
    }

    /// Between renewals (and heartbeats): a third of the TTL, so two can fail in a row.
    pub fn renew_every(&self) -> Duration {
        self.ttl() / 3
    }

    /// Whether `channel` prefers this replica among the live ones.
    pub fn prefers_me(&self, channel: &str) -> bool {
        let live = self.live.read().expect("members lock");
        preferred(channel, &live).is_none_or(|m| m.id == self.me.id)
    }

    /// The URL of live replica `id`.
    pub fn url_of(&self, id: &str) -> Option<String> {
        let live = self.live.read().expect("members lock");
        live.iter().find(|m| m.id == id).map(|m| m.url.clone())
    }

    /// Heartbeats and refreshes the live replicas once.
    pub async fn refresh_members(&self) -> Result<(), LeaseError> {
        self.membership
            .heartbeat(&self.me, self.ttl().as_millis() as u64)
            .await?;
        let mut live = self.membership.live().await?;
        if !live.iter().any(|m| m.id == self.me.id) {
            live.push(self.me.clone());
        }
        *self.live.write().expect("members lock") = live;
        Ok(())
    }

    /// Heartbeats every `renew_every` until `shutdown`.
    pub async fn run_membership(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.refresh_members().await {
                tracing::warn!(error = %e, "cannot refresh cluster membership");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.renew_every()) => {}
            }
        }
    }

    /// Keeps `guard`'s lease renewed until `stop` (then releases it) or until it is lost.
    pub async fn keep(self: Arc<Self>, guard: Arc<LeaseGuard>, stop: CancellationToken) {
        loop {
            let valid_until = guard.held().valid_until;
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = guard.poller.cancelled() => return, // Lost (the store refused the epoch).
                _ = tokio::time::sleep_until(valid_until) => {
                    guard.lose("not renewed in time");
                    return;
                }
                _ = tokio::time::sleep(self.renew_every()) => {
                    match self.leases.renew(&guard.held()).await {
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
            let held = guard.held();
            match self.leases.release(&held).await {
                Ok(_) => {
                    crate::metrics::get()
                        .lease_events
                        .with_label_values(&["released"])
                        .inc();
                    tracing::info!(channel = %held.channel, epoch = held.epoch, "lease released");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot release a lease; it expires by itself")
                }
            }
        }
    }
}
