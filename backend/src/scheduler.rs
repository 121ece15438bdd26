//! The scheduler: keeps exactly one poller running for every active channel we can serve.
//!
//! In cluster mode (docs/scaling.md) a poller runs only under the channel's lease: the
//! scheduler tries to take the leases of active channels (at once where the channel prefers
//! this replica, after a grace period otherwise), and hands snapshot requests for channels
//! polled elsewhere to the owning replica.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::channel::ChannelId;
use crate::cluster::{now_ms, Cluster, Held, Holder, LeaseError, LeaseGuard};
use crate::demand::Demand;
use crate::fetcher::SharedRegistry;
use crate::poller::{self, PollerContext, SnapshotRequest};

/// Requests from HTTP handlers (and the scheduler's own lease tasks) to the scheduler.
#[derive(Debug)]
enum Command {
    Snapshot {
        channel: String,
        request: SnapshotRequest,
    },
    /// The outcome of an attempt to take a channel's lease; when it failed, who holds it (if
    /// read) and when to try again.
    Acquired {
        channel: String,
        held: Option<Held>,
        holder: Option<Holder>,
        retry_in: Duration,
    },
    Forwarded(Forwarded),
}

/// A batch of snapshot requests handed over (or not) by a forwarding task.
#[derive(Debug)]
struct Forwarded {
    channel: String,
    /// Requests still undelivered: no replica polls the channel yet.
    left: Vec<SnapshotRequest>,
    /// The lease as the task found it, reused while it runs.
    holder: Option<Holder>,
}

/// How long a snapshot request waits for its channel's poller to appear (here or elsewhere in
/// the cluster) before it is dropped.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

/// A cloneable way to reach the scheduler from request handlers.
#[derive(Clone)]
pub struct SchedulerHandle {
    commands: mpsc::Sender<Command>,
}

impl SchedulerHandle {
    /// A handle that reaches no scheduler (for tests and tools): requests are logged and dropped.
    pub fn disconnected() -> SchedulerHandle {
        let (commands, _) = mpsc::channel(1);
        SchedulerHandle { commands }
    }

    /// Asks the channel's poller to send a new subscriber its snapshot (or missed events).
    pub fn request_snapshot(&self, channel: ChannelId, request: SnapshotRequest) {
        let channel = channel.to_string();
        if let Err(e) = self
            .commands
            .try_send(Command::Snapshot { channel, request })
        {
            tracing::error!(error = %e, "scheduler queue full or closed; a subscriber gets no snapshot");
        }
    }
}

struct Poller {
    /// Cancelled by the scheduler (demand ended, shutdown): the lease is released.
    token: CancellationToken,
    /// What the poller runs under: `token`, or a lost lease.
    run: CancellationToken,
    requests: mpsc::Sender<SnapshotRequest>,
}

impl Poller {
    /// Stopped because its lease was lost, not by the scheduler.
    fn lost_lease(&self) -> bool {
        self.run.is_cancelled() && !self.token.is_cancelled()
    }
}

/// Cluster mode's bookkeeping for active channels this replica does not poll.
#[derive(Default)]
struct Leasing {
    /// Channels with an acquire attempt in flight.
    acquiring: HashSet<String>,
    /// When each channel may be tried next.
    next_attempt: HashMap<String, Instant>,
    /// When each channel was first seen active without a poller here.
    unowned_since: HashMap<String, Instant>,
    /// Snapshot requests for channels polled elsewhere (or not yet anywhere), by channel.
    waiting: HashMap<String, Vec<SnapshotRequest>>,
    /// Channels with a forwarding task under way.
    forwarding: HashSet<String>,
    /// The last lease seen per channel, so forwarding reads it once per lease period.
    holders: HashMap<String, Holder>,
}

/// How often demand is re-read even without a change notification (TTL expiry).
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

pub struct Scheduler {
    registry: Arc<SharedRegistry>,
    demand: Arc<Demand>,
    ctx: PollerContext,
    tracker: TaskTracker,
    pollers: HashMap<String, Poller>,
    commands: mpsc::Receiver<Command>,
    /// For lease tasks to report back.
    commands_tx: mpsc::Sender<Command>,
    cluster: Option<Arc<Cluster>>,
    leasing: Leasing,
    /// Channels in demand that we cannot serve, remembered so they are logged once (until the
    /// registry changes: a re-discovered fetcher may serve them).
    ignored: HashSet<String>,
    ignored_with: Option<Arc<crate::fetcher::Registry>>,
}

impl Scheduler {
    pub fn new(
        registry: Arc<SharedRegistry>,
        demand: Arc<Demand>,
        ctx: PollerContext,
        cluster: Option<Arc<Cluster>>,
    ) -> (Scheduler, SchedulerHandle) {
        let (tx, rx) = mpsc::channel(10_000);
        let scheduler = Scheduler {
            registry,
            demand,
            ctx,
            tracker: TaskTracker::new(),
            pollers: HashMap::new(),
            commands: rx,
            commands_tx: tx.clone(),
            cluster,
            leasing: Leasing::default(),
            ignored: HashSet::new(),
            ignored_with: None,
        };
        (scheduler, SchedulerHandle { commands: tx })
    }

    /// Runs until `shutdown`, then waits for every poller to stop.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // A full pass costs O(active channels), so it runs when demand changed, when a lease
        // attempt is due and once every RECONCILE_EVERY: not after every command (a subscribe
        // burst sends one snapshot request per subscriber).
        let (mut next_pass, mut last_pass) = (Instant::now(), Instant::now());
        loop {
            let now = Instant::now();
            if now >= next_pass {
                self.reconcile(&shutdown);
                (last_pass, next_pass) = (now, now + RECONCILE_EVERY);
            }
            // Cluster mode: wake for the next lease attempt on time (a takeover right after the
            // holder's lease runs out), not at the next periodic pass.
            let wake = self
                .leasing
                .next_attempt
                .values()
                .copied()
                .filter(|t| *t > last_pass) // Earlier ones were tried by that pass.
                .min()
                .map_or(next_pass, |t| t.min(next_pass));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.demand.changed() => next_pass = Instant::now(),
                _ = tokio::time::sleep_until(wake) => next_pass = Instant::now(),
                Some(command) = self.commands.recv() => match command {
                    Command::Snapshot { channel, request } => {
                        self.route_snapshot(channel, request, &shutdown)
                    }
                    Command::Forwarded(f) => self.forwarded(f, &shutdown),
                    Command::Acquired { channel, held, holder, retry_in } => {
                        self.leasing.acquiring.remove(&channel);
                        if let Some(h) = holder {
                            self.leasing.holders.insert(channel.clone(), h);
                        }
                        match held {
                            Some(held) => self.start_leased(channel, held, &shutdown),
                            None => {
                                self.leasing
                                    .next_attempt
                                    .insert(channel, Instant::now() + retry_in);
                            }
                        }
                    }
                },
            }
        }
        for p in self.pollers.values() {
            p.token.cancel();
        }
        self.tracker.close();
        self.tracker.wait().await;
        tracing::info!("all pollers stopped");
    }

    /// Sends a subscriber's snapshot request to the channel's poller: here, or (cluster mode)
    /// on the replica holding its lease.
    fn route_snapshot(
        &mut self,
        channel: String,
        request: SnapshotRequest,
        shutdown: &CancellationToken,
    ) {
        // The subscribe's demand hint may not have started the poller yet (a full pass only
        // then: bursts of subscribes to a running channel are many). In cluster mode the
        // request waits for the channel's poller wherever it starts.
        if !self.pollers.contains_key(&channel) && self.cluster.is_none() {
            self.serve_if_active(channel.clone(), shutdown);
        }
        match (self.pollers.get(&channel), &self.cluster) {
            (Some(p), _) => {
                if p.requests.try_send(request).is_err() {
                    tracing::warn!(channel = %channel, "poller busy; snapshot request dropped");
                }
            }
            (None, Some(_)) => {
                self.leasing
                    .waiting
                    .entry(channel.clone())
                    .or_default()
                    .push(request);
                self.forward_waiting(channel);
            }
            (None, None) => {
                tracing::debug!(channel = %channel, "snapshot requested for a channel with no poller")
            }
        }
    }

    /// Cluster mode: hands `channel`'s waiting snapshot requests to its owner in one task
    /// (one lease read and one request per batch, not per subscriber).
    fn forward_waiting(&mut self, channel: String) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        if self.leasing.forwarding.contains(&channel) {
            return; // The running task's result brings the rest along.
        }
        let mut requests = self.leasing.waiting.remove(&channel).unwrap_or_default();
        requests.retain(|r| {
            let fresh = r.requested_at.elapsed() <= SNAPSHOT_WAIT;
            if !fresh {
                tracing::warn!(channel = %channel, "no replica polls this channel; a subscriber gets no snapshot");
            }
            fresh
        });
        if requests.is_empty() {
            return;
        }
        self.leasing.forwarding.insert(channel.clone());
        let holder = self.leasing.holders.get(&channel).cloned();
        let commands = self.commands_tx.clone();
        self.tracker.spawn(async move {
            let forwarded = forward_snapshots(&cluster, channel, requests, holder).await;
            let _ = commands.send(Command::Forwarded(forwarded)).await;
        });
    }

    /// A forwarding task's result: requests no replica took wait here for the channel's
    /// poller (local or remote) and are tried again.
    fn forwarded(&mut self, f: Forwarded, shutdown: &CancellationToken) {
        self.leasing.forwarding.remove(&f.channel);
        match f.holder {
            Some(h) => self.leasing.holders.insert(f.channel.clone(), h),
            None => self.leasing.holders.remove(&f.channel),
        };
        self.serve_if_active(f.channel.clone(), shutdown);
        let mut left = f.left;
        left.extend(self.leasing.waiting.remove(&f.channel).unwrap_or_default());
        match self.pollers.get(&f.channel) {
            Some(p) => {
                for request in left {
                    if p.requests.try_send(request).is_err() {
                        tracing::warn!(channel = %f.channel, "poller busy; snapshot request dropped");
                    }
                }
            }
            None if !left.is_empty() => {
                self.leasing.waiting.insert(f.channel.clone(), left);
                self.forward_waiting(f.channel);
            }
            None => {}
        }
    }

    fn reconcile(&mut self, shutdown: &CancellationToken) {
        let active = self.demand.active(tokio::time::Instant::now());
        self.pollers.retain(|channel, p| {
            if p.lost_lease() {
                return false; // The channel is taken anew below if it can.
            }
            let keep = active.contains(channel);
            if !keep {
                tracing::info!(channel = %channel, "no subscribers left; stopping poller");
                p.token.cancel();
            }
            keep
        });
        self.forget_ignored_after_registry_change();
        self.ignored.retain(|c| active.contains(c));
        let leasing = &mut self.leasing;
        leasing.unowned_since.retain(|c, _| active.contains(c));
        leasing.next_attempt.retain(|c, _| active.contains(c));
        leasing.holders.retain(|c, _| active.contains(c));
        for channel in active {
            self.serve(channel, shutdown);
        }
    }

    /// One channel's part of a full pass, for a channel that may just have gained subscribers
    /// (a full pass costs O(active channels)).
    fn serve_if_active(&mut self, channel: String, shutdown: &CancellationToken) {
        if self.pollers.get(&channel).is_some_and(Poller::lost_lease) {
            self.pollers.remove(&channel);
        }
        if !self.pollers.contains_key(&channel)
            && self.demand.is_active(&channel, tokio::time::Instant::now())
        {
            self.forget_ignored_after_registry_change();
            self.serve(channel, shutdown);
        }
    }

    /// Has `channel`, which has subscribers, polled: here, or (cluster mode) by trying its
    /// lease. A channel we cannot serve is remembered, so it is logged once.
    fn serve(&mut self, channel: String, shutdown: &CancellationToken) {
        if self.pollers.contains_key(&channel) || self.ignored.contains(&channel) {
            return;
        }
        match self.resolve(&channel) {
            Ok((id, entry)) => match self.cluster.clone() {
                None => self.start(channel, id, entry, None, shutdown),
                Some(cluster) => self.try_acquire(channel, &cluster),
            },
            Err(why) => {
                tracing::debug!(channel = %channel, reason = why, "channel has subscribers but is not ours to poll");
                self.ignored.insert(channel);
            }
        }
    }

    /// A re-discovered fetcher may serve channels ignored so far.
    fn forget_ignored_after_registry_change(&mut self) {
        let registry = self.registry.current();
        if !self
            .ignored_with
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &registry))
        {
            self.ignored.clear();
            self.ignored_with = Some(registry);
        }
    }

    /// Cluster mode: tries to take `channel`'s lease in the background, at once if the channel
    /// prefers this replica, else once it has gone unowned for a lease TTL.
    fn try_acquire(&mut self, channel: String, cluster: &Arc<Cluster>) {
        let leasing = &mut self.leasing;
        let now = Instant::now();
        let since = *leasing.unowned_since.entry(channel.clone()).or_insert(now);
        if leasing.acquiring.contains(&channel)
            || leasing.next_attempt.get(&channel).is_some_and(|t| *t > now)
            || (!cluster.prefers_me(&channel) && now < since + cluster.ttl())
        {
            return;
        }
        leasing.acquiring.insert(channel.clone());
        // Seen held by another replica: that replica most likely renewed it since, so a read
        // (not a refused conditional write, which costs write capacity) comes first.
        let read_first = leasing
            .holders
            .get(&channel)
            .is_some_and(|h| h.owner != cluster.leases.owner());
        let (cluster, commands) = (cluster.clone(), self.commands_tx.clone());
        self.tracker.spawn(async move {
            let (held, holder, retry_in) = attempt_lease(&cluster, &channel, read_first).await;
            let _ = commands
                .send(Command::Acquired {
                    channel,
                    held,
                    holder,
                    retry_in,
                })
                .await;
        });
    }

    /// Cluster mode: starts the poller of a channel whose lease was just taken (or gives the
    /// lease back if the channel is no longer wanted here).
    fn start_leased(&mut self, channel: String, held: Held, shutdown: &CancellationToken) {
        let cluster = self.cluster.clone().expect("leases only in cluster mode");
        let wanted = self.demand.is_active(&channel, tokio::time::Instant::now());
        match self.resolve(&channel) {
            Ok((id, entry)) if wanted && !self.pollers.contains_key(&channel) => {
                tracing::info!(channel = %channel, epoch = held.epoch, "lease taken; polling here");
                crate::metrics::get()
                    .lease_events
                    .with_label_values(&["acquired"])
                    .inc();
                self.start(channel, id, entry, Some((cluster, held)), shutdown);
            }
            _ => {
                self.tracker.spawn(async move {
                    if let Err(e) = cluster.leases.release(&held).await {
                        tracing::warn!(error = %e, "cannot give back an unneeded lease; it expires by itself");
                    }
                });
            }
        }
    }

    fn start(
        &mut self,
        channel: String,
        id: ChannelId,
        entry: Arc<crate::fetcher::FetcherEntry>,
        lease: Option<(Arc<Cluster>, Held)>,
        shutdown: &CancellationToken,
    ) {
        let token = shutdown.child_token();
        let run = token.child_token();
        let guard = lease.map(|(cluster, held)| {
            let guard = Arc::new(LeaseGuard::new(held, run.clone()));
            self.tracker
                .spawn(cluster.keep(guard.clone(), token.clone()));
            guard
        });
        let (tx, rx) = mpsc::channel(1024);
        self.tracker.spawn(poller::run(
            id,
            entry,
            self.ctx.clone(),
            rx,
            run.clone(),
            guard,
        ));
        self.leasing.unowned_since.remove(&channel);
        for request in self.leasing.waiting.remove(&channel).unwrap_or_default() {
            let _ = tx.try_send(request);
        }
        self.pollers.insert(
            channel,
            Poller {
                token,
                run,
                requests: tx,
            },
        );
    }

    fn resolve(
        &self,
        channel: &str,
    ) -> Result<(ChannelId, Arc<crate::fetcher::FetcherEntry>), &'static str> {
        let id = ChannelId::parse(channel).map_err(|_| "not a canonical channel id")?;
        let registry = self.registry.current();
        let entry = registry.get(id.name()).ok_or("no fetcher with this name")?;
        // The id must be exactly what a subscribe would have produced (declared params,
        // defaults applied), or it did not come from us.
        let raw = serde_json::Value::Object(
            id.params()
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        );
        match ChannelId::from_request(id.name(), Some(&raw), &entry.metadata.params) {
            Ok(canonical) if canonical == id => Ok((id, entry.clone())),
            _ => Err("params do not match the fetcher's declaration"),
        }
    }
}

/// One try at `channel`'s lease: the lease if taken, else its holder (when read) and how long
/// to wait before the next try — just after the holder's lease runs out (renewed, the next
/// try finds it live again and waits for the new expiry), or a third of a TTL after an error.
async fn attempt_lease(
    cluster: &Cluster,
    channel: &str,
    read_first: bool,
) -> (Option<Held>, Option<Holder>, Duration) {
    if read_first {
        match cluster.leases.holder(channel).await {
            Ok(Some(h)) if h.owner != cluster.leases.owner() && h.is_live(now_ms()) => {
                return not_taken(cluster, channel, Ok(Some(h)));
            }
            Ok(_) => {} // Free, expired or ours: take it.
            Err(e) => return not_taken(cluster, channel, Err(e)),
        }
    }
    match cluster.leases.acquire(channel).await {
        Ok(Some(held)) => (Some(held), None, Duration::ZERO),
        Ok(None) => {
            crate::metrics::get()
                .lease_events
                .with_label_values(&["refused"])
                .inc();
            not_taken(cluster, channel, cluster.leases.holder(channel).await)
        }
        Err(e) => {
            tracing::warn!(channel, error = %e, "cannot take a lease");
            (None, None, cluster.renew_every())
        }
    }
}

/// The lease was not taken: when to try again, from a read of its holder.
fn not_taken(
    cluster: &Cluster,
    channel: &str,
    read: Result<Option<Holder>, LeaseError>,
) -> (Option<Held>, Option<Holder>, Duration) {
    match read {
        Ok(Some(h)) => {
            let retry_in = retry_after(cluster, channel, &h);
            (None, Some(h), retry_in)
        }
        Ok(None) => {
            tracing::debug!(channel, "lease refused but no holder on record");
            (None, None, cluster.renew_every())
        }
        Err(e) => {
            tracing::warn!(channel, error = %e, "cannot read a lease's holder");
            (None, None, cluster.renew_every())
        }
    }
}

/// Just after `holder`'s lease runs out, between 100 ms and one TTL from now.
fn retry_after(cluster: &Cluster, channel: &str, holder: &Holder) -> Duration {
    let left = Duration::from_millis(holder.lease_until.saturating_sub(now_ms()));
    tracing::debug!(channel, holder = %holder.owner, epoch = holder.epoch, left_ms = left.as_millis() as u64, "lease held elsewhere");
    (left + Duration::from_millis(100)).clamp(Duration::from_millis(100), cluster.ttl())
}

/// Cluster mode: hands `requests` to the replica polling `channel` (per `holder` while its
/// lease runs, else as the lease table says). What no replica took comes back in `left`, after
/// a short pause when the channel is not polled anywhere yet.
async fn forward_snapshots(
    cluster: &Cluster,
    channel: String,
    requests: Vec<SnapshotRequest>,
    holder: Option<Holder>,
) -> Forwarded {
    let now = now_ms();
    let holder = match holder.filter(|h| h.is_live(now)) {
        Some(h) => Some(h),
        None => match cluster.leases.holder(&channel).await {
            Ok(h) => h.filter(|h| h.is_live(now)),
            Err(e) => {
                tracing::warn!(channel = %channel, error = %e, "cannot read a lease");
                None
            }
        },
    };
    let elsewhere = holder
        .as_ref()
        .filter(|h| h.owner != cluster.me().id)
        .and_then(|h| cluster.url_of(&h.owner));
    if let Some(url) = elsewhere {
        match crate::routes::internal::send_snapshot_requests(&url, &channel, &requests).await {
            Ok(()) => {
                crate::metrics::get()
                    .lease_events
                    .with_label_values(&["forwarded"])
                    .inc_by(requests.len() as u64);
                return Forwarded {
                    channel,
                    left: Vec::new(),
                    holder,
                };
            }
            Err(e) => {
                tracing::warn!(channel = %channel, error = %e, "cannot hand snapshot requests to their replica")
            }
        }
    }
    // Not polled anywhere yet, or about to be here: ask again shortly.
    tokio::time::sleep(Duration::from_millis(250)).await;
    Forwarded {
        channel,
        left: requests,
        holder: None,
    }
}
