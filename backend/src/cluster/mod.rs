//! Scale-out: several replicas share the channels through leases (docs/scaling.md).
//!
//! Every replica sees the global demand (the stats of every Pushpin). A channel is polled only
//! by the replica holding its lease; the replica the channel prefers (rendezvous hashing over
//! the live replicas) takes it at once, any other only after the lease has been free for a
//! grace period. A lease is renewed while its poller runs and released when demand ends; a
//! replica that cannot renew in time stops its poller before anyone else may take over, and
//! the store refuses commits carrying an old epoch (a replica that was paused past its lease).
//!
//! The lease table, the membership records and the hand-over of snapshot requests between
//! replicas sit behind one trait, [`Leases`]: DynamoDB plus HTTP in production
//! (`DynamoLeases`, feature `aws`), and an in-memory table shared by replicas of one process
//! ([`MemoryLeaseTable`]), the testing backend.
//!
//! A replica advertises its own Pushpin in its membership record; every replica publishes to
//! (and reads the stats of) the Pushpins the others advertise ([`RemotePushpins`]), beside the
//! configured ones. A replica that stops gracefully releases its leases and deletes its record.

pub mod advertise;
#[cfg(feature = "aws")]
mod dynamo;
pub mod ecs_metadata;
mod forward;
mod guard;
mod lease;
#[cfg(feature = "aws")]
mod lease_table;
mod members;
#[cfg(feature = "aws")]
mod membership;
mod memory;
mod publish_wire;
mod pushpins;
#[cfg(feature = "aws")]
mod session;
mod wire;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::channel::ChannelId;

#[cfg(feature = "aws")]
pub use dynamo::DynamoLeases;
pub use forward::{forward, forward_publish, Forwardable, Handed};
pub use guard::LeaseGuard;
pub use lease::{lease_pk, now_ms, Held, Holder, LeaseError, LEASE_SK};
#[cfg(feature = "aws")]
pub use lease_table::LeaseTable;
pub use members::{preferred, AdvertisedPushpin, Member};
#[cfg(feature = "aws")]
pub use membership::Membership;
pub use memory::{Inbox, MemoryLeaseTable, MemoryLeases};
pub use publish_wire::{ForwardedPublish, PUBLISH_PATH};
pub use pushpins::{remote_targets, RemotePushpins, RemoteTargets};
#[cfg(feature = "aws")]
pub use session::Beat;
pub use wire::{ForwardedSnapshot, ForwardedSnapshots, HandOver, HandedRequest, WireError};

/// Why snapshot requests did not reach their replica.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandOverError {
    #[error("{url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Refused { url: String, status: u16 },
    #[error("replica {0} takes no hand-overs")]
    NoInbox(String),
}

/// Leases, membership and hand-over for one replica: everything cluster mode asks of the
/// outside world. Object-safe, held as `Arc<dyn Leases>`.
#[async_trait]
pub trait Leases: Send + Sync {
    /// This replica's id: the owner written into the leases it takes.
    fn owner(&self) -> &str;

    fn ttl(&self) -> Duration;

    /// The clock lease records are written in (unix ms); injected so leases run under paused
    /// time in tests.
    fn now_ms(&self) -> u64 {
        now_ms()
    }

    /// Takes `channel`'s lease if nobody else holds it (free, expired, or ours), with a new
    /// epoch. `Ok(None)` when another replica holds it.
    async fn acquire(&self, channel: &ChannelId) -> Result<Option<Held>, LeaseError>;

    /// Extends a held lease. `Ok(None)` when it is no longer ours (taken over after expiry).
    async fn renew(&self, held: &Held) -> Result<Option<Held>, LeaseError>;

    /// Gives a held lease up at once (its epoch stays). Returns whether it was still ours.
    async fn release(&self, held: &Held) -> Result<bool, LeaseError>;

    /// The lease as stored, if the channel ever had one.
    async fn holder(&self, channel: &ChannelId) -> Result<Option<Holder>, LeaseError>;

    /// Records `me` alive for one TTL more.
    async fn heartbeat(&self, me: &Member) -> Result<(), LeaseError>;

    /// Every replica whose heartbeat has not run out, sorted by id.
    async fn live(&self) -> Result<Vec<Member>, LeaseError>;

    /// Deletes `me`'s membership record (graceful shutdown).
    async fn leave(&self, me: &Member) -> Result<(), LeaseError>;

    /// Hands snapshot requests to replica `to`, which polls their channel.
    async fn hand_over(&self, to: &Member, batch: &ForwardedSnapshots)
        -> Result<(), HandOverError>;

    /// Hands a push batch to replica `to`, which holds its channel's lease, and returns that
    /// replica's answer. Without an implementation, batches are committed where they arrive
    /// only (the in-memory table of tests).
    async fn publish_to(
        &self,
        to: &Member,
        channel: &ChannelId,
        batch: &crate::push::PushBatch,
    ) -> Result<Result<crate::push::PushReceipt, crate::push::PushError>, HandOverError> {
        let _ = (channel, batch);
        Err(HandOverError::NoInbox(to.id.clone()))
    }
}

/// This replica's view of the cluster.
pub struct Cluster {
    leases: Arc<dyn Leases>,
    me: Member,
    live: RwLock<Vec<Member>>,
    /// Where the other replicas' Pushpins go (publisher, stats reader).
    pushpins: Option<RemotePushpins>,
    /// Held for a whole refresh (heartbeat, read, apply) or while leaving: refreshes never
    /// overlap, so an older read never replaces a newer one, and no heartbeat in flight can
    /// bring a deleted record back.
    membership: tokio::sync::Mutex<MembershipState>,
}

#[derive(Default)]
struct MembershipState {
    /// Left the cluster (graceful shutdown): refreshes do nothing.
    left: bool,
    /// When the latest completed refresh started.
    refreshed: Option<Instant>,
}

impl Cluster {
    pub fn new(leases: Arc<dyn Leases>, me: Member) -> Cluster {
        Cluster {
            leases,
            live: RwLock::new(vec![me.clone()]),
            me,
            pushpins: None,
            membership: Default::default(),
        }
    }

    /// Publishes to (and reads the stats of) the Pushpins the other live replicas advertise,
    /// as every refresh finds them.
    pub fn with_pushpins(mut self, pushpins: RemotePushpins) -> Cluster {
        self.pushpins = Some(pushpins);
        self
    }

    pub fn leases(&self) -> &dyn Leases {
        &*self.leases
    }

    /// The lease operations, shared (the archiver takes its own lease with them).
    pub fn leases_arc(&self) -> Arc<dyn Leases> {
        self.leases.clone()
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
    pub fn prefers_me(&self, channel: &ChannelId) -> bool {
        let live = self.live.read().expect("members lock");
        preferred(channel.as_str(), &live).is_none_or(|m| m.id == self.me.id)
    }

    /// Live replica `id`.
    pub fn member(&self, id: &str) -> Option<Member> {
        let live = self.live.read().expect("members lock");
        live.iter().find(|m| m.id == id).cloned()
    }

    /// Heartbeats and refreshes the live replicas once (and with them the other replicas'
    /// Pushpins). After [`Cluster::leave`] it does nothing.
    pub async fn refresh_members(&self) -> Result<(), LeaseError> {
        let mut state = self.membership.lock().await;
        self.refresh_locked(&mut state).await
    }

    async fn refresh_locked(&self, state: &mut MembershipState) -> Result<(), LeaseError> {
        if state.left {
            return Ok(());
        }
        let started = Instant::now();
        self.leases.heartbeat(&self.me).await?;
        let mut live = self.leases.live().await?;
        if !live.iter().any(|m| m.id == self.me.id) {
            live.push(self.me.clone());
            live.sort_by(|a, b| a.id.cmp(&b.id));
        }
        if let Some(pushpins) = &self.pushpins {
            pushpins.apply(&self.me.id, &live);
        }
        *self.live.write().expect("members lock") = live;
        state.refreshed = Some(started);
        Ok(())
    }

    /// Makes sure replica `id` is known before acting on its request: a hand-over from a
    /// replica that joined since the last refresh refreshes membership first, so that its
    /// Pushpin receives the snapshot published next and everything after. A replica
    /// heartbeats before it serves, so any refresh started after its request arrived finds it.
    pub async fn meet(&self, id: &str) {
        if self.member(id).is_some() {
            return;
        }
        let arrived = Instant::now();
        let mut state = self.membership.lock().await;
        if self.member(id).is_some() || state.refreshed.is_some_and(|t| t >= arrived) {
            return;
        }
        tracing::info!(replica = %id, "hand-over from a replica not seen yet; refreshing membership");
        if let Err(e) = self.refresh_locked(&mut state).await {
            tracing::warn!(error = %e, "cannot refresh cluster membership");
        }
        if self.member(id).is_none() {
            tracing::warn!(replica = %id, "hand-over from a replica that is not a live member");
        }
    }

    /// Since when what this replica publishes reaches the Pushpin of live replica `id`, when
    /// that Pushpin was added by a refresh (`None`: always published to, or not at all). A
    /// subscriber there missed whatever was published before, e.g. a channel's first snapshot
    /// broadcast while its replica was not known yet: [`crate::scheduler`] answers it as if it
    /// had subscribed then.
    pub fn reached_since(&self, id: &str) -> Option<Instant> {
        self.pushpins.as_ref()?.reached_since(&self.member(id)?)
    }

    /// Leaves the cluster (graceful shutdown, once the leases are released): deletes this
    /// replica's membership record, so the others stop publishing to its Pushpin and stop
    /// preferring it at their next refresh instead of after its heartbeat runs out.
    pub async fn leave(&self) {
        let mut state = self.membership.lock().await;
        if state.left {
            return;
        }
        state.left = true;
        match self.leases.leave(&self.me).await {
            Ok(()) => {
                tracing::info!(replica = %self.me.id, "left the cluster; membership record deleted")
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot delete the membership record; it expires by itself")
            }
        }
    }

    /// Gives a held lease back at once (the others take its channel without waiting for it
    /// to expire); a failure only means it expires by itself.
    pub async fn release(&self, held: &Held) {
        match self.leases.release(held).await {
            Ok(_) => {
                crate::metrics::get()
                    .lease_events
                    .with_label_values(&["released"])
                    .inc();
                tracing::info!(channel = %held.channel, epoch = held.epoch, "lease released");
            }
            Err(e) => tracing::warn!(error = %e, "cannot release a lease; it expires by itself"),
        }
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
}
