//! The scheduler: keeps exactly one poller running for every active channel we can serve.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::channel::ChannelId;
use crate::demand::Demand;
use crate::fetcher::SharedRegistry;
use crate::poller::{self, PollerContext, SnapshotRequest};

/// Requests from HTTP handlers to the scheduler.
#[derive(Debug)]
enum Command {
    Snapshot {
        channel: String,
        request: SnapshotRequest,
    },
}

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
    pub fn request_snapshot(&self, channel: String, request: SnapshotRequest) {
        if let Err(e) = self
            .commands
            .try_send(Command::Snapshot { channel, request })
        {
            tracing::error!(error = %e, "scheduler queue full or closed; a subscriber gets no snapshot");
        }
    }
}

struct Poller {
    token: CancellationToken,
    requests: mpsc::Sender<SnapshotRequest>,
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
    ) -> (Scheduler, SchedulerHandle) {
        let (tx, rx) = mpsc::channel(10_000);
        let scheduler = Scheduler {
            registry,
            demand,
            ctx,
            tracker: TaskTracker::new(),
            pollers: HashMap::new(),
            commands: rx,
            ignored: HashSet::new(),
            ignored_with: None,
        };
        (scheduler, SchedulerHandle { commands: tx })
    }

    /// Runs until `shutdown`, then waits for every poller to stop.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            self.reconcile(&shutdown);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.demand.changed() => {}
                _ = tokio::time::sleep(RECONCILE_EVERY) => {}
                Some(Command::Snapshot { channel, request }) = self.commands.recv() => {
                    // The subscribe's demand hint may not have started the poller yet.
                    self.reconcile(&shutdown);
                    match self.pollers.get(&channel) {
                        Some(p) => {
                            if p.requests.try_send(request).is_err() {
                                tracing::warn!(channel = %channel, "poller busy; snapshot request dropped");
                            }
                        }
                        None => tracing::debug!(channel = %channel, "snapshot requested for a channel with no poller"),
                    }
                }
            }
        }
        for p in self.pollers.values() {
            p.token.cancel();
        }
        self.tracker.close();
        self.tracker.wait().await;
        tracing::info!("all pollers stopped");
    }

    fn reconcile(&mut self, shutdown: &CancellationToken) {
        let active = self.demand.active(tokio::time::Instant::now());
        self.pollers.retain(|channel, p| {
            let keep = active.contains(channel);
            if !keep {
                tracing::info!(channel = %channel, "no subscribers left; stopping poller");
                p.token.cancel();
            }
            keep
        });
        let registry = self.registry.current();
        if !self
            .ignored_with
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &registry))
        {
            self.ignored.clear();
            self.ignored_with = Some(registry);
        }
        self.ignored.retain(|c| active.contains(c));
        for channel in active {
            if self.pollers.contains_key(&channel) || self.ignored.contains(&channel) {
                continue;
            }
            match self.resolve(&channel) {
                Ok((id, entry)) => {
                    let token = shutdown.child_token();
                    let (tx, rx) = mpsc::channel(1024);
                    self.tracker
                        .spawn(poller::run(id, entry, self.ctx.clone(), rx, token.clone()));
                    self.pollers.insert(
                        channel,
                        Poller {
                            token,
                            requests: tx,
                        },
                    );
                }
                Err(why) => {
                    tracing::debug!(channel = %channel, reason = why, "channel has subscribers but is not ours to poll");
                    self.ignored.insert(channel);
                }
            }
        }
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
